"""What was changed to open a model file from an older Keras, in full."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from kfreeze_tui.core.model.legacy.repairs import Repair

#: Layer names listed per repair before "and N more".
SHOWN_LAYERS = 8


def repairs_table(repairs: list[Repair]) -> Table:
    """One row per repair: what was changed, and on which layers."""
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("what was changed", ratio=3)
    table.add_column("layers", ratio=2)
    for repair in repairs:
        names = list(repair.layers[:SHOWN_LAYERS])
        if len(repair.layers) > SHOWN_LAYERS:
            names.append(f"and {len(repair.layers) - SHOWN_LAYERS} more")
        table.add_row(Text(repair.message), Text(", ".join(names) or "(the file's layout)"))
    return table


class RepairsScreen(ModalScreen[None]):
    """Every repair made to open a legacy file; none changes what the model computes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,R", "dismiss", "Close")]

    def __init__(self, repairs: list[Repair], description: str, source: str) -> None:
        super().__init__()
        self.repairs = repairs
        self.description = description
        self.source = Path(source).name

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="repairs-body") as body:
            body.border_title = Text(f"Repaired to open in Keras 3: {self.description}")
            body.border_subtitle = "Esc to close"
            yield Static(repairs_table(self.repairs), id="repairs-table")
            yield Static(
                Text(
                    "None of these changes what the model computes (kfreeze refuses a file "
                    f"where one would). `kfreeze convert {self.source} -o "
                    f"{Path(self.source).stem}_keras3.keras` writes the repaired model as a "
                    "Keras 3 file, so that the repairs are made once."
                ),
                id="repairs-note",
            )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
