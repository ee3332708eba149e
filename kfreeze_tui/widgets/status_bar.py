"""The status bar: live parameter counts, the boundary and the BatchNormalization policy."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from kfreeze_tui.core.plan import BNPolicy, FreezePlan, PlanView


def status_text(view: PlanView, plan: FreezePlan) -> Text:
    """The status bar's text for a plan (pure, so the tests and the app share it).

    Args:
        view: the walked model's plan view.
        plan: the current plan.

    Returns:
        Three lines: the counts; the boundary and the cut it makes; the BatchNormalization
        policy and the exceptions.
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
    return text


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

    def show(self, view: PlanView, plan: FreezePlan) -> None:
        """Render the counts of ``plan``."""
        self.set_text(status_text(view, plan))
