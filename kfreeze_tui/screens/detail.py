"""The layer detail: config, inbound layers, weights, and why it is (not) trainable."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import Worker

from kfreeze_tui.core.model.layers import LayerInfo, call_inputs, format_shape
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.session import LayerDetail, ModelSession
from kfreeze_tui.widgets.lora_pane import lora_shapes
from kfreeze_tui.workers import ReportsWorkerFailures


def inbound_text(layer: LayerInfo) -> str:
    """What the layer reads, call by call: ``called 2 times: pa; pb`` for a shared layer,
    ``encoder, encoder (call 2)`` for a layer reading both calls of one."""
    calls = call_inputs(layer)
    each = [", ".join(inputs) or "(model input)" for inputs in calls]
    if len(each) > 1:
        return f"called {len(each)} times: " + "; ".join(each)
    return each[0]


def detail_text(session: ModelSession, plan: FreezePlan, layer: LayerInfo) -> Table:
    """The top of the detail view: identity, state and reason, inbound, weights."""
    view = session.view
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("name", Text(layer.name))
    grid.add_row("type", Text(layer.class_name))
    grid.add_row("index", Text(f"{layer.path_text} (stage {layer.stage}, block {layer.block})"))
    grid.add_row("output", Text(layer.output_shape_text))
    grid.add_row(
        "params",
        Text(f"{layer.params:,} ({layer.trainable_size:,} trainable when the layer trains)"),
    )
    if layer.is_container:
        trains = view.trainable_in(plan, layer.path)
        state = Text(f"{trains:,} of its params train: ")
        state.append(view.reason(plan, layer.path).value)
    else:
        trains_bool = view.leaf_trainable(plan, layer.path)
        state = Text("trains" if trains_bool else "frozen", style="bold")
        state.append(f": {view.reason(plan, layer.path).value}")
        if layer.is_batch_norm and not trains_bool:
            state.append(" (runs in inference mode: moving statistics are not updated)")
    grid.add_row("state", state)
    if layer.lora_supported or plan.lora is not None:
        grid.add_row("LoRA", lora_text(session, plan, layer))
    grid.add_row("inbound", Text(inbound_text(layer)))
    repaired = [repair.message for repair in session.repairs if layer.name in repair.layers]
    if repaired:
        grid.add_row("repaired", Text("\n".join(repaired), style="yellow"))
    if layer.weights:
        weights = Table(box=None, header_style="bold", pad_edge=False)
        weights.add_column("weight")
        weights.add_column("shape")
        weights.add_column("dtype")
        weights.add_column("kind")
        for weight in layer.weights:
            weights.add_row(
                Text(weight.name),
                format_shape(weight.shape),
                Text(weight.dtype),
                "trainable" if weight.can_train else "non-trainable (statistics)",
            )
        grid.add_row("weights", weights)
    else:
        grid.add_row("weights", "none")
    return grid


def lora_text(session: ModelSession, plan: FreezePlan, layer: LayerInfo) -> Text:
    """LoRA on this layer: on, off or cannot; with the rank, the adapted kernel, the shapes
    of A and B and the adapter parameters (Keras's ``enable_lora`` shapes)."""
    from kfreeze_tui.core.plan.lora import LoraSpec, adapter_size

    view = session.view
    if layer.is_container:
        start, end = view.span(layer.path)
        on = (
            0
            if plan.lora is None
            else sum(1 for pos in view.lora_positions(plan.lora) if start <= pos < end)
        )
        return Text(f"on in {on} of its layers (L toggles them all)")
    kernel = layer.lora_kernel
    if kernel is None:
        return Text(f"cannot take LoRA ({layer.class_name} has no enable_lora)")
    state = view.lora_state(plan, layer.path)
    rank = plan.lora.rank if plan.lora is not None else LoraSpec().rank
    a, b = lora_shapes(kernel, rank)
    text = Text(state, style="bold")
    if layer.lora_enabled:
        text.append(" (LoRA was already on in the model as loaded)")
    text.append(
        f"\nrank {rank} · kernel {format_shape(kernel)} · A {a} · B {b}"
        f"\nadapters {adapter_size(layer, rank):,} params"
        + ("" if state == "on" else " if on")
        + "; the kernel freezes, the bias trains"
    )
    return text


class LayerDetailScreen(ReportsWorkerFailures, ModalScreen[None]):
    """Everything about one layer; the config is read from Keras in a worker."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "dismiss", "Close"),
    ]

    def __init__(self, session: ModelSession, plan: FreezePlan, layer: LayerInfo) -> None:
        super().__init__()
        self.session = session
        self.plan = plan
        self.shown_layer = layer
        self.config_shown = False
        """The layer's config has been read from Keras and is on screen."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-body") as body:
            body.border_title = Text(f"layer {self.shown_layer.path_text}: {self.shown_layer.name}")
            body.border_subtitle = "Esc to close"
            yield Static(detail_text(self.session, self.plan, self.shown_layer), id="detail-top")
            yield Static("config: reading…", id="detail-config")

    def on_mount(self) -> None:
        self.query_one("#detail-body").focus()
        self._read_config()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="detail",
        description="reading the layer config",
    )
    def _read_config(self) -> None:
        detail = self.session.detail(self.shown_layer.path)
        self.app.call_from_thread(self._show_config, detail)

    def worker_failed(self, worker: Worker[object], sentence: str) -> None:
        self.query_one("#detail-config", Static).update(Text(f"config: {sentence}"))

    def _show_config(self, detail: LayerDetail) -> None:
        from rich.syntax import Syntax

        self.query_one("#detail-config", Static).update(
            Syntax(detail.config, "json", theme="ansi_dark", word_wrap=True)
        )
        self.config_shown = True

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
