"""A file from an older Keras in the explorer: the header says it was repaired, R lists the
repairs, and a repaired layer's detail names its own."""

from __future__ import annotations

from typing import Any

from helpers import screen_text, wait_for, wait_for_explorer
from legacy.oracle import LegacyFiles

from kfreeze_tui import scenarios
from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.screens.detail import LayerDetailScreen
from kfreeze_tui.screens.repairs import RepairsScreen


async def test_explorer_reports_repairs(legacy_files: LegacyFiles) -> None:
    app = make_app(
        str(legacy_files.path("mobile_h5")), LoadOptions(weights="none"), use_cache=False
    )
    async with app.run_test(size=(150, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert "opened from an older Keras with 3 repairs (R: list)" in screen_text(pilot)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RepairsScreen))
        shown = screen_text(pilot)
        assert "dropped groups=1 from 2 DepthwiseConv2D layers" in shown
        assert "conv_dw_1, conv_dw_2, sep, up" in shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is explorer)
        await pilot.press("slash", *"conv_dw_1", "enter")
        assert explorer.table.current_layer.name == "conv_dw_1"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LayerDetailScreen))
        assert "repaired" in screen_text(pilot)
        assert "dropped groups=1" in screen_text(pilot)


def test_repairs_snapshot(snap_compare: Any, legacy_files: LegacyFiles) -> None:
    app = make_app(
        str(legacy_files.path("mobile_h5")), LoadOptions(weights="none"), use_cache=False
    )
    assert snap_compare(app, terminal_size=(110, 24), run_before=scenarios.repairs)


async def test_explorer_opens_tf_op_layers_and_initial_states(legacy_files: LegacyFiles) -> None:
    """A seq2seq model with initial_state calls and slices (SlicingOpLambda) opens in the
    explorer, with its repairs listed."""
    app = make_app(
        str(legacy_files.path("seq2seq_h5")), LoadOptions(weights="none"), use_cache=False
    )
    async with app.run_test(size=(150, 40)) as pilot:
        await wait_for_explorer(pilot)
        assert "opened from an older Keras with" in screen_text(pilot)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RepairsScreen))
        shown = screen_text(pilot)
        assert "rebuilt 4 SlicingOpLambda layers as keras.ops calls" in shown
        assert "decoder, gru_decoder, bidi_decoder" in shown  # their initial states
