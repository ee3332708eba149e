"""User text is never markup: a file named ``m[b]x[i].keras`` whose model and layers carry
brackets is shown as it is on every screen (Keras refuses ``/`` in a name, so no ``[/]``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer
from legacy.oracle import LegacyFiles

from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.screens.confirm import ConfirmScreen
from kfreeze_tui.screens.detail import LayerDetailScreen
from kfreeze_tui.screens.error import ErrorScreen
from kfreeze_tui.screens.explorer import ExplorerScreen
from kfreeze_tui.screens.export import ExportRunScreen, ExportScreen
from kfreeze_tui.screens.help import HelpScreen
from kfreeze_tui.screens.loading import LoadingScreen
from kfreeze_tui.screens.phases import PhasesScreen
from kfreeze_tui.screens.picker import PickerScreen
from kfreeze_tui.screens.repairs import RepairsScreen
from kfreeze_tui.widgets.status_bar import TextPane

FILE = "m[b]x[i].keras"


@pytest.fixture(scope="module")
def bracketed_folder(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``m[b]x[i].keras``: model ``m[b]x[i]``, layers ``d[red]x`` and
    ``[b]``, and a second output ``aux[i]`` (so the head pane names outputs)."""
    inputs = keras.Input((8,), name="in[b]put")
    hidden = keras.layers.Dense(4, "relu", name="d[red]x")(inputs)
    main = keras.layers.Dense(3, "softmax", name="[b]")(hidden)
    aux = keras.layers.Dense(1, name="aux[i]")(hidden)
    model = keras.Model(inputs, [main, aux], name="m[b]x[i]")
    folder = tmp_path_factory.mktemp("brackets")
    model.save(folder / FILE)
    return folder


async def test_bracketed_names_show_as_they_are_on_every_screen(
    bracketed_folder: Path,
    legacy_files: LegacyFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the export's default path is NAME_finetune.keras in here
    legacy = tmp_path / "l[b]x[i].h5"
    shutil.copy(legacy_files.path("mobile_h5"), legacy)
    app = make_app(
        str(bracketed_folder / "gone[b]x[i].keras"),
        LoadOptions(weights="none"),
        root=bracketed_folder,
        use_cache=False,
    )
    async with app.run_test(size=(160, 50)) as pilot:
        # The error screen, about a missing file whose name has brackets.
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "Cannot open" in screen_text(pilot)
        assert "gone[b]x[i].keras" in screen_text(pilot)

        # The picker lists the file under its own name; typing "keras" leaves only files.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        picker = app.screen
        await wait_for(pilot, lambda: any(c.kind == "file" for c in picker.choices))
        assert FILE in screen_text(pilot)
        await pilot.press(*"keras", "enter")

        # The explorer: header, layer table, side pane, head pane's outputs.
        explorer = await wait_for_explorer(pilot)
        text = screen_text(pilot)
        assert "m[b]x[i]" in text and "d[red]x" in text and "aux[i]" in text
        await pilot.press("j")
        assert explorer.table.current_layer.name == "d[red]x"
        summary = explorer.query_one("#layer-summary", TextPane).text.plain
        assert summary.startswith("d[red]x\n")
        assert "New head on d[red]x" in screen_text(pilot)

        # The layer detail: border title, name row, weights grid.
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LayerDetailScreen))
        detail = app.screen
        await wait_for(pilot, lambda: detail.config_shown)
        text = screen_text(pilot)
        assert "layer 1: d[red]x" in text
        assert re.search(r"name +d\[red\]x", text) and re.search(r"inbound +in\[b\]put", text)
        await pilot.press("escape")

        # A phase at the layer, and the phases dialog.
        await pilot.press("a", "E")
        await wait_for(pilot, lambda: isinstance(app.screen, PhasesScreen))
        await pilot.press("escape")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "[" in screen_text(pilot)  # the previous-stage key, shown as it is
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is explorer)

        # The export dialog, its run log and results, then the confirm dialog.
        for attempt in range(2):
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
            assert "m[b]x[i]_finetune.keras" in screen_text(pilot)
            await pilot.press("enter")
            if attempt == 1:
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                assert "Replace m[b]x[i]_finetune.keras" in screen_text(pilot)
                await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
            run = app.screen
            await wait_for(pilot, lambda run=run: run.done, timeout=120)
            text = screen_text(pilot)
            assert "Verified by loading it back" in text, text
            assert "✓ Saving m[b]x[i]_finetune.keras" in text  # the run log
            assert re.search(r"script +m\[b\]x\[i\]_finetune\.py", text)  # the files table
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is explorer)

        # The loading view (shown for a moment by every open; held here to look at it).
        loading = LoadingScreen(FILE)
        await app.push_screen(loading)
        loading.step("reading m[b]x[i].keras")
        loading.step("walking d[red]x")
        await pilot.pause()
        text = screen_text(pilot)
        assert f"Opening {FILE}" in text
        assert "✓ reading m[b]x[i].keras" in text and "… walking d[red]x" in text
        app.pop_screen()

        # The repairs screen of an older file whose name has brackets.
        app.open_model(str(legacy))
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ExplorerScreen) and app.screen is not explorer,
        )
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RepairsScreen))
        text = screen_text(pilot)
        assert "Repaired to open in Keras 3: l[b]x[i].h5" in text
        assert "l[b]x[i].h5 -o l[b]x[i]_keras3.keras" in text  # the note (wrapped before it)
