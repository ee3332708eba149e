"""kfreeze check and check_model: each finding from a model that has the problem, and the
one-step proof on real training steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfreeze_tui import check_model
from kfreeze_tui.core.runtime.keras_private import compiled_trainable_state
from kfreeze_tui.core.train.check import (
    one_step,
    static_findings,
    step_findings,
    synthetic_batch,
)


def codes(findings: list[Any]) -> set[str]:
    return {finding.code for finding in findings}


def tiny(keras: Any, name: str = "tiny", mixed: bool = False) -> Any:
    """Conv, BN, conv, BN, dense: small enough to train a step in milliseconds."""
    L = keras.layers
    dtype = "mixed_float16" if mixed else None
    inputs = keras.Input((8, 8, 3), name="x")
    x = L.Conv2D(4, 3, padding="same", name="c1", dtype=dtype)(inputs)
    x = L.BatchNormalization(name="bn1", dtype=dtype)(x)
    x = L.Conv2D(4, 3, padding="same", name="c2", dtype=dtype)(x)
    x = L.BatchNormalization(name="bn2", dtype=dtype)(x)
    x = L.GlobalAveragePooling2D(name="gap", dtype=dtype)(x)
    outputs = L.Dense(3, activation="softmax", name="out", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name=name)


def compiled(keras: Any, model: Any, rate: float = 1e-4) -> Any:
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy")
    return model


def freeze_first_conv(model: Any, bn_trains: bool) -> None:
    model.get_layer("c1").trainable = False
    model.get_layer("bn1").trainable = False
    model.get_layer("bn2").trainable = bn_trains


def test_a_well_set_up_model_has_no_findings(keras: Any) -> None:
    model = tiny(keras)
    freeze_first_conv(model, bn_trains=False)
    assert check_model(compiled(keras, model)) == []


def test_bn_training_after_a_frozen_prefix(keras: Any) -> None:
    model = tiny(keras)
    freeze_first_conv(model, bn_trains=True)
    findings = check_model(compiled(keras, model))
    assert codes(findings) == {"bn_after_frozen"}
    assert findings[0].layers == ("bn2",) and findings[0].severity == "warning"


def test_no_trainable_weights(keras: Any) -> None:
    model = tiny(keras)
    model.trainable = False
    findings = check_model(compiled(keras, model))
    assert codes(findings) == {"no_trainable"} and findings[0].severity == "error"


def test_float16_output_under_mixed_precision(keras: Any) -> None:
    findings = check_model(compiled(keras, tiny(keras, mixed=True)))
    assert codes(findings) == {"float16_output"}
    assert findings[0].layers == ("out",)


def test_high_learning_rate_with_a_frozen_prefix(keras: Any) -> None:
    model = tiny(keras)
    freeze_first_conv(model, bn_trains=False)
    findings = check_model(compiled(keras, model, rate=1e-2))
    assert codes(findings) == {"high_lr"} and "0.01" in findings[0].message
    # 1e-3 itself is the guide's rate for a new head (Keras stores it as float32).
    guide = tiny(keras, "guide")
    freeze_first_conv(guide, bn_trains=False)
    assert check_model(compiled(keras, guide, rate=1e-3)) == []
    # The same rate without a frozen prefix is training from scratch: nothing to say.
    assert check_model(compiled(keras, tiny(keras, "scratch"), rate=1e-2)) == []


def test_boundary_inside_a_block(resnet50: Any, keras: Any) -> None:
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.train.build import build_model, flags_restored

    base = resnet50.model
    view = PlanView(walk(base))
    plan = FreezePlan(boundary=view.info.find("conv5_block1_2_conv").path)
    with flags_restored(base):
        model = build_model(base, view, plan, HeadSpec(), CompileSpec())
        findings = static_findings(model)
    assert codes(findings) == {"split_block"}
    assert "conv5_block1_2_conv" in findings[0].message and "conv5_block1" in findings[0].message


def test_trainable_changed_after_compile(keras: Any) -> None:
    model = compiled(keras, tiny(keras))
    model.get_layer("c1").trainable = False  # the trap: after compile()
    findings = check_model(model)
    assert "recompile" in codes(findings)
    recompile = next(f for f in findings if f.code == "recompile")
    assert recompile.severity == "error" and recompile.layers == ("c1",)
    assert findings[0].code == "recompile"  # errors first
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert "recompile" not in codes(check_model(model))


def test_keras_still_records_the_compiled_trainable_state(keras: Any) -> None:
    """The private attribute check_model reads: if Keras renames it, this fails loudly."""
    model = tiny(keras)
    assert compiled_trainable_state(model) is None  # not compiled
    compiled(keras, model)
    state = compiled_trainable_state(model)
    assert state is not None, "Keras no longer has Trainer._compiled_trainable_state"
    assert state[model.get_layer("c1")] is True
    assert all(isinstance(value, bool) for value in state.values())


# -- the one-step proof ----------------------------------------------------------------------


def test_one_step_proves_a_plan(keras: Any) -> None:
    model = tiny(keras)
    freeze_first_conv(model, bn_trains=False)
    compiled(keras, model)
    step = one_step(model)
    # c1 (kernel, bias) and bn1, bn2 (gamma, beta, moving mean, moving variance) are frozen;
    # c2 and out (kernel, bias) train.
    assert step.frozen_unchanged == 2 + 4 + 4 and step.frozen_changed == []
    assert step.trainable_changed == 4 and step.trainable_unchanged == []
    assert step.bn_stats_changed == [] and step.ok
    assert step_findings(step) == []


@pytest.mark.parametrize("with_reference", [False, True])
def test_one_step_catches_a_layer_frozen_after_training_began(
    keras: Any, with_reference: bool
) -> None:
    """The trap of Keras's issue tracker: trainable set to False after compile() and fit()
    began, without compiling again. The step function Keras traced still trains the layer:
    its weights and moving statistics move. Compared with a copy of the weights taken
    before the step, or (as the export does) with another model holding the same values."""
    import numpy as np

    model = compiled(keras, tiny(keras))
    model.train_on_batch(np.zeros((2, 8, 8, 3), "float32"), np.zeros((2,), "int64"))
    model.get_layer("bn2").trainable = False
    reference = None
    if with_reference:
        reference = keras.models.clone_model(model)
        reference.set_weights(model.get_weights())
    step = one_step(model, reference=reference)
    assert sorted(step.bn_stats_changed) == ["bn2/moving_mean", "bn2/moving_variance"]
    assert sorted(step.frozen_changed) == ["bn2/beta", "bn2/gamma"]
    assert [f.code for f in step_findings(step)] == ["frozen_changed", "bn_stats_changed"]
    assert "recompile" in codes(check_model(model))


def test_one_step_catches_a_frozen_weight_that_changes(keras: Any) -> None:
    """A layer whose non-trainable state moves in training (a counter)."""

    class Counter(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.seen = self.add_weight(name="seen", shape=(), initializer="zeros", trainable=False)

        def call(self, inputs: Any, training: bool = False) -> Any:
            if training:
                self.seen.assign_add(1.0)
            return inputs

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, activation="softmax")(Counter(name="counter")(inputs))
    step = one_step(compiled(keras, keras.Model(inputs, outputs)))
    assert step.frozen_changed == ["counter/seen"]
    assert [f.code for f in step_findings(step)] == ["frozen_changed"]


def test_the_step_feeds_inputs_in_the_structure_the_model_was_built_with(keras: Any) -> None:
    """A model made with Model([x], y) takes a list of one; a bare array makes Keras warn
    that the structure does not match (seen under every legacy and keras.applications file
    whose inputs are a list)."""
    import warnings

    for listed in (True, False):
        inputs = keras.Input((4,), name="x")
        outputs = keras.layers.Dense(2, activation="softmax")(inputs)
        model = compiled(keras, keras.Model([inputs] if listed else inputs, outputs))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = one_step(model)
        assert not [w for w in caught if "structure" in str(w.message)], listed
        assert step.trainable_changed


def test_check_command(run_cli: Any, keras: Any, tmp_path: Path) -> None:
    good = tiny(keras, "good")
    freeze_first_conv(good, bn_trains=False)
    compiled(keras, good).save(tmp_path / "good.keras")
    result = run_cli("check", str(tmp_path / "good.keras"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["findings"] == []
    assert document["step"] == {
        "frozen_unchanged": 10,
        "frozen_changed": [],
        "trainable_changed": 4,
        "trainable_unchanged": [],
        "bn_stats_changed": [],
    }
    frozen = tiny(keras, "frozen")
    frozen.trainable = False
    compiled(keras, frozen).save(tmp_path / "frozen.keras")
    bad = run_cli("check", str(tmp_path / "frozen.keras"))
    assert bad.returncode == 1
    assert bad.stdout.startswith("error: no_trainable: no weight trains")
    missing = run_cli("check", str(tmp_path / "missing.keras"))
    assert missing.returncode == 2 and missing.stdout == ""


@pytest.mark.parametrize("bn_trains", [False, True])
def test_check_command_text(run_cli: Any, keras: Any, tmp_path: Path, bn_trains: bool) -> None:
    model = tiny(keras, f"bn_{bn_trains}")
    freeze_first_conv(model, bn_trains=bn_trains)
    path = tmp_path / "m.keras"
    compiled(keras, model).save(path)
    result = run_cli("check", str(path))
    assert result.returncode == 0, result.stderr  # warnings only
    assert "one training step:" in result.stdout
    assert ("warning: bn_after_frozen" in result.stdout) is bn_trains


@pytest.mark.parametrize(
    "loss", ["categorical_crossentropy", "sparse_categorical_crossentropy", "mse"]
)
def test_the_step_fits_the_labels_to_the_loss(keras: Any, loss: str) -> None:
    model = tiny(keras, f"loss_{loss}")
    model.compile(optimizer="sgd", loss=loss)
    step = one_step(model)
    assert step.trainable_changed > 0 and step.frozen_changed == []


@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy"]
)
def test_a_model_that_fits_the_synthetic_batch_exactly_still_learns(keras: Any, loss: str) -> None:
    # A saturated output that predicts the batch's random labels exactly: Keras's own step
    # moves no weight (the loss gradient is exactly zero), yet the model learns.
    units = 1 if loss.startswith("binary") else 3
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    activation = "sigmoid" if units == 1 else "softmax"
    out = keras.layers.Dense(units, activation=activation, name="out")
    model = keras.Model(inputs, out(hidden), name=f"saturated_{units}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    _, labels = synthetic_batch(model, 1)
    label = np.asarray(labels).reshape(-1)
    # The class (or the binary label) of the batch's one example, predicted with certainty.
    target = int(label.argmax()) if loss.startswith("categorical") else int(label[0])
    bias = np.full(units, -1000.0, dtype="float32")
    if units > 1 or target == 1:
        bias[target if units > 1 else 0] = 1000.0
    out.set_weights([np.zeros(out.kernel.shape, dtype="float32"), bias])
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    x, y = synthetic_batch(plain, 1)
    plain.train_on_batch(x, y)
    assert all(
        np.array_equal(a, b) for a, b in zip(plain.get_weights(), model.get_weights(), strict=True)
    )
    step = one_step(model, batch=1)
    assert step.trainable_changed > 0 and step.frozen_changed == []
    assert "nothing_changed" not in codes(step_findings(step))


@pytest.mark.parametrize("units", [3, 1])
def test_an_uncompiled_model_with_raw_outputs_learns_in_the_step(keras: Any, units: int) -> None:
    # A plain Dense at the end (a model exported without a head): outputs [-1, -1, 3] for
    # every input. Keras's cross-entropy on probabilities divides them by their sum and
    # clips them to (0, 1): every label's entry is clipped, so its gradient is exactly zero.
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    out = keras.layers.Dense(units, name="out")
    model = keras.Model(inputs, out(hidden), name=f"raw_{units}")
    bias = np.array([-1.0, -1.0, 3.0] if units == 3 else [-2.0], dtype="float32")
    out.set_weights([np.zeros(out.kernel.shape, dtype="float32"), bias])
    probabilities = keras.models.clone_model(model)
    probabilities.set_weights(model.get_weights())
    loss = "binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"
    probabilities.compile(optimizer=keras.optimizers.SGD(1e-2), loss=loss)
    x, y = synthetic_batch(probabilities, 4)
    before = probabilities.get_weights()
    probabilities.train_on_batch(x, y)
    # The trap, in Keras itself: nothing moves.
    assert all(
        np.array_equal(a, b) for a, b in zip(before, probabilities.get_weights(), strict=True)
    )
    step = one_step(model, batch=4)
    assert "nothing_changed" not in codes(step_findings(step))
    assert step.trainable_changed >= 2  # out's kernel and bias


def check_file(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    """``kfreeze check FILE --json`` in this process: the exit code and the document."""
    from kfreeze_tui.cli import run

    code = run(["check", str(path), "--json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out else captured.err)


def test_check_on_a_file_reads_the_compiled_learning_rate(
    keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = compiled(keras, tiny(keras, "fast"), rate=1e-2)
    freeze_first_conv(model, bn_trains=False)  # after compile(): the live model must recompile
    assert codes(check_model(model)) == {"recompile", "high_lr"}
    path = tmp_path / "fast.keras"
    model.save(path)
    code, document = check_file(path, capsys)
    assert code == 0, document
    found = {finding["code"] for finding in document["findings"]}
    # The reference: check_model on the file as Keras loads it (compiled, by default). Loading
    # compiles with the flags the file holds, so a file cannot need a recompile.
    assert found == codes(check_model(keras.saving.load_model(path))) == {"high_lr"}
    message = next(f["message"] for f in document["findings"] if f["code"] == "high_lr")
    assert message.startswith("the learning rate 0.01 is high")
    assert document["step"]["frozen_changed"] == [] and document["step"]["trainable_changed"]


def test_check_on_a_file_saved_uncompiled_or_with_a_custom_loss(
    keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny(keras, "plain")
    freeze_first_conv(model, bn_trains=False)
    plain = tmp_path / "plain.keras"
    model.save(plain)
    code, document = check_file(plain, capsys)
    assert code == 0 and document["findings"] == [], document
    assert document["step"]["trainable_changed"] > 0

    def my_loss(y_true: Any, y_pred: Any) -> Any:  # not registered: Keras cannot load it
        return keras.ops.mean(keras.ops.square(y_pred))

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=my_loss)
    custom = tmp_path / "custom_loss.keras"
    model.save(custom)
    from kfreeze_tui.cli import run

    code = run(["check", str(custom), "--no-step"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "the compile settings saved in custom_loss.keras could not be restored" in (captured.err)
    assert "no findings" in captured.out
