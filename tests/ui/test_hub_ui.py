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
