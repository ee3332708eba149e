"""The layer tree: one row per layer, grouped into collapsible stages and blocks.

A Line-API widget: only the rows on screen are rendered, the boundary line is a virtual row
found by bisection, and moving the cursor refreshes two lines. So every keypress costs the
same on VGG16 (23 layers) and on a 3,000-layer model; only collapsing, expanding and
filtering rebuild the list of visible rows.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, iter_group_starts
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView

Path = tuple[int, ...]

#: Levels with fewer layers than this are not grouped (a 2-layer stem needs no stages).
GROUP_MIN_LAYERS = 12


@dataclass
class Node:
    """A node of the tree: a stage or block group, or a layer (a container has children)."""

    key: str
    kind: str  # "stage", "block" or "layer"
    title: str
    start: int  # leaf position of its first leaf: rows sort by it
    end: int
    layer: LayerInfo | None = None
    children: list[Node] = field(default_factory=list)
    first_layer: LayerInfo | None = None

    @property
    def expandable(self) -> bool:
        """Groups and nested models can be collapsed."""
        return bool(self.children)


@dataclass(frozen=True, slots=True)
class Row:
    """A visible row: a node at an indentation level."""

    node: Node
    indent: int


def _size_text(shape: tuple[int | None, ...] | None) -> str:
    if shape is None or len(shape) < 3:
        return ""
    dims = shape[1:-1]
    if all(d is None for d in dims):  # a sequence of any length: no size to tell
        return ""
    return "x".join("?" if d is None else str(d) for d in dims)


def _typical_shape(rows: list[LayerInfo]) -> tuple[int | None, ...] | None:
    """The output shape most of a stage's layers have (its first layer may still be at the
    previous resolution, and squeeze-and-excite layers are 1x1)."""
    shapes = [row.output_shape for row in rows if row.output_shape and len(row.output_shape) > 2]
    if not shapes:
        return None
    counts = Counter(shape[1:-1] for shape in shapes)
    dims = counts.most_common(1)[0][0]
    return next(shape for shape in shapes if shape[1:-1] == dims)


def build_tree(info: ModelInfo, view: PlanView) -> list[Node]:
    """The tree of nodes for a walked model: stages, then blocks, then layers.

    Args:
        info: the walked model.
        view: its plan view (for leaf spans).

    Returns:
        The top-level nodes.
    """
    return _TreeBuilder(info, view).level(())


class _TreeBuilder:
    """Builds the nodes of one level of the model (its top level, or a nested model's)."""

    def __init__(self, info: ModelInfo, view: PlanView) -> None:
        self.view = view
        self.children_of: dict[Path, list[LayerInfo]] = {}
        for row in info.layers:
            self.children_of.setdefault(row.parent_path, []).append(row)

    def level(self, parent: Path) -> list[Node]:
        """The layers under ``parent``: grouped in stages (when there are several), then
        blocks, unless there are too few to group."""
        rows = self.children_of.get(parent, [])
        key = "/".join(str(i) for i in parent) or "root"
        if len(rows) < GROUP_MIN_LAYERS:
            return [self.layer_node(row) for row in rows]
        stage_runs = _runs(rows, "stage")
        if len(stage_runs) == 1:
            return self.blocks_of(rows, key)
        return [
            _group(
                "stage",
                f"{key}/stage:{run[0].stage}",
                _stage_title(run),
                self.blocks_of(run, f"{key}/stage:{run[0].stage}"),
            )
            for run in stage_runs
        ]

    def blocks_of(self, rows: list[LayerInfo], parent_key: str) -> list[Node]:
        """The layers of a stage, runs of the same block grouped (when there are several)."""
        block_runs = _runs(rows, "block")
        if len(block_runs) == 1:
            return [self.layer_node(row) for row in rows]
        nodes: list[Node] = []
        for run in block_runs:
            if len(run) == 1:
                nodes.append(self.layer_node(run[0]))
                continue
            title = f"{run[0].block}  {run[0].path_text}–{run[-1].path_text}"
            nodes.append(
                _group(
                    "block",
                    f"{parent_key}/block:{run[0].path_text}",
                    title,
                    [self.layer_node(row) for row in run],
                )
            )
        return nodes

    def layer_node(self, row: LayerInfo) -> Node:
        """A layer's node; a nested model's holds the nodes of its own level."""
        start, end = self.view.span(row.path)
        node = Node(
            key=f"layer:{row.path_text}",
            kind="layer",
            title=row.name,
            start=start,
            end=end,
            layer=row,
            first_layer=row,
        )
        if row.is_container:
            node.children = self.level(row.path)
        return node


def _runs(rows: list[LayerInfo], attribute: str) -> list[list[LayerInfo]]:
    """Consecutive rows with the same ``attribute`` (stage or block), in order."""
    grouped: list[list[LayerInfo]] = []
    for row in rows:
        if grouped and getattr(grouped[-1][-1], attribute) == getattr(row, attribute):
            grouped[-1].append(row)
        else:
            grouped.append([row])
    return grouped


def _group(kind: str, key: str, title: str, members: list[Node]) -> Node:
    return Node(
        key=key,
        kind=kind,
        title=title,
        start=members[0].start,
        end=members[-1].end,
        children=members,
        first_layer=members[0].first_layer,
    )


def _stage_title(run: list[LayerInfo]) -> str:
    """A stage group's title: its number, name, size, layers and parameters."""
    size = _size_text(_typical_shape(run))
    spatial = f" · {size}" if size else ""
    params = sum(row.params for row in run)
    name = run[0].stage_name
    own = f" · {name}" if name and name != f"stage {run[0].stage}" else ""
    return (
        f"stage {run[0].stage}{own}{spatial} · layers {run[0].path_text}–"
        f"{run[-1].path_text} · {params:,} params"
    )


@dataclass(frozen=True)
class Columns:
    """Column widths for the current widget width (0: the column is hidden)."""

    index: int
    type: int
    shape: int
    params: int = 11
    state: int = 7
    name: int = 0

    @property
    def fixed(self) -> int:
        """Width of everything but the name column (and the separators)."""
        extra = sum(1 + w for w in (self.type, self.shape) if w)
        return 2 + self.index + 1 + extra + 1 + self.params + 1 + self.state


#: The state column's mark of a layer that cannot take LoRA (shown while the plan has LoRA).
NO_LORA = "⊘"
#: The state column's width while the plan has LoRA (``frozen* ⊘``).
LORA_STATE_WIDTH = 9

#: The widest the name, type and shape columns get; longer text is cut in the middle.
NAME_CAP = 40
TYPE_CAP = 18
SHAPE_CAP = 22
#: Below this the name column (indentation included) gives way: first the type column
#: goes, then the shape.
NAME_MIN = 22
#: Shorter type names for the tree's type column (the side pane and the detail give the
#: class's full name).
SHORT_TYPES = {
    "BatchNormalization": "BatchNorm",
    "SyncBatchNormalization": "SyncBatchNorm",
    "LayerNormalization": "LayerNorm",
    "GroupNormalization": "GroupNorm",
    "UnitNormalization": "UnitNorm",
    "GlobalAveragePooling1D": "GlobalAvgPool1D",
    "GlobalAveragePooling2D": "GlobalAvgPool2D",
    "GlobalAveragePooling3D": "GlobalAvgPool3D",
    "GlobalMaxPooling1D": "GlobalMaxPool1D",
    "GlobalMaxPooling2D": "GlobalMaxPool2D",
    "GlobalMaxPooling3D": "GlobalMaxPool3D",
    "AveragePooling1D": "AvgPool1D",
    "AveragePooling2D": "AvgPool2D",
    "AveragePooling3D": "AvgPool3D",
    "MaxPooling1D": "MaxPool1D",
    "MaxPooling2D": "MaxPool2D",
    "MaxPooling3D": "MaxPool3D",
}


def short_type(class_name: str) -> str:
    """The type as the tree's column shows it: ``BatchNormalization`` -> ``BatchNorm``."""
    return SHORT_TYPES.get(class_name, class_name)


class LayerTable(ScrollView, can_focus=True):
    """The scrollable layer tree with a cursor, a drawn freeze boundary and a filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="page_down"),
        Binding("home,g", "first", "First row", show=False, id="first"),
        Binding("end,G", "last", "Last row", show=False, id="last"),
        Binding("left,h", "collapse", "Collapse", show=False, id="collapse"),
        Binding("right,l", "expand", "Expand", show=False, id="expand"),
        Binding("enter", "select", "Detail / toggle group", show=False, id="select"),
        Binding("right_square_bracket", "next_stage", "Next stage", show=False, id="next_stage"),
        Binding(
            "left_square_bracket",
            "previous_stage",
            "Previous stage",
            show=False,
            id="previous_stage",
        ),
        Binding("right_curly_bracket", "next_block", "Next block", show=False, id="next_block"),
        Binding(
            "left_curly_bracket",
            "previous_block",
            "Previous block",
            show=False,
            id="previous_block",
        ),
        Binding("n", "next_match", "Next match", show=False, id="next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="previous_match"),
    ]

    DEFAULT_CSS = """
    LayerTable {
        width: 1fr;
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 0;
    }

    LayerTable > .layer-table--header {
        text-style: bold;
        background: $panel;
    }

    LayerTable > .layer-table--group {
        text-style: bold;
        color: $accent;
    }

    LayerTable > .layer-table--trainable {
        color: $text;
    }

    LayerTable > .layer-table--frozen {
        color: $text-muted;
        text-style: dim;
    }

    LayerTable > .layer-table--partial {
        color: $warning;
    }

    LayerTable > .layer-table--exception {
        text-style: italic;
    }

    LayerTable > .layer-table--lora {
        color: $text-secondary;
        text-style: bold;
    }

    LayerTable > .layer-table--boundary {
        color: $error;
        text-style: bold;
    }

    LayerTable > .layer-table--phase {
        color: $accent;
    }

    /* The cursor row is drawn in these colours alone (not over the row's own colour, which can
       be the cursor's). Focused, it is reversed: an accent bar with dark text, which stays a bar
       in 256 and 16 colours and with NO_COLOR. Unfocused (the side pane has the keys), it is a
       muted bar with light, underlined text. Colours here are opaque: the alpha of a component
       class's colour is not blended (`$accent 40%` draws full accent). */
    LayerTable > .layer-table--cursor {
        color: $foreground;
        background: $accent-muted;
        text-style: bold underline;
    }

    LayerTable:focus > .layer-table--cursor {
        color: $accent;
        background: $surface;
        text-style: bold reverse;
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "layer-table--header",
        "layer-table--group",
        "layer-table--trainable",
        "layer-table--frozen",
        "layer-table--partial",
        "layer-table--exception",
        "layer-table--lora",
        "layer-table--boundary",
        "layer-table--phase",
        "layer-table--cursor",
        "layer-table--dim",
    }

    cursor: reactive[int] = reactive(0, always_update=True, init=False, repaint=False)
    """Index of the highlighted row in the visible rows."""

    class Highlighted(Message):
        """The cursor moved to another row."""

        def __init__(self, layer: LayerInfo | None, title: str) -> None:
            super().__init__()
            self.layer = layer
            self.title = title

    class LayerSelected(Message):
        """Enter was pressed on a layer row: open its detail."""

        def __init__(self, layer: LayerInfo) -> None:
            super().__init__()
            self.layer = layer

    def __init__(
        self,
        info: ModelInfo,
        view: PlanView,
        plan: FreezePlan,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.info = info
        self.view = view
        self.plan = plan
        self._roots = build_tree(info, view)
        self._nodes_by_key: dict[str, Node] = {}
        self._parent_of: dict[str, Node | None] = {}
        self._index_nodes(self._roots, None)
        self._collapsed: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._rows: list[Row] = []
        self._starts: list[int] = []
        self._row_of_key: dict[str, int] = {}
        self._columns = Columns(index=3, type=0, shape=0)
        self._columns_width = -1
        """The width ``_columns`` was laid out for (-1: not yet)."""
        self._phase_marks: list[tuple[int, str]] = []
        """Leaf positions and labels of the phases' boundary lines."""
        self._stage_starts = self._jump_starts("stage")
        self._block_starts = self._jump_starts("block")
        self._lora_on: list[int] = []
        """Sorted leaf positions of the layers with LoRA under the plan."""
        self._show_plan_lora(plan)
        self._rebuild_rows()

    def _jump_starts(self, attribute: str) -> list[int]:
        """Leaf positions where a stage or block starts, for the jumps: not inside a layer
        with sublayers (a transformer block's query, key and value are not blocks; the
        blocks are the transformer layers themselves), but inside a nested model."""
        info = self.info
        return sorted(
            self.view.span(row.path)[0]
            for row in iter_group_starts(info.layers, attribute)
            if not (row.parent_path and info.layer(row.parent_path).subclassed)
        )

    def _show_plan_lora(self, plan: FreezePlan) -> None:
        """Take the plan's LoRA layers; the state column widens to mark the layers that
        cannot take LoRA while the plan has LoRA."""
        had = self.plan.lora is not None
        self._lora_on = sorted(self.view.lora_positions(plan.lora)) if plan.lora is not None else []
        if had != (plan.lora is not None):
            self._columns_width = -1  # lay the columns out again
            if self.is_mounted:
                self.refresh(layout=True)  # the tree's width follows its columns

    def lora_count(self, start: int, end: int) -> int:
        """How many layers at leaf positions ``[start, end)`` have LoRA under the plan."""
        return bisect.bisect_left(self._lora_on, end) - bisect.bisect_left(self._lora_on, start)

    def _index_nodes(self, nodes: list[Node], parent: Node | None) -> None:
        for node in nodes:
            self._nodes_by_key[node.key] = node
            self._parent_of[node.key] = parent
            self._index_nodes(node.children, node)

    # -- rows ------------------------------------------------------------------------------

    def _rebuild_rows(self) -> None:
        """Recompute the visible rows (collapse, expand and filter changes only)."""
        rows: list[Row] = []
        if self._pattern is not None:
            pattern = self._pattern
            for row in self.info.layers:
                if pattern.search(row.name) or pattern.search(row.class_name):
                    node = self._nodes_by_key[f"layer:{row.path_text}"]
                    rows.append(Row(node, row.depth))
        else:

            def visit(nodes: list[Node], indent: int) -> None:
                for node in nodes:
                    rows.append(Row(node, indent))
                    if node.children and node.key not in self._collapsed:
                        visit(node.children, indent + 1)

            visit(self._roots, 0)
        self._rows = rows
        self._starts = [row.node.start for row in rows]
        self._row_of_key = {row.node.key: i for i, row in enumerate(rows)}
        self._update_virtual_size()

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._rows) + 2 + len(self._phase_marks))

    @property
    def row_count(self) -> int:
        """How many rows are visible (filter and collapsed groups applied)."""
        return len(self._rows)

    @property
    def match_count(self) -> int | None:
        """Rows matching the filter, None when no filter is set."""
        return len(self._rows) if self._pattern is not None else None

    def _boundary_row(self) -> int:
        """Index of the visible row the boundary line is drawn above."""
        return bisect.bisect_left(self._starts, self.view.boundary_position(self.plan))

    def _marks(self) -> list[tuple[int, str | None]]:
        """The lines drawn between rows, as (row they sit above, label): the boundary (label
        None) and each phase's boundary, in row order (a handful: no cost per key)."""
        marks: list[tuple[int, str | None]] = [(self._boundary_row(), None)]
        for position, label in self._phase_marks:
            marks.append((bisect.bisect_left(self._starts, position), label))
        marks.sort(key=lambda mark: (mark[0], mark[1] is not None))
        return marks

    def _line_of_row(self, row_index: int) -> int:
        return row_index + sum(1 for row, _ in self._marks() if row <= row_index)

    def set_phase_marks(self, marks: list[tuple[int, str]]) -> None:
        """Draw a labelled line above each phase's boundary (leaf position, label)."""
        self._phase_marks = list(marks)
        self._update_virtual_size()
        self.refresh()

    # -- public API ------------------------------------------------------------------------

    @property
    def current_node(self) -> Node | None:
        """The node under the cursor."""
        return self._rows[self.cursor].node if self._rows else None

    @property
    def current_layer(self) -> LayerInfo | None:
        """The layer under the cursor (a group's first layer)."""
        node = self.current_node
        return node.first_layer if node else None

    def set_plan(self, plan: FreezePlan) -> None:
        """Show another plan (one refresh of the visible lines, no rebuild)."""
        self._show_plan_lora(plan)
        self.plan = plan
        self.refresh()
        # The boundary line may have moved in above the cursor and pushed it off the screen.
        self._scroll_cursor_into_view()

    def set_filter(self, pattern: re.Pattern[str] | None) -> int:
        """Show only layers whose name or type matches (None shows the tree again).

        Returns:
            The number of matching layers (all rows when the filter is cleared).
        """
        keep = self.current_layer
        self._pattern = pattern
        self._rebuild_rows()
        self._cursor_to_layer(keep, expand=pattern is None)
        self.refresh()
        return len(self._rows)

    def move_to_path(self, path: Path) -> bool:
        """Put the cursor on the layer at ``path``, expanding the groups around it."""
        try:
            layer = self.info.layer(path)
        except KeyError:
            return False
        return self._cursor_to_layer(layer, expand=True)

    # -- cursor ----------------------------------------------------------------------------

    def _cursor_to_layer(self, layer: LayerInfo | None, expand: bool) -> bool:
        if not self._rows:
            self.cursor = 0
            return False
        if layer is None:
            self.cursor = 0
            return False
        key = f"layer:{layer.path_text}"
        if expand and key not in self._row_of_key and self._pattern is None:
            changed = False
            parent = self._parent_of.get(key)
            while parent is not None:
                if parent.key in self._collapsed:
                    self._collapsed.discard(parent.key)
                    changed = True
                parent = self._parent_of.get(parent.key)
            if changed:
                self._rebuild_rows()
        if key in self._row_of_key:
            self.cursor = self._row_of_key[key]
            return True
        # Filtered out or collapsed: go to the nearest row before it.
        position = self.view.span(layer.path)[0]
        self.cursor = max(0, bisect.bisect_right(self._starts, position) - 1)
        return False

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self._rows) - 1)) if self._rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        top = int(self.scroll_y)
        self._scroll_cursor_into_view(new - old)
        if int(self.scroll_y) == top:  # a scroll repaints everything anyway
            self._refresh_row(old)
            self._refresh_row(new)
        node = self.current_node
        self.post_message(
            self.Highlighted(node.first_layer if node else None, node.title if node else "")
        )

    def _refresh_row(self, row_index: int) -> None:
        if 0 <= row_index < len(self._rows):
            y = self._line_of_row(row_index) - int(self.scroll_y) + 1
            self.refresh(Region(0, y, self.size.width, 1))

    def _content_height(self) -> int:
        return max(1, self.size.height - 1)

    def _scroll_cursor_into_view(self, step: int = 0) -> None:
        """Scroll so the cursor row shows.

        A single step past the edge scrolls a quarter page, as vim's 'scrolljump' does:
        scrolling repaints the whole tree (and sends it all over SSH), so holding j down
        repaints once per few steps instead of on every step. A longer jump to a row off the
        screen (a stage, a block, a match) puts it a third of the way down, with its context
        above and below it.
        """
        line = self._line_of_row(self.cursor)
        top = int(self.scroll_y)
        height = self._content_height()
        # Keep the lines right above the cursor (boundary, phases) in view too.
        wanted_top = line - sum(1 for row, _ in self._marks() if row == self.cursor)
        if top <= wanted_top and line < top + height:
            return
        if abs(step) == 1:
            jump = max(1, height // 4)
            if wanted_top < top:
                target = wanted_top - jump + 1
            else:
                target = line - height + jump
        else:
            target = wanted_top - height // 3
        self.scroll_to(y=max(0, target), animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= self._content_height() - 1

    def action_page_down(self) -> None:
        self.cursor += self._content_height() - 1

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self._rows) - 1

    def action_collapse(self) -> None:
        node = self.current_node
        if node is None or self._pattern is not None:
            return
        if node.children and node.key not in self._collapsed:
            self._collapsed.add(node.key)
            self._rebuild_rows()
            self.cursor = self._row_of_key[node.key]
            self.refresh()
            return
        parent = self._parent_of.get(node.key)
        if parent is not None and parent.key in self._row_of_key:
            self.cursor = self._row_of_key[parent.key]

    def action_expand(self) -> None:
        node = self.current_node
        if node is None or self._pattern is not None:
            return
        if node.children and node.key in self._collapsed:
            self._collapsed.discard(node.key)
            self._rebuild_rows()
            self.cursor = self._row_of_key[node.key]
            self.refresh()
        elif node.children:
            self.cursor += 1

    def action_select(self) -> None:
        node = self.current_node
        if node is None:
            return
        if node.kind != "layer":
            if node.key in self._collapsed:
                self.action_expand()
            else:
                self.action_collapse()
            return
        assert node.layer is not None
        self.post_message(self.LayerSelected(node.layer))

    def collapse_all(self) -> None:
        """Collapse every group (stages stay visible)."""
        self._collapsed = {key for key, node in self._nodes_by_key.items() if node.kind != "layer"}
        keep = self.current_layer
        self._rebuild_rows()
        self._cursor_to_layer(keep, expand=False)
        self.refresh()

    def expand_all(self) -> None:
        """Expand every group."""
        keep = self.current_layer
        self._collapsed.clear()
        self._rebuild_rows()
        self._cursor_to_layer(keep, expand=False)
        self.refresh()

    def _jump(self, starts: list[int], forward: bool) -> None:
        layer = self.current_layer
        if layer is None or not starts:
            return
        position = self.view.span(layer.path)[0]
        if forward:
            i = bisect.bisect_right(starts, position)
            target = starts[i] if i < len(starts) else None
        else:
            i = bisect.bisect_left(starts, position) - 1
            target = starts[i] if i >= 0 else None
        if target is None:
            self.app.bell()
            return
        leaf = self.view.leaves[target]
        # A stage that starts with a nested model starts at the container row.
        self._cursor_to_layer(_outermost_starting_at(self.info, self.view, leaf), expand=True)
        self.refresh()

    def action_next_stage(self) -> None:
        self._jump(self._stage_starts, forward=True)

    def action_previous_stage(self) -> None:
        self._jump(self._stage_starts, forward=False)

    def action_next_block(self) -> None:
        self._jump(self._block_starts, forward=True)

    def action_previous_block(self) -> None:
        self._jump(self._block_starts, forward=False)

    def action_next_match(self) -> None:
        if self._pattern is None or not self._rows:
            self.app.bell()
            return
        self.cursor = (self.cursor + 1) % len(self._rows)

    def action_previous_match(self) -> None:
        if self._pattern is None or not self._rows:
            self.app.bell()
            return
        self.cursor = (self.cursor - 1) % len(self._rows)

    # -- rendering -------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._lay_out(self.size.width)
        self._update_virtual_size()
        self._scroll_cursor_into_view()

    def _lay_out(self, width: int) -> None:
        """Fit the columns to ``width``, once per width: the first frame is drawn before the
        widget hears of its size, and must show the same columns as every later one."""
        if width != self._columns_width:
            self._columns = self._layout_columns(width)
            self._columns_width = width

    def _wanted_columns(self) -> tuple[Columns, int]:
        """Every column as wide as its content (capped), and the name column's wanted width."""
        layers = self.info.layers
        index = max([3, *(len(row.path_text) for row in layers)])
        type_width = min(TYPE_CAP, max([4, *(len(short_type(row.class_name)) for row in layers)]))
        shape_width = min(SHAPE_CAP, max([5, *(len(row.output_shape_text) for row in layers)]))
        # Names are indented by two per level: groups (up to two) and nested models.
        wanted = min(NAME_CAP, max([8, *(len(row.name) + 2 * (row.depth + 2) for row in layers)]))
        params = max([6, *(len(f"{row.params:,}") for row in layers)])
        state = LORA_STATE_WIDTH if self.plan.lora is not None else Columns.state
        full = Columns(index=index, type=type_width, shape=shape_width, params=params, state=state)
        return full, wanted

    def get_content_width(self, container: Size, viewport: Size) -> int:
        """As wide as every column at its full width, leaving the widgets beside the tree
        (the side pane) their minimum width: with ``width: auto`` the tree takes what its
        columns need and the side pane the rest, so a wide terminal leaves no empty band."""
        full, wanted = self._wanted_columns()
        beside = 0
        for widget in self.siblings:
            minimum = widget.styles.min_width
            if widget.display and minimum is not None and minimum.is_cells:
                beside += int(minimum.value)
        scrollbar = self.styles.scrollbar_size_vertical if self.show_vertical_scrollbar else 0
        room = container.width - beside - scrollbar
        return max(1, min(full.fixed + wanted, room))

    def _layout_columns(self, width: int) -> Columns:
        """Columns as wide as their content (capped), so that all six show where they can.

        The name column is as wide as the longest name with its indentation (up to
        ``NAME_CAP``; past it a name is cut in the middle), not as wide as the terminal.
        When the width runs out, the name gives way down to ``NAME_MIN``, then the type
        column goes (the side pane and the detail still show the type), then the shape.
        """
        full, wanted = self._wanted_columns()
        for columns in (
            full,
            replace(full, type=0),
            replace(full, type=0, shape=0),
        ):
            room = width - columns.fixed
            if room >= min(wanted, NAME_MIN):
                return replace(columns, name=min(room, wanted))
        return replace(columns, name=max(8, width - columns.fixed))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        self._lay_out(width)
        if y == 0:
            return self._header_strip(width)
        line = int(self.scroll_y) + y - 1
        above = 0  # mark lines before this line
        for i, (row, label) in enumerate(self._marks()):
            at = row + i
            if line == at:
                return (
                    self._boundary_strip(width)
                    if label is None
                    else self._phase_strip(label, width)
                )
            if at < line:
                above += 1
        row_index = line - above
        if not 0 <= row_index < len(self._rows):
            return Strip.blank(width, self.rich_style)
        return self._row_strip(self._rows[row_index], row_index == self.cursor, width)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"layer-table--{name}", partial=True)

    def _cells(
        self, index: str, name: str, type_: str, shape: str, params: str, state: str, width: int
    ) -> str:
        c = self._columns
        name_width = c.name or max(8, width - c.fixed)
        if len(name) > name_width:  # keep the indentation and the marker, cut the name
            lead = len(name) - len(name.lstrip(" ▾▸"))
            name = name[:lead] + _middle(name[lead:], name_width - lead)
        parts = [" ", index.rjust(c.index), " ", name.ljust(name_width)]
        if c.type:
            parts += [" ", _middle(type_, c.type).ljust(c.type)]
        if c.shape:
            parts += [" ", _middle(shape, c.shape).rjust(c.shape)]
        parts += [" ", params.rjust(c.params), " ", state.ljust(c.state)]
        return "".join(parts)[:width].ljust(width)

    def _header_strip(self, width: int) -> Strip:
        text = self._cells("#", "name", "type", "output shape", "params", "state", width)
        return Strip([Segment(text, self.rich_style + self._style("header"))], width)

    def _boundary_strip(self, width: int) -> Strip:
        layer = self.view.boundary_layer(self.plan)
        if layer is None:
            label = " ▲ every layer frozen "
        elif self.view.boundary_position(self.plan) == 0:
            label = " ▼ nothing frozen: every layer trains "
        else:
            label = f" ▲ frozen · trainable ▼  boundary at {layer.path_text} {layer.name} "
        text = ("──" + label).ljust(width, "─")[:width]
        return Strip([Segment(text, self.rich_style + self._style("boundary"))], width)

    def _phase_strip(self, label: str, width: int) -> Strip:
        text = ("┄┄ " + label + " ").ljust(width, "┄")[:width]
        return Strip([Segment(text, self.rich_style + self._style("phase"))], width)

    def _row_strip(self, row: Row, is_cursor: bool, width: int) -> Strip:
        node = row.node
        indent = "  " * row.indent
        base = self.rich_style
        if node.kind != "layer":
            marker = "▸ " if node.key in self._collapsed else "▾ "
            title = node.title
            boundary = self.view.boundary_position(self.plan)
            if node.key in self._collapsed and node.start < boundary < node.end:
                title += "  ◆ boundary inside"
            state, _ = self._span_state(node.start, node.end)
            state_width = self._columns.state
            head = (" " + indent + marker + title)[: max(0, width - state_width - 1)]
            text = head.ljust(width - state_width - 1) + " " + state.ljust(state_width)
            style = base + self._style("cursor" if is_cursor else "group")
            return Strip([Segment(text[:width].ljust(width), style)], width)
        layer = node.layer
        assert layer is not None
        state, style_name = self._state(layer)
        marker = ""
        if node.children:
            marker = "▸ " if node.key in self._collapsed else "▾ "
        params = f"{layer.params:,}" if layer.params else "0"
        text = self._cells(
            layer.path_text,
            indent + marker + layer.name,
            short_type(layer.class_name),
            layer.output_shape_text,
            params,
            state,
            width,
        )
        # The cursor row is drawn in the cursor's colours alone (its state is in the text):
        # a row colour under the cursor's background can be the same colour.
        style = base + self._style("cursor" if is_cursor else style_name)
        if layer.path in self.plan.exceptions:
            style += self._style("exception")
        return Strip([Segment(text, style)], width)

    def _span_state(self, start: int, end: int) -> tuple[str, str]:
        if self.view.trainable_size_between(start, end) == 0:
            return "·", "trainable"  # a group without weights has nothing to freeze
        plan = self.plan
        if plan.lora is not None and self.lora_count(start, end):
            # LoRA inside: "lora" when nothing else trains (the usual LoRA set-up).
            without = self.view.trainable_between(replace(plan, lora=None), start, end)
            on = self._lora_on[
                bisect.bisect_left(self._lora_on, start) : bisect.bisect_left(self._lora_on, end)
            ]
            lora_kernels = sum(
                self.view.leaves[pos].trainable_size
                for pos in on
                if self.view.leaf_trainable(replace(plan, lora=None), self.view.leaves[pos].path)
            )
            return ("lora", "lora") if without == lora_kernels else ("partly+L", "partial")
        trainable = self.view.trainable_between(plan, start, end)
        if trainable == 0:
            return "frozen", "frozen"
        if trainable == self.view.trainable_size_between(start, end):
            return "train", "trainable"
        return "partly", "partial"

    def _state(self, layer: LayerInfo) -> tuple[str, str]:
        if layer.is_container:
            return self._span_state(*self.view.span(layer.path))
        plan = self.plan
        if plan.lora is not None and self.view.lora_on(plan, layer.path):
            return "lora", "lora"
        trains = self.view.leaf_trainable(plan, layer.path)
        mark = "*" if layer.path in plan.exceptions else ""
        if not layer.has_weights:
            return ("·" + mark, "trainable" if trains else "frozen")
        # With LoRA in the plan, a layer that cannot take it says so in words (NO_COLOR).
        no_lora = f" {NO_LORA}" if plan.lora is not None and not layer.lora_supported else ""
        if trains:
            return "train" + mark + no_lora, "trainable"
        return "frozen" + mark + no_lora, "frozen"


def _middle(text: str, width: int) -> str:
    """``text`` in ``width`` characters, cut in the middle: ``block6a_e…activation``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def _outermost_starting_at(info: ModelInfo, view: PlanView, leaf: LayerInfo) -> LayerInfo:
    """The outermost row whose leaves start at ``leaf`` (the leaf itself if none)."""
    position = view.span(leaf.path)[0]
    for depth in range(len(leaf.path)):
        candidate = info.layer(leaf.path[: depth + 1])
        if view.span(candidate.path)[0] == position:
            return candidate
    return leaf


__all__ = ["LayerTable", "Node", "Row", "build_tree"]
