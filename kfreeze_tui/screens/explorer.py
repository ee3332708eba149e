"""The explorer: the layer tree, the layer under the cursor, and live counts.

Every key here changes the plan (plain data in the core) or moves the cursor; none calls
Keras. The screen owns the plan and hands it to the tree and the status bar.
"""

from __future__ import annotations

import re
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker

from kfreeze_tui.core.model.layers import LayerInfo, call_inputs
from kfreeze_tui.core.model.names import find_layer
from kfreeze_tui.core.plan.features import feature_cache
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec, default_replaced_output, model_outputs, validate
from kfreeze_tui.core.plan.lora import LoraSpec, adapter_size
from kfreeze_tui.core.plan.phases import CompileSpec, Phase
from kfreeze_tui.core.runtime.gpus import Gpu
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.cost import cost_model, human_bytes
from kfreeze_tui.core.train.export import ExportRequest, ExportResult
from kfreeze_tui.core.train.snippet import freeze_snippet
from kfreeze_tui.core.wording import sentence
from kfreeze_tui.screens.export import ExportRunScreen
from kfreeze_tui.widgets.footer import KeepingFooter
from kfreeze_tui.widgets.head_pane import HeadPane
from kfreeze_tui.widgets.layer_table import LayerTable
from kfreeze_tui.widgets.lora_pane import LoraPane
from kfreeze_tui.widgets.status_bar import StatusBar, TextPane, phase_place
from kfreeze_tui.workers import ReportsWorkerFailures


def layer_summary(session: ModelSession, plan: FreezePlan, layer: LayerInfo | None) -> Text:
    """The side pane's text about the layer under the cursor."""
    text = Text()
    if layer is None:
        return text
    view = session.view
    text.append(f"{layer.name}\n", style="bold")
    text.append(f"{layer.class_name} · index {layer.path_text}\n")
    text.append(f"output {layer.output_shape_text}\n")
    text.append(f"{layer.params:,} params")
    if layer.params and layer.trainable_size != layer.params:
        text.append(f" ({layer.trainable_size:,} trainable)")
    text.append("\n")
    stage = f"stage {layer.stage}"
    if layer.stage_name and layer.stage_name != stage:
        stage += f" ({layer.stage_name})"
    text.append(f"{stage} · block {layer.block}\n")
    if layer.is_container:
        trains = view.trainable_in(plan, layer.path)
        kind = "layer with sublayers" if layer.subclassed else "nested model"
        text.append(f"{kind}, {layer.child_count} layers, {trains:,} params train\n")
    else:
        trains = view.leaf_trainable(plan, layer.path)
        text.append("trains" if trains else "frozen", style="bold green" if trains else "bold cyan")
        text.append(f": {view.reason(plan, layer.path).value}\n")
        # Before the longer lines, so that the pane's height limit never cuts it off.
        text.append_text(lora_line(session, plan, layer))
    cut = view.cuts.at(layer.path)
    text.append("f here: ")
    text.append(cut.describe(), style="green" if cut.clean else "yellow")
    text.append("\n")
    if not layer.is_container:
        there = cost_model(view).estimate(plan.with_boundary(layer.path), session.training)
        text.append(f"  step {there.relative_step:.2f}x, {human_bytes(there.memory.total)}\n")
    # After the step: the pane's height limit cuts this rather than the step. A partial
    # freeze inside a subclassed layer is said by the cut's line already.
    if not cut.inside:
        cache = feature_cache(view, plan.with_boundary(layer.path))
        text.append(f"  {cache.describe()}\n", style="green" if cache.cacheable else "dim")
    calls = call_inputs(layer)
    if len(calls) > 1:
        shown = "; ".join(_first(inputs, 2) for inputs in calls[:3])
        more = "; ..." if len(calls) > 3 else ""
        text.append(f"called {len(calls)} times, from {shown}{more}\n", style="dim")
    elif calls[0]:
        text.append(f"from {_first(calls[0], 4)}\n", style="dim")
    return text


