"""The tree shows a MultiHeadAttention's sublayers, and the boundary set on one of them
gives the trainable count Keras gives (issue 18)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app


async def test_the_boundary_on_mha_query_counts_as_keras(keras: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadedModel
    from kfreeze_tui.core.train.build import apply_freeze, flags_restored

    inputs = keras.Input((8, 16), name="tokens")
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="mha")(inputs, inputs)
    x = keras.layers.Dense(32, name="ffn1")(x)
    model = keras.Model(inputs, keras.layers.Dense(16, name="ffn2")(x), name="transformer")
    loaded = LoadedModel(model=model, source="transformer", description="MHA model")
    app = make_app(loaded=loaded)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        text = screen_text(pilot)
        for name in ("query", "key", "value", "attention_output"):
            assert name in text
        assert table.move_to_path((1, 1))  # mha/key
        assert table.current_layer.name == "key"
        await pilot.press("f")
        plan = explorer.plan
        assert plan.boundary == (1, 1)
        view = explorer.session.view
        shown = view.totals(plan)
        with flags_restored(model):
            apply_freeze(model, view, plan)
            trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
        assert shown.trainable == trainable == model.count_params() - 544
        assert f"{trainable:,}" in screen_text(pilot)


async def test_the_export_of_a_boundary_inside_mha_says_how_to_load_it(
    keras: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export dialog writes a boundary at mha/key and its result says, in one sentence,
    that the file's freeze inside mha needs the script's load()."""
    from kfreeze_tui.core.model.loading import load
    from kfreeze_tui.screens.export import ExportRunScreen, ExportScreen

    inputs = keras.Input((8, 16), name="tokens")
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="mha")(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(16, name="ffn")(x), name="transformer")
    model.save(tmp_path / "transformer.keras")
    monkeypatch.chdir(tmp_path)
    app = make_app(loaded=load(str(tmp_path / "transformer.keras")), use_cache=False)
    async with app.run_test(size=(160, 50)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert explorer.table.move_to_path((1, 1))  # mha/key
        await pilot.press("f")
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
        run = app.screen
        await wait_for(pilot, lambda: run.done, timeout=120)
        text = " ".join(screen_text(pilot).split())
        assert "Verified by loading it back" in text, text
        assert "freezes part of mha, which a .keras file cannot keep" in text, text
