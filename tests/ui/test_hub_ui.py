"""The app opens a keras-hub preset folder (``kfreeze <preset dir>``), and without keras-hub
shows the error screen with the extra to install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")

import hub_presets
from helpers import screen_text, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.screens.error import ErrorScreen


@pytest.fixture(scope="module")
def bert_preset(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("hub_ui") / "bert_preset"
    backbone = hub_presets.bert()
    backbone.save_to_preset(str(folder))
    return folder, backbone


async def test_the_app_opens_a_preset_folder(bert_preset: tuple[Path, Any]) -> None:
    folder, backbone = bert_preset
    app = make_app(str(folder), use_cache=False)
    async with app.run_test(size=(150, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert explorer.session.info.total_params == backbone.count_params()
        top = [row.name for row in explorer.session.info.children(())]
        assert top == [layer.name for layer in backbone.layers]
        shown = screen_text(pilot)
        assert "keras-hub preset" in shown and "transformer_layer_0" in shown


async def test_without_keras_hub_the_error_screen_names_the_extra(
    bert_preset: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_presets.hide_keras_hub(monkeypatch)
    app = make_app(str(bert_preset[0]), LoadOptions(weights="none"), use_cache=False)
    async with app.run_test(size=(150, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        screen = app.screen
        assert isinstance(screen, ErrorScreen) and screen.error.kind == "hub-missing"
        assert "keras-hub is not installed" in screen.error.sentence
        # The box wraps the sentence where the path's length puts it: read it unwrapped.
        text = screen_text(pilot)
        flat = " ".join(
            line.strip(" │╭╮╰╯─") for line in text.splitlines() if line.strip(" │╭╮╰╯─")
        )
        assert "is a keras-hub model, and keras-hub is not installed" in flat
        assert "Install it with pip install 'kfreeze[hub]'" in flat
        assert "Traceback" not in text


@pytest.mark.parametrize("name", ["my_bert", hub_presets.BUILTIN])
async def test_the_picker_lists_preset_folders_and_cached_presets(
    bert_preset: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A preset folder in the current folder and a preset in kagglehub's cache are rows of the
    picker, and each opens as it does from the command line."""
    import shutil

    from kfreeze_tui.screens.picker import CACHED_PRESET, PRESET_FOLDER, PickerScreen

    folder, backbone = bert_preset
    root = tmp_path / "work"
    shutil.copytree(folder, root / "my_bert")
    (root / "notes").mkdir()  # a plain folder: not listed
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    handle = hub_presets.builtin_handle()
    hub_presets.put_in_kaggle_cache(folder, handle)
    app = make_app(options=LoadOptions(weights="none"), root=root, use_cache=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        await wait_for(pilot, lambda: any(c.kind != "architecture" for c in picker.choices))
        rows = {c.source: c for c in picker.choices if c.kind != "architecture"}
        assert set(rows) == {"my_bert", hub_presets.BUILTIN}
        assert rows["my_bert"].kind == PRESET_FOLDER
        assert rows[hub_presets.BUILTIN].kind == CACHED_PRESET
        assert rows[hub_presets.BUILTIN].target == handle  # keras-hub's own table's handle
        lines = screen_text(pilot).splitlines()
        assert "keras-hub preset (cached)" in next(x for x in lines if hub_presets.BUILTIN in x)
        assert "keras-hub preset folder" in next(x for x in lines if "my_bert" in x)
        for char in name:
            await pilot.press(char)
        assert [c.source for c in picker.shown] == [name]
        await pilot.press("enter")
        explorer = await wait_for_explorer(pilot)
        assert explorer.session.info.total_params == backbone.count_params()
        top = [row.name for row in explorer.session.info.children(())]
        assert top == [layer.name for layer in backbone.layers]
