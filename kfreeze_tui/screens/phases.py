"""The phases dialog: every phase's epochs and learning rate, edited in one form.

The dialog returns what was typed as typed values (:class:`PhaseSettings`); the explorer
hands them to the session, which owns the phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.plan.phases import Phase, parse_rate

Rate = float | tuple[float, float] | None


@dataclass(frozen=True)
class PhaseSettings:
    """A phase's epochs and learning rate as the dialog read them.

    Attributes:
        epochs: how many epochs the phase trains.
        rate: one rate, a ``(lo, hi)`` range, or None (the compile settings' rate).
    """

    epochs: int
    rate: Rate


def read_settings(number: int, epochs_text: str, rate_text: str) -> PhaseSettings:
    """A phase's fields as typed values.

    Raises:
        PlanError: one sentence naming the phase and the field.
    """
    try:
        epochs = int(epochs_text.strip())
    except ValueError:
        raise PlanError(
            f"phase {number}: epochs must be a whole number, not {epochs_text.strip()!r}"
        ) from None
    if epochs < 1:
        raise PlanError(f"phase {number}: a phase trains at least one epoch")
    text = rate_text.strip()
    rate = parse_rate(text, f"phase {number}") if text else None
    return PhaseSettings(epochs, rate)


class PhasesScreen(ModalScreen[list[PhaseSettings] | None]):
    """Edit the epochs and learning rate of every phase; Enter applies, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "apply", "Apply"),
    ]

    def __init__(self, phases: Sequence[Phase], places: Sequence[str], start: int = 0) -> None:
        """
        Args:
            phases: the phases, in order.
            places: where each phase's training starts (``head only``, ``from 143 ...``).
            start: the phase whose epochs field has the focus first.
        """
        super().__init__()
        self.phases = tuple(phases)
        self.places = tuple(places)
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical(id="phases-box") as box:
            box.border_title = "Phases: epochs and learning rates"
            box.border_subtitle = "Tab: next field · Enter: apply · Esc: cancel"
            with Horizontal(classes="phase-row", id="phases-heading"):
                yield Label("# trains", classes="phase-place")
                yield Label("epochs", classes="phase-epochs")
                yield Label("learning rate", classes="phase-rate")
            for number, (phase, place) in enumerate(zip(self.phases, self.places, strict=True), 1):
                with Horizontal(classes="phase-row"):
                    yield Label(Text(f"{number} {place}"), classes="phase-place")
                    yield Input(
                        str(phase.epochs),
                        id=f"phase-epochs-{number}",
                        classes="phase-epochs",
                        compact=True,
                    )
                    yield Input(
                        phase.lr_text(),
                        id=f"phase-rate-{number}",
                        classes="phase-rate",
                        compact=True,
                    )
            yield Static(
                "A learning rate (1e-5), or a range over the stages after the boundary "
                "(1e-6..1e-5: the first stage gets the low rate, the head the high one). "
                "Empty: the compile settings' rate.",
                id="phases-note",
            )
            yield Static("", id="phases-problem")

    def on_mount(self) -> None:
        number = min(max(self.start, 0), len(self.phases) - 1) + 1
        self.query_one(f"#phase-epochs-{number}", Input).focus()

    def settings(self) -> list[PhaseSettings]:
        """Every phase's fields as typed values.

        Raises:
            PlanError: the first field that does not read.
        """
        return [
            read_settings(
                number,
                self.query_one(f"#phase-epochs-{number}", Input).value,
                self.query_one(f"#phase-rate-{number}", Input).value,
            )
            for number in range(1, len(self.phases) + 1)
        ]

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_apply()

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#phases-problem", Static).update("")

    def action_apply(self) -> None:
        try:
            settings = self.settings()
        except PlanError as exc:
            self.query_one("#phases-problem", Static).update(
                Text(f"{str(exc).rstrip('.')}.", style="bold red")
            )
            return
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)
