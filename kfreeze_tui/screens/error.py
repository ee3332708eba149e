"""The error screen: the core's one-sentence message and hint, and the ways out."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from kfreeze_tui.core.errors import KfreezeError
from kfreeze_tui.core.wording import sentence


class ErrorScreen(Screen[None]):
    """A model could not be opened."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,p", "app.open_picker", "Back to the picker"),
        Binding("r", "random_weights", "Open with random weights", show=False),
        Binding("l", "toggle_log", "TensorFlow log"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, source: str, error: KfreezeError, log: str) -> None:
        super().__init__()
        self.source = source
        self.error = error
        self.tf_log = log.strip()

    def compose(self) -> ComposeResult:
        with Middle(), Center(), Vertical(id="error-box") as box:
            box.border_title = Text(f"Cannot open {self.source}")
            yield Static(sentence(self.error.message), id="error-message", markup=False)
            if self.error.hint:
                yield Static(
                    sentence(self.error.hint[:1].upper() + self.error.hint[1:]),
                    id="error-hint",
                    markup=False,
                )
            if self.offers_random_weights:
                yield Static(
                    "Press [b]r[/b] to open the architecture with [b]random weights[/b] "
                    "instead (its layers and shapes are the same; its weights are not trained).",
                    id="error-offer",
                    markup=True,
                )
            yield Static(
                "[b]Esc[/b] back to the picker  ·  [b]l[/b] TensorFlow log  ·  [b]q[/b] quit",
                id="error-keys",
                markup=True,
            )
        with VerticalScroll(id="error-log"):
            yield Static(self.tf_log or "(TensorFlow printed nothing)", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#error-log").display = False

    @property
    def offers_random_weights(self) -> bool:
        """The imagenet download failed: random weights are a way forward."""
        return self.error.kind == "download"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "random_weights":
            return self.offers_random_weights
        return True

    def action_random_weights(self) -> None:
        self.app.open_with_random_weights(self.source)  # type: ignore[attr-defined]

    def action_toggle_log(self) -> None:
        log = self.query_one("#error-log")
        log.display = not log.display
