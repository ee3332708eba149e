"""The cut a freeze boundary makes through the graph.

Freezing ``layers[:k]`` cuts the graph in ``model.layers`` order. The tensors that cross the
cut are the outputs of frozen layers that trainable layers read. When exactly one crosses,
the cut is *clean*: everything frozen could be run once and its output cached as features.
When several cross, the boundary usually sits inside a block (a residual unit's shortcut
crosses it), which the Keras fine-tuning guides warn against.

A boundary inside a subclassed layer (``mha/key`` in a ``MultiHeadAttention``) has no graph to
cut: its sublayers are attributes, called in an order only the layer's ``call`` knows. Such a
boundary is a partial freeze of that layer, never a clean cut; what crosses is what crosses a
cut before the layer, and :attr:`Cut.inside` names it.

Everything here is precomputed once per model from the walked :class:`ModelInfo`, so asking
for the cut at a boundary on every keypress is a dictionary look-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, call_label

Path = tuple[int, ...]


@dataclass(frozen=True)
class Cut:
    """What a boundary cuts.

    Attributes:
        boundary: name of the first layer that trains (None: everything is frozen).
        crossing: names of the frozen layers' tensors that trainable layers read (a shared
            layer's later calls as ``encoder (call 2)``, see :func:`.layers.call_label`; a
            cut inside a model called twice as ``enc_h (encoder call 2)`` too).
        clean: exactly one tensor crosses (or none: nothing, or everything, is frozen).
        splits_block: the block the boundary cuts through when the cut is not clean, the
            boundary is not at the start of its block and it is not a join (``into``).
        into: the boundary's name when several tensors cross and the boundary layer alone
            reads them all: it is where the cut branches join (a concatenation of 200
            branches, the distance layer of a siamese model), so every branch is frozen whole.
        inside: the subclassed layer the boundary sits in (a partial freeze of it: not a
            clean cut), or None.
    """

    boundary: str | None
    crossing: tuple[str, ...]
    clean: bool
    splits_block: str | None
    into: str | None = None
    inside: str | None = None

    def describe(self) -> str:
        """One line for the status bar: ``clean cut: conv4_block6_out``."""
        if self.boundary is None:
            return "no cut: every layer frozen"
        if self.inside:
            return f"inside {self.inside}: a partial freeze of a subclassed layer, not a clean cut"
        if not self.crossing:
            return "no cut: every layer trains"
        if self.clean:
            return f"clean cut: {self.crossing[0]}"
        shown = ", ".join(self.crossing[:3]) + (", ..." if len(self.crossing) > 3 else "")
        count = f"{len(self.crossing)} tensors cross ({shown})"
        if self.into:
            return f"{len(self.crossing)} tensors cross into {self.into} ({shown})"
        if self.splits_block:
            return f"splits block {self.splits_block}: {count}"
        return f"not clean: {count}"

    def brief(self) -> str:
        """The status bar's shorter form: the tensors' names are left to the side pane."""
        if self.inside:
            return f"partial freeze inside {self.inside}"
        if self.clean or not self.crossing:
            return self.describe()
        count = f"{len(self.crossing)} tensors cross"
        if self.into:
            return f"{count} into {self.into}"
        if self.splits_block:
            return f"splits block {self.splits_block} ({count})"
        return f"not clean: {count}"

    def to_json(self) -> dict[str, Any]:
        """The ``cut`` object of ``kfreeze layers --json``."""
        return {
            "boundary": self.boundary,
            "crossing": list(self.crossing),
            "clean": self.clean,
            "splits_block": self.splits_block,
            "into": self.into,
            "inside": self.inside,
        }


class _Container:
    """One container's graph: for every position, which tensors cross a cut just before it.

    The tensors are the layers' outputs and those of the plain operations between layers
    (``x + y`` in ConvNeXt's residuals), which run as soon as their last input exists. A
    tensor crosses the boundaries after the point it is made, up to its last reader.
    """

    def __init__(self, rows: tuple[LayerInfo, ...]) -> None:
        # Every call of a layer makes its own tensors (a shared encoder's second output is
        # ``encoder (call 2)``), all at the layer's position: frozen or trained as one.
        position_of = {row.name: i for i, row in enumerate(rows)}
        for i, row in enumerate(rows):
            for call, info in enumerate(row.calls):
                for output in range(len(info.output_shapes)):
                    position_of[call_label(row.name, call, output)] = i
        self.rows = rows
        self.block_start = [i == 0 or rows[i - 1].block != rows[i].block for i in range(len(rows))]
        ops: dict[str, tuple[str, ...]] = {}
        for row in rows:
            ops.update(row.ops)
        made_at: dict[str, int | None] = dict(position_of)

        def where(label: str) -> int | None:
            if label not in made_at:
                made_at[label] = None  # against a cycle while its inputs are placed
                places = [p for p in (where(x) for x in ops.get(label, ())) if p is not None]
                made_at[label] = max(places) if places else None
            return made_at[label]

        last_read: dict[str, int] = {}
        for reader, row in enumerate(rows):
            for label in row.sources or row.inbound:
                last_read[label] = max(last_read.get(label, -1), reader)
        for label, inputs in ops.items():
            runs_at = where(label)
            if runs_at is None:
                continue
            for source in inputs:
                last_read[source] = max(last_read.get(source, -1), runs_at)
        starting: dict[int, list[tuple[str, int, str]]] = {}
        for label, last in last_read.items():
            made = where(label)
            if made is not None and last > made:
                starting.setdefault(made + 1, []).append((self._display(label, made), last, label))
        # crossing[p]: (name, last reader) of each tensor that crosses a cut before position p.
        self.crossing: list[tuple[tuple[str, int], ...]] = []
        # joins[p]: several tensors cross before p and the layer at p itself reads them all,
        # and nothing after it does (a concatenation of branches, a residual add).
        self.joins: list[bool] = []
        active: list[tuple[str, int, str]] = []
        for p in range(len(rows) + 1):
            active = [item for item in active if item[1] >= p] + starting.get(p, [])
            self.crossing.append(tuple((name, last) for name, last, _ in active))
            reads = set(rows[p].sources or rows[p].inbound) if p < len(rows) else set()
            self.joins.append(
                len(active) > 1 and all(last == p and label in reads for _, last, label in active)
            )

    def _display(self, label: str, made: int) -> str:
        if not label.startswith("op:"):
            return label
        return f"{label[3:]} after {self.rows[made].name}"

    def names_at(self, position: int) -> list[str]:
        """What crosses a cut just before ``position``."""
        return [label for label, _ in self.crossing[position]]

    def passing(self, position: int) -> list[str]:
        """What crosses the layer at ``position`` to be read after it (the container at
        ``position`` is cut inside, so what only it reads is counted there)."""
        return [label for label, last in self.crossing[position] if last > position]


class CutIndex:
    """The cut at every boundary of a walked model, precomputed.

    Args:
        info: the walked model.
    """

    def __init__(self, info: ModelInfo) -> None:
        members: dict[Path, list[LayerInfo]] = {}
        for row in info.layers:
            members.setdefault(row.parent_path, []).append(row)
        self._containers = {path: _Container(tuple(rows)) for path, rows in members.items()}
        #: Containers without a graph (subclassed layers), and the paths of their rows.
        self._subclassed = {
            row.path: row.name for row in info.layers if row.is_container and row.subclassed
        }

    def at(self, boundary: Path | None) -> Cut:
        """The cut made by freezing everything before the layer at ``boundary``.

        Args:
            boundary: a layer's path (a container's path cuts before the container), or None
                for "everything frozen".
        """
        if boundary is None:
            return Cut(None, (), True, None)
        holder = next(
            (boundary[:d] for d in range(1, len(boundary)) if boundary[:d] in self._subclassed),
            None,
        )
        if holder is not None:
            outer = self.at(holder)
            name = self._containers[boundary[:-1]].rows[boundary[-1]].name
            return Cut(name, outer.crossing, False, None, None, self._subclassed[holder])
        container = self._containers[boundary[:-1]]
        position = boundary[-1]
        row = container.rows[position]
        names = container.names_at(position)
        joins = container.joins[position]
        # Enclosing models: a model called twice runs the cut inside it twice, and what
        # their earlier layers feed past the container being cut crosses too.
        for depth in range(len(boundary) - 1, 0, -1):
            outer = self._containers[boundary[: depth - 1]]
            holder = outer.rows[boundary[depth - 1]]
            names += [
                f"{name} ({holder.name} call {call})"
                for call in range(2, holder.call_count + 1)
                for name in names
            ]
            passing = outer.passing(boundary[depth - 1])
            joins = joins and not passing
            names.extend(passing)
        crossing = tuple(dict.fromkeys(names))
        clean = len(crossing) <= 1
        into = row.name if joins and not clean else None
        splits = None
        if not clean and not into and not container.block_start[position]:
            splits = row.block
        return Cut(row.name, crossing, clean, splits, into)
