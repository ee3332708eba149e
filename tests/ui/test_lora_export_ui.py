"""The export dialog with a plan that has LoRA: it lists the adapters file beside the model
file, the export runs through the session (on a copy of its model) and says what it proved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.screens.export import ExportRunScreen, ExportScreen


async def test_the_export_dialog_writes_the_adapters_apart(
    small_loaded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.session.set_plan(FreezePlan(boundary=None, lora=LoraSpec(2, "all")))
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        assert "small_cnn_finetune.lora.npz" in screen_text(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
        run = app.screen
        await wait_for(pilot, lambda: run.done, timeout=120)
        text = screen_text(pilot)
        assert "LoRA B matrices moved" in text, text
        model = explorer.session.model
    assert (tmp_path / "small_cnn_finetune.lora.npz").is_file()
    assert (tmp_path / "small_cnn_finetune.keras").is_file()
    assert not [w for w in model.weights if "lora" in w.path]  # the session's own model
