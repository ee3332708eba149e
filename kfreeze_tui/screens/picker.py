"""The picker: `kfreeze` alone. The catalog, the model files and keras-hub preset folders under
the current folder, and the keras-hub presets in the local caches."""

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

from kfreeze_tui.core.model import catalog, hub
from kfreeze_tui.core.model.loading import MODEL_SUFFIXES
from kfreeze_tui.core.train.cost import human_bytes
from kfreeze_tui.workers import ReportsWorkerFailures

SKIP_DIRS = {"node_modules", "site-packages", "__pycache__", "venv", ".venv", "env"}
MAX_FILES = 500
MAX_DEPTH = 4


#: The kinds of row besides "architecture" and "file".
PRESET_FOLDER = "keras-hub preset folder"
CACHED_PRESET = "keras-hub preset (cached)"


@dataclass(frozen=True)
class Choice:
    """One row of the picker.

    Attributes:
        source: what the row shows (and the filter matches).
        kind: "architecture", "file", :data:`PRESET_FOLDER` or :data:`CACHED_PRESET`.
        target: what opens, as typed on the command line ("": ``source`` itself).
    """

    source: str
    kind: str
    input_text: str
    layers: str
    params: str
    target: str = ""


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


def find_preset_folders(root: Path) -> list[Path]:
    """keras-hub preset folders at most one level under ``root`` (``root`` itself included):
    where ``save_to_preset(dir)`` or a download left one. Hidden folders are skipped."""
    candidates = [root]
    try:
        candidates += sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        pass
    return [folder for folder in candidates if hub.is_preset_dir(folder)]


def _folder_size(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class Found:
    """What the picker's scan found on disk."""

    files: list[Path]
    presets: list[Path]
    cached: list[hub.Cached]


def scan(root: Path) -> Found:
    """Model files and preset folders under ``root``, and the cached keras-hub presets: files
    and small JSON files only (nothing imported), run in a worker all the same."""
    return Found(find_model_files(root), find_preset_folders(root), hub.cached_presets())


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
        description="looking for model files and keras-hub presets",
    )
    def _scan_files(self) -> None:
        found = scan(self.root)
        self.app.call_from_thread(self._add_found, found)

    def _add_found(self, found: Found) -> None:
        local = []
        for path in found.presets:
            try:
                size = _folder_size(path)
            except OSError:
                continue
            shown = os.path.relpath(path, self.root)
            local.append(Choice(shown, PRESET_FOLDER, "", "", human_bytes(size), str(path)))
        for path in found.files:
            try:
                size = path.stat().st_size
            except OSError:
                continue
            shown = os.path.relpath(path, self.root)
            local.append(Choice(shown, "file", "", "", human_bytes(size), str(path)))
        cached = []
        for preset in found.cached:
            try:
                size = _folder_size(preset.folder)
            except OSError:
                continue
            cached.append(
                Choice(preset.name, CACHED_PRESET, "", "", human_bytes(size), preset.handle)
            )
        self.choices = local + cached + catalog_choices()
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
        self.app.open_model(choice.target or choice.source)  # type: ignore[attr-defined]
