"""The cost of the plan in the explorer: live at the boundary, set by the batch and optimizer
fields, and checked against the GPU's free memory when nvidia-smi is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import nvidia_smi
from helpers import screen_text, type_into, wait_for_explorer

from kfreeze_tui import scenarios
from kfreeze_tui.app import make_app
from kfreeze_tui.core.train.cost import Optimizer, TrainingSetup, brief, cost_model


async def test_cost_follows_the_boundary_batch_and_optimizer(named_resnet: Any) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(150, 44)) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        view, plan = explorer.session.view, explorer.plan
        at_143 = cost_model(view).estimate(plan, TrainingSetup())
        assert at_143.relative_step == pytest.approx(0.46, abs=0.01)
        assert f"{brief(at_143, TrainingSetup())} (Adam)" in screen_text(pilot)
        assert "step 0.46x of full fine-tuning · 512 MiB at batch 32" in screen_text(pilot)
        # The side pane prices f at the cursor before it is pressed.
        await pilot.press("left_square_bracket")  # stage 4's start
        assert "step 0.70x, 1.4 GiB" in screen_text(pilot)
        await pilot.press("right_square_bracket")
        await type_into(pilot, "#head-batch", "64")
        assert explorer.session.training.batch == 64
        at_64 = cost_model(view).estimate(plan, explorer.session.training)
        assert at_64.memory.activations == 2 * at_143.memory.activations
        assert f"{brief(at_64, explorer.session.training)} (Adam)" in screen_text(pilot)
        explorer.query_one("#head-optimizer").focus()
        await pilot.press("left")  # adam -> sgd (the choices wrap around)
        assert explorer.session.training.optimizer is Optimizer.SGD
        assert "(SGD)" in screen_text(pilot)
        await type_into(pilot, "#head-batch", "0")
        pane = explorer.query_one("#head-pane")
        assert "The batch size must be a positive whole number." in pane.input_problems
        assert explorer.query_one("#head-batch").has_class("-bad-value")
        assert explorer.session.training.batch == 64  # the last good value stays


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An nvidia-smi that reports one GPU with 300 MiB free (this machine has no GPU)."""
    monkeypatch.setenv(
        "PATH", nvidia_smi(tmp_path, "echo '0, Fake GPU 16GB, 16384, 300, GPU-0fa4e'")
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the tests' own -1 would hide it


async def test_the_plan_is_checked_against_the_gpu(
    named_resnet: Any, fake_nvidia_smi: None
) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(170, 44)) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        for _ in range(100):
            if explorer.session.gpus:
                break
            await pilot.pause(0.05)
        estimate = cost_model(explorer.session.view).estimate(explorer.plan, TrainingSetup())
        largest = estimate.largest_batch(300 << 20)
        assert 0 < largest < 32  # 512 MiB at batch 32 does not fit in 300 MiB
        assert f"does NOT fit GPU 0 (300 MiB free; batch up to {largest:,})" in screen_text(pilot)
        await type_into(pilot, "#head-batch", str(largest))
        assert f"fits GPU 0 (300 MiB free; batch up to {largest:,})" in screen_text(pilot)


def test_the_cost_line_prices_a_mixed_precision_model_in_its_own_dtype(keras: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadedModel
    from kfreeze_tui.core.session import ModelSession
    from kfreeze_tui.core.train.cost import DtypePolicy
    from kfreeze_tui.widgets.status_bar import cost_line

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        model = keras.Model(inputs, outputs, name="mixed")
    finally:
        keras.config.set_dtype_policy(before)
    session = ModelSession(LoadedModel(model, "mixed", "mixed"))
    assert session.training.dtype is DtypePolicy.MIXED_FLOAT16
    line = cost_line(session.view, session.plan, session.training).plain
    assert "(Adam, mixed_float16)" in line
    half = cost_model(session.view).estimate(session.plan, session.training)
    full = cost_model(session.view).estimate(session.plan, TrainingSetup())
    assert 2 * half.memory.activations == full.memory.activations > 0
