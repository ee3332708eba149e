"""The status bar: live parameter counts, the boundary and the BatchNormalization policy."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from kfreeze_tui.core.cost import TrainingSetup, brief, cost_model, human_bytes
from kfreeze_tui.core.gpus import Gpu
from kfreeze_tui.core.plan import BNPolicy, FreezePlan, PlanView


def status_text(
    view: PlanView,
    plan: FreezePlan,
    training: TrainingSetup | None = None,
    gpus: Sequence[Gpu] = (),
) -> Text:
    """The status bar's text for a plan (pure, so the tests and the app share it).

    Args:
        view: the walked model's plan view.
        plan: the current plan.
        training: the batch size, optimizer and dtype the cost is for (None: no cost).
        gpus: the machine's GPUs, to say whether the plan fits.

    Returns:
        Three lines: the counts; the boundary and the cut it makes; the BatchNormalization
        policy and the exceptions; with ``training``, a fourth: what a step costs (and
        whether it fits the GPU).
    """
    totals = view.totals(plan)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("Trainable ", style="bold")
    text.append(f"{totals.trainable:,}", style="bold green")
    text.append(f" ({totals.trainable_fraction:.1%})  ")
    text.append("Frozen ", style="bold")
    text.append(f"{totals.non_trainable:,}", style="bold cyan")
    text.append(f"  Total {totals.total:,}\n")
    layer = view.boundary_layer(plan)
    if layer is None:
        text.append("Boundary: none, every layer frozen")
    elif view.boundary_position(plan) == 0:
        frozen_bns = plan.bn_policy is BNPolicy.FROZEN and view.batch_norms_after_boundary(plan)
        text.append(
            "Boundary: none, every layer trains"
            + (" but BatchNormalization (kept frozen)" if frozen_bns else "")
        )
    else:
        text.append("Boundary ", style="bold")
        text.append(f"{layer.path_text} {layer.name}")
        cut = view.cut(plan)
        text.append("  ·  ")
        text.append(cut.brief(), style="green" if cut.clean else "yellow")
    text.append("\n")
    bns = view.batch_norms_after_boundary(plan)
    notes = []
    if bns:
        verb = "kept frozen" if plan.bn_policy is BNPolicy.FROZEN else "trained"
        notes.append(f"{bns} BatchNorm after it: {verb} (b)")
    if plan.exceptions:
        notes.append(f"{len(plan.exceptions)} exception(s)")
    text.append("  ·  ".join(notes))
    if training is not None:
        text.append("\n")
        _cost_line(text, view, plan, training, gpus)
    return text


def _cost_line(
    text: Text, view: PlanView, plan: FreezePlan, training: TrainingSetup, gpus: Sequence[Gpu]
) -> None:
    """What a training step of the plan costs, and whether it fits the first GPU."""
    estimate = cost_model(view).estimate(plan, training)
    text.append(brief(estimate, training), style="bold")
    text.append(f" ({training.optimizer.label})")
    for gpu in gpus[:1]:
        largest = estimate.largest_batch(gpu.free_bytes)
        fits = largest >= training.batch
        text.append(
            f" · {'fits' if fits else 'does NOT fit'} GPU {gpu.index} "
            f"({human_bytes(gpu.free_bytes)} free; batch up to {largest:,})",
            style="green" if fits else "bold red",
        )
    text.append("  ·  batch, optimizer: side pane", style="dim")


class TextPane(Widget):
    """A fixed-size pane showing a Text; changing it repaints without a layout pass.

    ``Static.update`` asks for a new layout of the whole screen, which on every keypress
    costs more than everything else a keypress does; the panes here have a size set in the
    stylesheet, so a repaint is enough.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()

    def set_text(self, text: Text) -> None:
        """Show ``text`` (one repaint, no layout)."""
        self._text = text
        self.refresh()

    @property
    def text(self) -> Text:
        """What the pane shows."""
        return self._text

    def render(self) -> Text:
        return self._text


class StatusBar(TextPane):
    """Counts for the current plan, updated on every change."""

    def show(
        self,
        view: PlanView,
        plan: FreezePlan,
        training: TrainingSetup | None = None,
        gpus: Sequence[Gpu] = (),
    ) -> None:
        """Render the counts and the cost of ``plan``."""
        self.set_text(status_text(view, plan, training, gpus))
