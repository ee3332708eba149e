"""The loading view: shown from the first frame while TensorFlow imports and the model builds."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle, Vertical
from textual.screen import Screen
from textual.widgets import Footer, LoadingIndicator, Static


class LoadingScreen(Screen[None]):
    """Says what is happening while a worker opens the model."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,ctrl+c", "app.quit", "Quit"),
    ]

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self._steps: list[str] = []

    def compose(self) -> ComposeResult:
        with Middle(), Center(), Vertical(id="loading-box"):
            yield Static(f"Opening [b]{escape(self.source)}[/b]", id="loading-title", markup=True)
            yield LoadingIndicator(id="loading-indicator")
            yield Static("", id="loading-steps")
        yield Footer()

    def step(self, text: str) -> None:
        """Show a new step; earlier steps are shown done."""
        self._steps.append(text)
        lines = [f"[green]✓[/green] {escape(done)}" for done in self._steps[:-1]]
        lines.append(f"[b]…[/b] {escape(self._steps[-1])}")
        self.query_one("#loading-steps", Static).update("\n".join(lines))