def lora_line(session: ModelSession, plan: FreezePlan, layer: LayerInfo) -> Text:
    """``LoRA on · +640 params at r8`` for a layer (the detail gives A and B), or why it
    cannot take LoRA while the plan has LoRA (nothing for a layer without weights)."""
    text = Text()
    if not layer.trainable_size:
        return text
    if layer.lora_kernel is None:
        if plan.lora is not None:  # said while LoRA is in the plan, as the tree's ⊘
            text.append(f"LoRA: cannot ({layer.class_name})\n", style="dim")
        return text
    state = session.view.lora_state(plan, layer.path)
    rank = plan.lora.rank if plan.lora is not None else LoraSpec().rank
    text.append(f"LoRA {state}", style="bold magenta" if state == "on" else "bold")
    text.append(f" · +{adapter_size(layer, rank):,} params at r{rank}\n")
    return text


def _first(names: tuple[str, ...], count: int) -> str:
    return ", ".join(names[:count]) + (" ..." if len(names) > count else "")


#: The actions whose keys the footer shows at every width.
ALWAYS_SHOWN = ("export", "app.help", "app.request_quit")

#: Below this many columns the side pane folds away, so that the tree keeps all its columns.
NARROW_WIDTH = 110


class ExplorerScreen(ReportsWorkerFailures, Screen[None]):
    """The main screen of an open model."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "boundary", "Freeze before", id="freeze_boundary"),
        Binding("space", "exception", "Toggle layer", id="toggle_exception"),
        Binding("L", "lora", "LoRA on/off", id="toggle_lora"),
        Binding("b", "bn_policy", "BatchNorm", show=False, id="bn_policy"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("y", "copy", "Copy code", id="copy_snippet"),
        Binding("e", "export", "Export", id="export"),
        Binding("c", "feature_layer", "Head here", show=False, id="head_here"),
        Binding("p", "toggle_pane", "Head pane", show=False, id="head_pane"),
        Binding("F", "freeze_all", "Freeze all", show=False, id="freeze_all"),
        Binding("U", "unfreeze_all", "Unfreeze all", show=False, id="unfreeze_all"),
        Binding("minus", "collapse_all", "Collapse all", show=False, id="collapse_all"),
        Binding("plus,equals_sign", "expand_all", "Expand all", show=False, id="expand_all"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
        Binding("a", "add_phase", "Add a training phase at the cursor", show=False, id="add_phase"),
        Binding("A", "add_head_phase", "Add a head-only phase", show=False, id="add_head_phase"),
        Binding("X", "remove_phase", "Remove a phase", show=False, id="remove_phase"),
        Binding(
            "E",
            "edit_phases",
            "Edit the phases' epochs and learning rates",
            show=False,
            id="edit_phases",
        ),
        Binding(
            "R", "repairs", "Repairs made to open an older file", show=False, id="show_repairs"
        ),
        Binding("question_mark", "app.help", "Help", id="help"),
        Binding("q", "app.request_quit", "Quit", id="quit"),
    ]

    narrow: reactive[bool] = reactive(False)
    """The terminal is too narrow for the side pane."""

    def __init__(self, session: ModelSession) -> None:
        super().__init__()
        self.session = session
        self.exported = False
        self._export_run: ExportRunScreen | None = None
        self._last_lora: LoraSpec | None = self.session.plan.lora
        """The LoRA the plan last had, so that switching LoRA off and on keeps its layers."""

    def compose(self) -> ComposeResult:
        info = self.session.info
        yield Static(self._header_text(), id="model-bar")
        with Horizontal(id="explorer-body"):
            yield LayerTable(info, self.session.view, self.plan, id="layers")
            with Vertical(id="side-pane"):
                yield TextPane(id="layer-summary")
                yield TextPane(id="phases")
                default_output = default_replaced_output(info)
                yield HeadPane(
                    self.session.head,
                    self.session.compile_spec,
                    self.session.training,
                    outputs=tuple(row.name for row in model_outputs(info)),
                    default_output=default_output.name if default_output else None,
                    id="head-pane",
                )
                yield LoraPane(self.plan.lora, id="lora-pane")
        yield Input(
            placeholder="filter: regex on name or type (Enter: keep, Esc: clear)", id="filter"
        )
        yield StatusBar(id="status")
        yield KeepingFooter(ALWAYS_SHOWN)

    def _header_text(self) -> Text:
        info = self.session.info
        text = Text()
        text.append(" kfreeze ", style="bold reverse")
        if self.session.random_weights:  # first, so that a narrow terminal never cuts it off
            text.append(" RANDOM WEIGHTS ", style="bold reverse red")
        text.append(f" {info.description} · {len(info.layers)} layers ")
        if self.session.repairs:
            count = len(self.session.repairs)
            text.append(
                f"  opened from an older Keras with {count} repair{'s' if count > 1 else ''} "
                f"(R: list)",
                style="yellow",
            )
        for warning in self.session.warnings:
            text.append(f"  {warning}", style="yellow")
        return text

    def on_mount(self) -> None:
        self.query_one(HeadPane).show_preview(self.session.view, self.plan)
        self.query_one(LoraPane).show(self.session.view, self.plan)
        self._show_status(self.plan)
        self._show_phases()
        self.query_one("#filter", Input).display = False
        table = self.query_one(LayerTable)
        table.focus()
        self._show_summary(table.current_layer)
        self._read_gpus()

    @work(thread=True, exit_on_error=False, group="gpus", description="reading nvidia-smi")
    def _read_gpus(self) -> list[Gpu]:
        """The GPUs' free memory, from nvidia-smi (another process: CUDA is never started
        here), to say whether the plan fits (applied by :meth:`worker_done`)."""
        from kfreeze_tui.core.runtime import gpus

        return gpus.query()

    def worker_done(self, worker: Worker[object]) -> None:
        if worker.group == "gpus" and worker.result:
            self.session.set_gpus(worker.result)  # type: ignore[arg-type]
            self._show_status(self.plan)

    def _show_status(self, plan: FreezePlan) -> None:
        self.query_one(StatusBar).show(
            self.session.view,
            plan,
            self.session.training,
            self.session.gpus,
            phases=self.session.phases,
            # never a pane that is hidden: at a narrow width, the key that shows it
            settings_at=self._key("head_pane") if self.narrow else "side pane",
            keys={name: self._key(name) for name in ("export", "bn_policy")},
            head=self.session.head,
        )

    def _key(self, binding_id: str) -> str:
        """The user's key(s) for one of this screen's bindings, as the footer shows them."""
        binding = next(b for b in self.BINDINGS if isinstance(b, Binding) and b.id == binding_id)
        return self.app.key_label(binding)  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        self.narrow = self.size.width < NARROW_WIDTH

    def watch_narrow(self, narrow: bool) -> None:
        self.set_class(narrow, "-narrow")
        if self.is_mounted:
            self._show_status(self.plan)

    @property
    def plan(self) -> FreezePlan:
        """The freeze plan (the session's: the screen renders it and sends changes)."""
        return self.session.plan

    @property
    def head(self) -> HeadSpec:
        """The new head (the session's)."""
        return self.session.head

    def change_plan(self, plan: FreezePlan) -> None:
        """Send a new plan to the session and show it."""
        if self.session.set_plan(plan):
            self._show_plan(plan)

    def _show_plan(self, plan: FreezePlan) -> None:
        table = self.query_one(LayerTable)
        table.set_plan(plan)
        self._show_status(plan)
        self._show_summary(table.current_layer)
        self.query_one(HeadPane).show_preview(self.session.view, plan)
        self.query_one(LoraPane).show(self.session.view, plan)
        if plan.lora is not None:
            self._last_lora = plan.lora
        if self.session.phases:
            self._show_phases()

    @property
    def table(self) -> LayerTable:
        """The layer tree."""
        return self.query_one(LayerTable)

    @on(LayerTable.Highlighted)
    def _highlighted(self, event: LayerTable.Highlighted) -> None:
        self._show_summary(event.layer)

    def _show_summary(self, layer: LayerInfo | None) -> None:
        self.query_one("#layer-summary", TextPane).set_text(
            layer_summary(self.session, self.plan, layer), fit=True
        )

    @on(LayerTable.LayerSelected)
    def _selected(self, event: LayerTable.LayerSelected) -> None:
        from kfreeze_tui.screens.detail import LayerDetailScreen

        self.app.push_screen(LayerDetailScreen(self.session, self.plan, event.layer))

    # -- plan actions ----------------------------------------------------------------------

    def action_boundary(self) -> None:
        layer = self.table.current_layer
        if layer is None:
            return
        self.change_plan(self.plan.with_boundary(layer.path))
        cut = self.session.view.cut(self.plan)
        if cut.splits_block:
            self.notify(
                f"The boundary at {layer.name} splits block {cut.splits_block}: "
                f"{len(cut.crossing)} tensors cross it. Keras's guides train blocks whole; "
                "press { to go to the block's start.",
                title="Not a clean cut",
                severity="warning",
                markup=False,
            )

    # -- phases --------------------------------------------------------------------------

    def action_add_phase(self) -> None:
        layer = self.table.current_layer
        if layer is None:
            return
        self.session.add_phase(Phase(boundary=layer.path, epochs=5, lr=1e-5))
        self._show_phases()

    def action_add_head_phase(self) -> None:
        self.session.add_phase(Phase(boundary=None, epochs=3, lr=1e-3))
        self._show_phases()

    def _phase_at_cursor(self) -> int:
        """The last phase whose boundary is the cursor's layer, else the last phase."""
        phases = self.session.phases
        layer = self.table.current_layer
        here = [i for i, p in enumerate(phases) if layer is not None and p.boundary == layer.path]
        return here[-1] if here else len(phases) - 1

    def action_remove_phase(self) -> None:
        if not self.session.phases:
            self.notify("There are no phases to remove: a adds one at the cursor.")
            return
        self.session.remove_phase(self._phase_at_cursor())
        self._show_phases()

    def action_edit_phases(self) -> None:
        from kfreeze_tui.screens.phases import PhaseSettings, PhasesScreen

        phases = self.session.phases
        if not phases:
            self.notify("There are no phases to edit: a adds one at the cursor, A a head-only one.")
            return

        def apply(settings: list[PhaseSettings] | None) -> None:
            if settings is None:
                return
            for index, setting in enumerate(settings):
                self.session.edit_phase(index, setting.epochs, setting.rate)
            self._show_phases()

        places = [phase_place(self.session.view, phase) for phase in phases]
        self.app.push_screen(PhasesScreen(phases, places, self._phase_at_cursor()), apply)

    def _show_phases(self) -> None:
        """The phases pane and the phases' lines in the tree."""
        session = self.session
        view = session.view
        text = Text()
        marks: list[tuple[int, str]] = []
        if not session.phases:
            text.append("Phases: none (a, A: add)", style="dim")
        else:
            text.append("Phases", style="bold")
            text.append(" (E edit, X remove)\n", style="dim")
            costs = cost_model(view)
            for number, phase in enumerate(session.phases, 1):
                plan = phase.plan(self.plan)
                where = "head" if phase.boundary is None else view.info.layer(phase.boundary).name
                trainable = view.totals(plan).trainable
                estimate = costs.estimate(plan, session.training)
                at = (
                    "head"
                    if phase.boundary is None
                    else f"at {view.info.layer(phase.boundary).path_text}"
                )
                text.append(f"{number} {at}", style="bold")
                text.append(f" · {phase.epochs} ep · lr {phase.lr_text()}\n")
                text.append(
                    f"  {trainable:,} · {estimate.relative_step:.2f}x · "
                    f"{human_bytes(estimate.memory.total)}\n"
                )
                position = (
                    len(view.leaves) if phase.boundary is None else view.span(phase.boundary)[0]
                )
                marks.append((position, f"phase {number}: {where}, {phase.epochs} epochs"))
        pane = self.query_one("#phases", TextPane)
        pane.set_text(text)
        pane.refresh(layout=True)
        self.table.set_phase_marks(marks)
        self._show_status(self.plan)  # the status bar says what e writes

    # -- LoRA ------------------------------------------------------------------------------

    def action_lora(self) -> None:
        """LoRA on or off on the layer under the cursor, or on every layer of the group
        (stage, block, layer with sublayers) that can take it; the others are skipped."""
        node = self.table.current_node
        if node is None:
            return
        view = self.session.view
        rows = [view.leaves[pos] for pos in range(node.start, node.end)]
        supported = [row for row in rows if row.lora_supported]
        skipped = [row for row in rows if row.trainable_size and not row.lora_supported]
        what = node.layer.name if node.layer is not None else node.title.split("  ")[0]
        if not supported:
            if skipped and len(rows) == 1:
                message = f"{what} cannot take LoRA ({rows[0].class_name} has no enable_lora)."
            elif skipped:
                message = f"No layer of {what} can take LoRA: {len(skipped)} skipped."
            else:
                message = f"{what} has no weights for LoRA."
            self.notify(message, title="LoRA", severity="warning", markup=False)
            return
        plan = self.plan
        started = plan.lora is None
        # LoRA off: it starts with the pane's rank and targets (keras-hub's attention layers
        # by default), and the cursor's layers on.
        lora = plan.lora or self._pane_lora()
        turn_on = started or not all(view.lora_on(plan, row.path) for row in supported)
        for row in supported:
            if view.lora_on(plan.with_lora(lora), row.path) != turn_on:
                lora = lora.toggled(row.path)
        self.change_plan(plan.with_lora(lora))
        verb = "on" if turn_on else "off"
        count = len(supported)
        message = (
            f"LoRA {verb} for {what}."
            if count == 1
            else f"LoRA {verb} for {count} layers of {what}."
        )
        if skipped:
            message += (
                f" {len(skipped)} layer{'s' if len(skipped) != 1 else ''} cannot take LoRA: "
                "skipped."
            )
        if started:
            total = len(view.lora_positions(lora))
            message += (
                f" With the targets {lora.targets}: {total} layer{'s' if total != 1 else ''}"
                f" in all, rank {lora.rank} (side pane)."
            )
        self.notify(message, title="LoRA", markup=False)

    def _pane_lora(self) -> LoraSpec:
        """The rank and targets the LoRA pane holds."""
        pane = self.query_one(LoraPane)
        return LoraSpec(pane.rank, pane.targets)

    @on(LoraPane.Changed)
    def _lora_changed(self, event: LoraPane.Changed) -> None:
        if not event.enabled:
            self.change_plan(self.plan.with_lora(None))
            self.query_one(LoraPane).show(self.session.view, self.plan)
            return
        toggles = (self.plan.lora or self._last_lora or LoraSpec()).toggles
        self.change_plan(self.plan.with_lora(LoraSpec(event.rank, event.targets, toggles)))
        self.query_one(LoraPane).show(self.session.view, self.plan)

    def action_repairs(self) -> None:
        if not self.session.repairs:
            self.notify("Nothing was repaired: this model opened in Keras 3 as it is.")
            return
        from kfreeze_tui.screens.repairs import RepairsScreen

        self.app.push_screen(
            RepairsScreen(self.session.repairs, self.session.info.description, self.session.source)
        )

    def action_freeze_all(self) -> None:
        self.change_plan(FreezePlan(boundary=None, bn_policy=self.plan.bn_policy))

    def action_unfreeze_all(self) -> None:
        self.change_plan(
            FreezePlan(boundary=self.session.view.first_path(), bn_policy=self.plan.bn_policy)
        )

    def action_exception(self) -> None:
        node = self.table.current_node
        if node is None or node.layer is None or node.layer.is_container:
            self.notify(
                "Space toggles one layer: move the cursor to a layer row.", severity="warning"
            )
            return
        self.change_plan(self.plan.toggled_exception(node.layer.path))

    def action_bn_policy(self) -> None:
        self.change_plan(self.plan.with_bn_policy(self.plan.bn_policy.toggled()))
        self.notify(
            "BatchNormalization after the boundary: "
            + (
                "kept frozen (inference mode)"
                if self.plan.bn_policy.value == "frozen"
                else "trained"
            )
        )

    def action_copy(self) -> None:
        snippet = freeze_snippet(self.session.view, self.plan)
        self.app.copy_to_clipboard(snippet)
        # OSC 52 goes to the terminal, which may drop it (tmux by default, some terminals):
        # nothing comes back to say whether it arrived, so the message says where else the
        # same lines are.
        key = self._key("export")
        self.notify(
            f"Sent a {snippet.count(chr(10))}-line freeze snippet to the terminal's clipboard "
            f"(OSC 52). If it did not arrive (tmux: set -g set-clipboard on), the script that "
            f"{key} exports has the same lines.",
            markup=False,
        )

    def action_collapse_all(self) -> None:
        self.table.collapse_all()

    def action_expand_all(self) -> None:
        self.table.expand_all()

    # -- filter ----------------------------------------------------------------------------

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        field = event.input
        text = event.value
        if not text:
            field.remove_class("-bad-regex")
            self.table.set_filter(None)
            return
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            field.add_class("-bad-regex")
            field.tooltip = Text(f"not a regular expression: {exc}")
            return
        field.remove_class("-bad-regex")
        row, note = find_layer(self.session.info, text.strip())
        if row is not None and note:  # a Keras 2 name: show the layer it stands for
            pattern = re.compile(re.escape(row.name))
        count = self.table.set_filter(pattern)
        title = Text(f"{count} match{'es' if count != 1 else ''}")
        if note:
            title.append(f" · {note}")
        field.border_title = title

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        if field.display or field.value:
            field.value = ""
            field.display = False
            field.remove_class("-bad-regex")
            self.table.set_filter(None)
            self.table.focus()

    def action_leave_pane(self) -> None:
        """Back from the side pane's fields to the tree."""
        self.table.focus()

    # -- head and export -------------------------------------------------------------------

    @on(HeadPane.Changed)
    def _head_changed(self, event: HeadPane.Changed) -> None:
        changed = event.training != self.session.training
        self.session.set_head(event.head, event.compile_spec, event.training)
        self.query_one(HeadPane).show_preview(self.session.view, self.plan)
        self._show_status(self.plan)
        if changed and self.session.phases:
            self._show_phases()

    def action_feature_layer(self) -> None:
        layer = self.table.current_layer
        if layer is None:
            return
        if layer.depth:
            outer = self.session.info.layer(layer.path[:1]).name
            self.notify(
                f"{layer.name} is inside the nested model {outer}: the head attaches to a "
                "layer of the outer model.",
                severity="warning",
                markup=False,
            )
            return
        self.query_one(HeadPane).set_feature_layer(layer.name)
        self.notify(f"The head attaches to {layer.name} {layer.output_shape_text}.", markup=False)

    def action_toggle_pane(self) -> None:
        self.toggle_class("-show-pane")
        if self.has_class("-show-pane") and self.narrow:
            self.query_one("#head-pooling").focus()
        else:
            self.table.focus()

    def action_export(self) -> None:
        from pathlib import Path

        from kfreeze_tui.screens.export import ExportScreen

        pane = self.query_one(HeadPane)
        problems = pane.input_problems + validate(self.session.info, self.head)
        if problems:
            self.notify(problems[0], title="Fix the head first", severity="error", markup=False)
            return
        default = Path(f"{self.session.info.name}_finetune.keras")  # in the current folder
        phases = self.session.phases
        note = ""
        if phases:
            first = phases[0]
            note = (
                f"The model is built for phase 1 of {len(phases)} "
                f"({phase_place(self.session.view, first)}, {first.epochs} epochs"
                + (f" at {first.lr_text()}" if first.lr_text() else "")
                + "); the plan and the script carry every phase."
            )
        lora = self.session.plan.lora is not None
        refusal = self.session.cache_refusal(self.plan, self.head)
        self.app.push_screen(
            ExportScreen(default, note, lora, cache_refusal=refusal), self._export_requested
        )

    def _export_requested(self, request: ExportRequest | None) -> None:
        if request is None:
            return
        from kfreeze_tui.screens.export import ExportRunScreen

        run = ExportRunScreen()
        self.app.push_screen(run)
        self._export_run = run
        self._run_export(run, request, self.plan, self.session.head, self.session.compile_spec)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="export",
        description="exporting the model",
    )
    def _run_export(
        self,
        run: ExportRunScreen,
        request: ExportRequest,
        plan: FreezePlan,
        head: HeadSpec,
        compile_spec: CompileSpec,
    ) -> None:
        from kfreeze_tui.core.errors import ExportError, PlanError

        def progress(text: str) -> None:
            self.app.call_from_thread(run.step, text)

        try:
            result = self.session.export(
                self.session.load_options, plan, head, compile_spec, request, progress
            )
        except (PlanError, ExportError, OSError) as exc:  # the user's to fix: in the dialog
            self.app.call_from_thread(run.failed, sentence(str(exc)))
            return
        self.app.call_from_thread(self._exported, run, result, plan)

    def worker_failed(self, worker: Worker[object], sentence: str) -> None:
        if worker.group == "export" and self._export_run is not None:
            self._export_run.failed(sentence)

    def _exported(self, run: ExportRunScreen, result: ExportResult, plan: FreezePlan) -> None:
        self.session.mark_exported(plan)  # quitting no longer asks
        self.exported = True
        run.finished(result)

    @property
    def dirty(self) -> bool:
        """The plan differs from the one the model was opened or last exported with."""
        return self.session.dirty
