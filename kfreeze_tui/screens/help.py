"""The help screen: every key of the explorer, from the bindings themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def bindings_table(
    groups: list[tuple[str, list[Binding]]], label: Callable[[Binding], str]
) -> Table:
    """A two-column table of keys and what they do, by group.

    Args:
        groups: titled lists of bindings.
        label: the keys of a binding as the user has them (their keymap applied).
    """
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for title, bindings in groups:
        table.add_row(Text(title, style="underline"), "")
        for binding in bindings:  # a user's key may be "[": Text, never markup
            table.add_row(Text(label(binding)), Text(binding.description))
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    """Lists every key binding of the explorer and the tree."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(
        self, groups: list[tuple[str, list[Binding]]], label: Callable[[Binding], str]
    ) -> None:
        super().__init__()
        self.groups = groups
        self.label = label

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "kfreeze keys"
            body.border_subtitle = "Esc to close · Ctrl+P: every action by name"
            yield Static(bindings_table(self.groups, self.label))
            yield Static(
                "On a narrow terminal the tree drops its type column first (then the output "
                "shape): the side pane (p) and the detail (Enter) show every layer's type. "
                "Types are shortened in the tree: BatchNorm is BatchNormalization.",
                id="help-columns",
            )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
