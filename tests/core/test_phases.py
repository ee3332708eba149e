"""Phases: staged unfreezing with per-stage learning rates, set up by apply_plan and trained
by fit_phases, on real models and real training steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfreeze_tui import apply_plan, check_model, fit_phases
from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.plan import planfile
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import (
    CompileSpec,
    parse_phase,
    phase_optimizer,
    stage_rates,
    variable_rates,
)
from kfreeze_tui.core.train.build import flags_restored

THREE_PHASES = ("head:3:1e-3", "conv5_block1_1_conv:5:1e-5", "conv4_block1_1_conv:5:1e-6..1e-5")


def write_plan(
    path: Path, info: Any, phases: tuple[str, ...], head: HeadSpec, source: str = "resnet50"
) -> Path:
    view = PlanView(info)
    parsed = tuple(parse_phase(text, info) for text in phases)
    plan = FreezePlan(boundary=parsed[0].boundary) if parsed else FreezePlan(boundary=None)
    doc = planfile.document(
        source, LoadOptions(weights="none"), view, plan, head, CompileSpec(), parsed
    )
    path.write_text(planfile.to_toml(doc))
    return path


def trainable(model: Any) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def three_phase_plan(resnet50_info: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phases")
    return write_plan(folder / "p.toml", resnet50_info, THREE_PHASES, HeadSpec(dropout=0.0))


def test_plan_file_round_trips_its_phases(three_phase_plan: Path, resnet50_info: Any) -> None:
    doc = planfile.read(three_phase_plan)
    phases = planfile.resolve_phases(doc, resnet50_info, [])
    assert phases == tuple(parse_phase(text, resnet50_info) for text in THREE_PHASES)
    assert [p.spec(resnet50_info) for p in phases] == [
        "head:3:0.001",
        "conv5_block1_1_conv:5:1e-05",
        "conv4_block1_1_conv:5:1e-06..1e-05",
    ]
    assert doc.boundary is None  # [freeze] is phase 1's: the whole base frozen
    assert "[[phase]]" in three_phase_plan.read_text()


def test_apply_plan_sets_up_each_phase(three_phase_plan: Path, resnet50: Any) -> None:
    base = resnet50.model
    with flags_restored(base):
        first = apply_plan(base, three_phase_plan, phase=1)
        assert trainable(first) == 20_490
        assert first.optimizer.learning_rate.numpy() == pytest.approx(1e-3)
    with flags_restored(base):
        second = apply_plan(base, three_phase_plan, phase=2)
        assert trainable(second) == 14_973_962
        assert second.optimizer.learning_rate.numpy() == pytest.approx(1e-5)
    with flags_restored(base):
        third = apply_plan(base, three_phase_plan, phase=3)
        assert trainable(third) > 14_973_962
        assert type(third.optimizer).__name__ == "MultiOptimizer"
        # A MultiOptimizer has no single learning rate; the checks still run, and find
        # nothing wrong with a phase that starts at a block and keeps BatchNorm frozen.
        assert check_model(third) == []
    with pytest.raises(PlanError, match="phases 1 to 3, not 4"):
        apply_plan(base, three_phase_plan, phase=4)


def test_a_range_is_spread_over_the_stages(resnet50_info: Any) -> None:
    phase = parse_phase("conv4_block1_1_conv:5:1e-6..1e-5", resnet50_info)
    rates, head = stage_rates(resnet50_info, phase, 1e-4)
    assert head == pytest.approx(1e-5)
    assert rates["conv4_block1_1_conv"] == pytest.approx(1e-6)
    assert rates["conv4_block6_out"] == pytest.approx(1e-6)
    assert rates["conv5_block1_1_conv"] == pytest.approx(1e-6 * 10**0.5)
    assert "conv3_block4_out" not in rates  # before the boundary: frozen


def test_phase_3_gives_each_stage_its_rate(three_phase_plan: Path, resnet50: Any) -> None:
    base = resnet50.model
    info = walk(base)
    doc = planfile.read(three_phase_plan)
    third = planfile.resolve_phases(doc, info, [])[2]
    with flags_restored(base):
        model = apply_plan(base, three_phase_plan, phase=3)
        by_path, head = variable_rates(model, info, third, 1e-4)
    assert by_path["conv4_block1_1_conv/kernel"] == pytest.approx(1e-6)
    assert by_path["conv4_block6_3_conv/bias"] == pytest.approx(1e-6)
    assert by_path["conv5_block3_3_conv/kernel"] == pytest.approx(1e-6 * 10**0.5)
    assert 1e-6 < by_path["conv5_block1_1_conv/kernel"] < 1e-5
    assert head == pytest.approx(1e-5) and "head_output/kernel" not in by_path
    assert "conv3_block4_3_conv/kernel" not in by_path  # frozen in phase 3


def test_an_sgd_step_moves_weights_in_proportion_to_their_rates(
    keras: Any, resnet50: Any, resnet50_info: Any, tmp_path: Path
) -> None:
    """With plain SGD a step moves each weight by -rate x gradient: the step over the
    gradient (from a GradientTape on the same batch) is each variable's rate. Rates of
    1e-3..1e-2 (not 1e-6..) so that the steps stay above float32's resolution."""
    import tensorflow as tf

    from kfreeze_tui.core.train.build import build_model

    base = resnet50.model
    phase = parse_phase("conv4_block1_1_conv:1:1e-3..1e-2", resnet50_info)
    view = PlanView(resnet50_info)
    with flags_restored(base):
        model = build_model(
            base, view, phase.plan(FreezePlan()), HeadSpec(dropout=0.0), CompileSpec(),
            lambda new: phase_optimizer(keras, new, resnet50_info, phase, 1e-4,
                                        optimizer=keras.optimizers.SGD),
        )  # fmt: skip
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 224, 224, 3)).astype("float32")
        y = np.array([1, 7])
        watched = {
            "stage 4": model.get_layer("conv4_block2_2_conv").kernel,
            "stage 5": model.get_layer("conv5_block2_2_conv").kernel,
            "head": model.get_layer("head_output").kernel,
        }
        with tf.GradientTape() as tape:
            loss = keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=True))
        gradients = dict(zip(watched, tape.gradient(loss, list(watched.values())), strict=True))
        before = {k: np.array(v.numpy(), dtype="float64") for k, v in watched.items()}
        model.train_on_batch(x, y)
        rates = {}
        for k, variable in watched.items():
            g = np.asarray(gradients[k], dtype="float64")
            step = np.asarray(variable.numpy(), dtype="float64") - before[k]
            big = np.abs(g) >= np.quantile(np.abs(g), 0.99)  # well above rounding
            rates[k] = float(np.median(-step[big] / g[big]))
    assert rates["stage 4"] == pytest.approx(1e-3, rel=0.02)
    assert rates["stage 5"] == pytest.approx(1e-3 * 10**0.5, rel=0.02)
    assert rates["head"] == pytest.approx(1e-2, rel=0.02)


