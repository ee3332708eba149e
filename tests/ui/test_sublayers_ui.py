"""The tree shows a MultiHeadAttention's sublayers, and the boundary set on one of them
gives the trainable count Keras gives (issue 18)."""

from __future__ import annotations

import math
from typing import Any

from helpers import screen_text, wait_for_explorer

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
