"""The loading view: shown from the first frame while TensorFlow imports and the model builds."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle, Vertical
from textual.screen import Screen
from textual.widgets import Footer, LoadingIndicator, Static

from kfreeze_tui.core.model import load_progress


class LoadingScreen(Screen[None]):
    """Says what is happening while a worker opens the model, and, for a long load, how far
    Keras has got (as the command line's progress line does)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,ctrl+c", "app.quit", "Quit"),
    ]

    #: Seconds between looks at the load in progress.
    PROGRESS_INTERVAL = 0.25

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self._steps: list[str] = []
        self.delay = load_progress.progress_delay()
        """Seconds a load runs before its progress is shown."""

    def compose(self) -> ComposeResult:
        with Middle(), Center(), Vertical(id="loading-box"):
            yield Static(Text.assemble("Opening ", (self.source, "bold")), id="loading-title")
            yield LoadingIndicator(id="loading-indicator")
            yield Static("", id="loading-steps")
            yield Static("", id="loading-progress", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.PROGRESS_INTERVAL, self.show_progress)

    def step(self, text: str) -> None:
        """Show a new step; earlier steps are shown done."""
        self._steps.append(text)
        lines = [Text.assemble(("✓", "green"), f" {done}") for done in self._steps[:-1]]
        lines.append(Text.assemble(("…", "bold"), f" {self._steps[-1]}"))
        self.query_one("#loading-steps", Static).update(Text("\n").join(lines))

    def show_progress(self) -> None:
        """Under the steps: how far a load that has run a while has got (``1,234 of 3,000
        layers, 12 s``); nothing for a quick one."""
        status = load_progress.current()
        text = status.detail() if status is not None and status.elapsed >= self.delay else ""
        progress = self.query_one("#loading-progress", Static)
        progress.update(text)
        progress.set_class(bool(text), "-shown")