def test_fit_phases_trains_every_phase_and_merges_the_history(
    keras: Any, small_model: Any, tmp_path: Path
) -> None:
    info = walk(small_model)
    phases = ("head:2:1e-3", "block2_conv:1:1e-4", "block1_conv:2:1e-5..1e-4")
    plan = write_plan(tmp_path / "p.toml", info, phases, HeadSpec(classes=3), "small.keras")

    class Seen(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[int] = []
            self.trainable: list[int] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epochs.append(epoch)
            self.trainable.append(trainable(self.model))

    seen = Seen()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    with flags_restored(small_model):
        history = fit_phases(
            small_model, plan, x, y=y, batch_size=8, callbacks=[seen], verbose=0,
            validation_data=(x[:4], y[:4]),
        )  # fmt: skip
    assert history.epoch == [0, 1, 2, 3, 4] == seen.epochs
    assert len(history.history["loss"]) == 5 and len(history.history["val_loss"]) == 5
    # The head alone, then from block2_conv, then from block1_conv: more trains each phase.
    t = seen.trainable
    assert t[0] == t[1] < t[2] < t[3] == t[4]


def test_fit_phases_on_a_model_apply_plan_built(
    keras: Any, small_model: Any, tmp_path: Path
) -> None:
    info = walk(small_model)
    plan = write_plan(tmp_path / "p.toml", info, ("head:1:1e-3", "block2_conv:1:1e-4"),
                      HeadSpec(classes=3), "small.keras")  # fmt: skip
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, size=(8,))
    with flags_restored(small_model):
        model = apply_plan(small_model, plan)
        history = fit_phases(model, plan, x, y=y, verbose=0)
        assert history.model is model
    assert history.epoch == [0, 1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("head", "must be BOUNDARY:EPOCHS"),
        ("head:x", "is not a number of epochs"),
        ("head:0", "at least one epoch"),
        ("head:3:fast", "is not a learning rate"),
        ("head:3:1e-4..1e-6", "goes down"),
        ("head:3:-1", "must be positive"),
        ("nope:3", "nope"),
    ],
)
def test_bad_phases_are_one_sentence(resnet50_info: Any, text: str, needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        parse_phase(text, resnet50_info)


def test_a_plan_without_phases_is_one_phase(
    resnet50_info: Any, resnet50: Any, tmp_path: Path
) -> None:
    view = PlanView(resnet50_info)
    plan = FreezePlan(boundary=resnet50_info.find("conv5_block1_1_conv").path)
    doc = planfile.document(
        "resnet50", LoadOptions(weights="none"), view, plan, HeadSpec(), CompileSpec()
    )
    path = tmp_path / "old.toml"
    path.write_text(planfile.to_toml(doc))
    assert "[[phase]]" not in path.read_text()
    assert planfile.read(path).phases == ()
    with pytest.raises(PlanError, match="no phases"):
        apply_plan(resnet50.model, path, phase=2)


def test_fit_phases_on_a_plan_without_phases_trains_it_as_it_is(
    small_model: Any, tmp_path: Path
) -> None:
    info = walk(small_model)
    view = PlanView(info)
    exception = info.find("stem_conv").path  # trains although before the boundary
    plan = FreezePlan(boundary=info.find("block2_conv").path, exceptions=frozenset({exception}))
    doc = planfile.document(
        "small.keras", LoadOptions(weights="none"), view, plan, HeadSpec(classes=3), CompileSpec()
    )
    path = tmp_path / "one.toml"
    path.write_text(planfile.to_toml(doc))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, size=(8,))
    with flags_restored(small_model):
        history = fit_phases(small_model, path, x, y=y, epochs=2, verbose=0)
        names = {w.path.split("/")[0] for w in history.model.trainable_weights}
    assert history.epoch == [0, 1]
    assert {"stem_conv", "block2_conv", "head_output"} <= names and "block1_conv" not in names
