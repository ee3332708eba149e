"""The feature cache's verdict in the explorer: the status bar and the side pane follow the
boundary and the cursor, on a real model with augmentation in the real app."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import screen_text, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadedModel
from kfreeze_tui.widgets.status_bar import StatusBar, TextPane

SIZE = (120, 40)


@pytest.fixture(scope="module")
def augmented(keras: Any) -> LoadedModel:
    """A block, then RandomFlip, then a block and a classifier."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.RandomFlip(name="flip")(x)
    x = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, name="classifier")(x)
    model = keras.Model(inputs, outputs, name="augmented")
    return LoadedModel(model, "augmented", "a block, RandomFlip, a block")


async def _move_to(pilot: Any, explorer: Any, name: str) -> None:
    await pilot.press("home")
    while explorer.table.current_layer.name != name:
        await pilot.press("down")


async def test_verdict_follows_the_boundary(augmented: LoadedModel) -> None:
    app = make_app(loaded=augmented)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        summary = explorer.query_one("#layer-summary", TextPane)
        status = explorer.query_one(StatusBar)

        await _move_to(pilot, explorer, "flip")
        # The side pane says what f would give here, before f is pressed.
        assert "features cacheable: 16x16x8, 8.0 KiB per example" in summary.text.plain
        await pilot.press("f")
        assert "features cacheable 8.0 KiB/ex" in status.text.plain
        assert "features cacheable 8.0 KiB/ex" in screen_text(pilot)

        await _move_to(pilot, explorer, "c2")
        assert (
            "features not cacheable: RandomFlip (flip) before the boundary changes its output "
            "every epoch" in summary.text.plain
        )
        assert "features cacheable 8.0 KiB/ex" in status.text.plain  # the boundary is still at flip
        await pilot.press("f")
        assert "features not cacheable" in status.text.plain
        assert "features not cacheable" in screen_text(pilot)

        await _move_to(pilot, explorer, "c1")
        assert "features not cacheable: nothing is frozen before the boundary" in (
            summary.text.plain
        )
