"""The picker: `kfreeze` alone. The catalog and the model files under the current folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from kfreeze_tui.core.model import catalog
from kfreeze_tui.core.model.loading import MODEL_SUFFIXES
from kfreeze_tui.core.train.cost import human_bytes
from kfreeze_tui.workers import ReportsWorkerFailures

SKIP_DIRS = {"node_modules", "site-packages", "__pycache__", "venv", ".venv", "env"}
MAX_FILES = 500
MAX_DEPTH = 4


@dataclass(frozen=True)
class Choice:
    """One row of the picker."""

    source: str
    kind: str  # "architecture" or "file"
    input_text: str
    layers: str
    params: str


def catalog_choices() -> list[Choice]:
    """Every architecture, with layer and parameter counts where they are known."""
    counts = catalog.known_counts()
    choices = []
    for arch in catalog.architectures():
        known = counts.get(arch.name, {})
        choices.append(
            Choice(
                source=arch.name,
                kind="architecture",
                input_text="x".join(map(str, arch.default_input_shape)),
                layers=f"{known['layers']:,}" if "layers" in known else "",
                params=f"{known['params']:,}" if "params" in known else "",
            )
        )
    return choices


def find_model_files(root: Path) -> list[Path]:
    """``.keras`` / ``.h5`` model files under ``root`` (not weights-only files).

    Hidden folders, virtual environments and ``node_modules`` are skipped; the search stops
    at a depth of 4 and after 500 files, so a huge home folder cannot stall the picker.
    """
    found: list[Path] = []
    root_depth = len(root.parts)
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).parts) - root_depth
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS and depth < MAX_DEPTH
        )
        for name in sorted(files):
            lowered = name.lower()
            if lowered.endswith(MODEL_SUFFIXES) and not lowered.endswith(".weights.h5"):
                found.append(Path(folder) / name)
                if len(found) >= MAX_FILES:
                    return found
    return found


class PickerScreen(ReportsWorkerFailures, Screen[None]):
    """Choose a model: type to filter, Enter to open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down", "move(1)", "Down", show=False),
        Binding("up", "move(-1)", "Up", show=False),
        Binding("pagedown", "move(10)", "Page down", show=False),
        Binding("pageup", "move(-10)", "Page up", show=False),
        Binding("enter", "open", "Open"),
        Binding("escape", "clear", "Clear filter"),
        Binding("ctrl+c,ctrl+q", "app.quit", "Quit"),
    ]

    def __init__(self, root: Path, weights_note: str = "") -> None:
        super().__init__()
        self.root = root
        self.weights_note = weights_note
        self.choices: list[Choice] = catalog_choices()
        self.shown: list[Choice] = []

    def compose(self) -> ComposeResult:
        title = Text.assemble(
            ("kfreeze", "bold"), ": choose a model to open. Type to filter, Enter to open."
        )
        if self.weights_note:
            title.append("  ")
            title.append(self.weights_note, style="dim")
        yield Static(title, id="picker-title")
        yield Input(placeholder="filter (e.g. resnet, efficientnet, .keras)", id="picker-filter")
        table: DataTable[str] = DataTable(id="picker-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("model", "kind", "input", "layers", "params")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#picker-filter", Input).focus()
        self._scan_files()

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="scan",
        description="looking for model files",
    )
    def _scan_files(self) -> None:
        files = find_model_files(self.root)
        self.app.call_from_thread(self._add_files, files)

    def _add_files(self, files: list[Path]) -> None:
        file_choices = []
        for path in files:
            try:
                size = path.stat().st_size
            except OSError:
                continue
            shown = os.path.relpath(path, self.root)
            file_choices.append(Choice(shown, "file", "", "", human_bytes(size)))
        self.choices = file_choices + catalog_choices()
        self._fill(self.query_one("#picker-filter", Input).value)

    def _fill(self, text: str) -> None:
        table = self.query_one("#picker-table", DataTable)
        needle = text.strip().lower().replace("_", "").replace("-", "")
        self.shown = [
            choice
            for choice in self.choices
            if needle in choice.source.lower().replace("_", "").replace("-", "")
        ]
        table.clear()
        for choice in self.shown:
            table.add_row(  # Text, not str: DataTable reads a str cell as markup
                Text(choice.source, no_wrap=True, end=""),
                choice.kind,
                choice.input_text,
                choice.layers,
                choice.params,
            )

    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#picker-filter")
    def _submitted(self) -> None:
        self.action_open()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def action_move(self, delta: int) -> None:
        table = self.query_one("#picker-table", DataTable)
        if self.shown:
            table.move_cursor(row=max(0, min(len(self.shown) - 1, table.cursor_row + delta)))

    def action_clear(self) -> None:
        self.query_one("#picker-filter", Input).value = ""

    def action_open(self) -> None:
        table = self.query_one("#picker-table", DataTable)
        if not self.shown:
            self.notify("Nothing matches the filter.", severity="warning")
            return
        choice = self.shown[max(0, min(table.cursor_row, len(self.shown) - 1))]
        source = str(self.root / choice.source) if choice.kind == "file" else choice.source
        self.app.open_model(source)  # type: ignore[attr-defined]
