"""The export dialog's cached-features option: offered for a plan whose frozen part can be
cached (and the script it writes has cache_features), a one-line reason otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer
from textual.widgets import Checkbox

from kfreeze_tui.app import make_app
from kfreeze_tui.screens.export import ExportRunScreen, ExportScreen


async def test_the_dialog_offers_cached_features_for_a_cacheable_plan(
    small_loaded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_explorer(pilot)
        await pilot.press("j", "j", "j", "j", "f")  # boundary at pool1
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        assert "cached features" in screen_text(pilot)
        box = app.screen.query_one("#export-cache", Checkbox)
        assert not box.value
        await pilot.click("#export-cache")
        assert box.value
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
        run = app.screen
        await wait_for(pilot, lambda: run.done, timeout=120)
        assert "Verified by loading it back" in screen_text(pilot)
    script = (tmp_path / "small_cnn_finetune.py").read_text()
    assert "def cache_features(ds, directory" in script
    assert 'FEATURE_TENSORS = ["stem_relu"]' in script
    assert "cache_dir=None" in script


async def test_the_dialog_says_why_a_plan_cannot_cache(small_loaded: Any) -> None:
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("j", "j", "j", "j", "f")  # boundary at pool1
        await pilot.press("k", "k", "space")  # stem_bn, before it, trains
        assert explorer.plan.exceptions
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        assert not app.screen.query("#export-cache")
        text = screen_text(pilot)
        assert "--cache-features cannot be used:" in text and "stem_bn" in text
