"""How the screens look, at a fixed terminal size (pytest-textual-snapshot).

Update after an intended change with ``python -m pytest tests/ui/test_snapshots.py
--snapshot-update`` and look at the report before committing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for
from textual.pilot import Pilot

from kfreeze_tui import scenarios
from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.screens.picker import PickerScreen


def test_picker(snap_compare: Any, tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "my_model.keras").write_bytes(b"\0" * 2_000_000)
    (tmp_path / "experiments" / "tiny.keras").write_bytes(b"\0" * 700)

    async def run_before(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PickerScreen))
        await wait_for(pilot, lambda: "my_model" in screen_text(pilot))

    app = make_app(options=LoadOptions(weights="none"), root=tmp_path)
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_picker_with_keras_hub_presets(
    snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preset folder here and a preset in kagglehub's cache (its layout, written by hand:
    tests/core/test_hub.py lays it out with kagglehub's own code) are rows of their own."""
    config = '{"registered_name": "keras_hub>BertBackbone"}'
    root = tmp_path / "work"
    (root / "my_bert").mkdir(parents=True)
    (root / "my_bert" / "config.json").write_text(config)
    (root / "my_bert" / "model.weights.h5").write_bytes(b"\0" * 3_000_000)
    (root / "tiny.keras").write_bytes(b"\0" * 700)
    variation = tmp_path / "kagglehub" / "models" / "keras" / "gemma" / "keras" / "gemma_2b_en"
    (variation / "2").mkdir(parents=True)
    (variation / "2" / "config.json").write_text(config)
    (variation / "2" / "model.weights.h5").write_bytes(b"\0" * 5_000_000)
    (variation / "2.complete").write_text("")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))

    async def run_before(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PickerScreen))
        await wait_for(pilot, lambda: "gemma_2b_en" in screen_text(pilot))

    app = make_app(options=LoadOptions(weights="none"), root=root)
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_explorer_boundary_143(snap_compare: Any, named_resnet: Any) -> None:
    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=scenarios.boundary_at_143
    )


def test_explorer_split_cut(snap_compare: Any, named_resnet: Any) -> None:
    """The boundary inside a residual unit: the status bar says which block it splits."""

    async def run_before(pilot: Pilot) -> None:
        await scenarios.split_cut(pilot)
        status = pilot.app.screen.query_one("#status").text.plain
        assert "splits block conv5_block1" in status  # under the warning toast

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=run_before
    )


def test_explorer_filter(snap_compare: Any, named_resnet: Any) -> None:
    """The filter shows its query above the status bar."""

    async def run_before(pilot: Pilot) -> None:
        await scenarios.filtered(pilot)
        assert "conv5.*_bn$" in screen_text(pilot)

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=run_before
    )


def test_layer_detail(snap_compare: Any, named_resnet: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await scenarios.detail(pilot)
        assert '"epsilon"' in screen_text(pilot)

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 40), run_before=run_before
    )


def test_error_screen(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert snap_compare(
        make_app("missing.keras", root=tmp_path),
        terminal_size=(100, 30),
        run_before=scenarios.error,
    )


def test_explorer_80x24(snap_compare: Any, named_resnet: Any) -> None:
    """At 80x24 the footer still shows Help and Quit."""

    async def run_before(pilot: Pilot) -> None:
        await scenarios.boundary_at_143(pilot)
        footer = screen_text(pilot).splitlines()[-1]
        assert "? Help" in footer and "q Quit" in footer

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(80, 24), run_before=run_before
    )


def test_head_pane(snap_compare: Any, named_resnet: Any) -> None:
    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(130, 40), run_before=scenarios.head_pane
    )


def test_export_dialog(
    snap_compare: Any, named_resnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await scenarios.boundary_at_143(pilot)
        await pilot.press("e")
        await pilot.pause()
        field = pilot.app.screen.query_one("#export-path")
        field.value = "resnet50_finetune.keras"  # relative: the same on every machine
        await pilot.pause()

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=run_before
    )


@pytest.fixture(scope="session")
def efficientnetv2l(keras: Any) -> Any:
    """EfficientNetV2L as kfreeze loads it: in a fresh thread, so its names are stable."""
    from kfreeze_tui.core.model.loading import load_with_fresh_names

    return load_with_fresh_names("efficientnetv2l", LoadOptions(weights="none"))


async def _to_stage_4(pilot: Pilot) -> None:
    await scenarios.to_stage_4(pilot)
    header = screen_text(pilot).splitlines()[1]
    for column in ("#", "name", "type", "output shape", "params", "state"):
        assert column in header, column


@pytest.mark.parametrize("size", [(120, 40), (100, 30)])
def test_columns_resnet50(snap_compare: Any, named_resnet: Any, size: tuple[int, int]) -> None:
    """Every column shows at 120x40 with the side pane and at 100x30 without it."""
    assert snap_compare(make_app(loaded=named_resnet), terminal_size=size, run_before=_to_stage_4)


@pytest.mark.parametrize("size", [(120, 40), (100, 30)])
def test_columns_efficientnetv2l(
    snap_compare: Any, efficientnetv2l: Any, size: tuple[int, int]
) -> None:
    assert snap_compare(
        make_app(loaded=efficientnetv2l), terminal_size=size, run_before=_to_stage_4
    )


def test_explorer_lora_bert(snap_compare: Any) -> None:
    """A tiny BERT with LoRA on a whole transformer layer and the attention preset: the
    state column says lora, ⊘ marks the layers that cannot take it, the pane the coverage."""
    pytest.importorskip("keras_hub")
    import hub_presets

    from kfreeze_tui.core.model.loading import LoadedModel

    model = hub_presets.with_fresh_names(hub_presets.bert)
    loaded = LoadedModel(model=model, source="bert", description="tiny BERT")

    async def run_before(pilot: Pilot) -> None:
        await scenarios.lora_bert(pilot)
        assert "LoRA r8 on" in pilot.app.screen.query_one("#status").text.plain

    assert snap_compare(make_app(loaded=loaded), terminal_size=(130, 44), run_before=run_before)
