"""A head on a chosen output of a model that returns a dict (named by its key), and no head
at all (``--head none``): the model exported as it is, for the user's own task model."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec, attachment, new_totals, placement, validate
from kfreeze_tui.core.plan.phases import CompileSpec, Phase
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.check import one_step, synthetic_batch
from kfreeze_tui.core.train.export import ExportRequest


def trainable_count(model: Any) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


@pytest.fixture(scope="module")
def two_outputs(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model returning a dict, as keras-hub backbones do: a sequence and a pooled vector,
    its keys unlike its layers' names; saved as two_outputs.keras."""
    tokens = keras.Input((None,), dtype="int32", name="token_ids")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(50, 16, name="embed")(tokens)
    x = keras.layers.Dense(16, activation="relu", name="encode")(x)
    x = keras.layers.Multiply(name="masked")(
        [x, keras.layers.Reshape((-1, 1), name="mask_axis")(mask)]
    )
    sequence = keras.layers.Dense(16, name="project")(x)
    pooled = keras.layers.Dense(8, activation="tanh", name="pool_dense")(
        keras.layers.GlobalAveragePooling1D(name="pool")(sequence)
    )
    model = keras.Model(
        {"token_ids": tokens, "padding_mask": mask},
        {"sequence_output": sequence, "pooled_output": pooled},
        name="dict_model",
    )
    path = tmp_path_factory.mktemp("dict") / "two_outputs.keras"
    model.save(path)
    return path


def test_the_walk_names_each_key_of_the_outputs(two_outputs: Path, keras: Any) -> None:
    model = keras.saving.load_model(two_outputs)
    info = walk(model)
    # Keras's own answer: the layer whose output each key's tensor is.
    expected = {
        key: next(layer.name for layer in model.layers if layer.output is tensor)
        for key, tensor in model.output.items()
    }
    assert (
        dict(info.output_keys)
        == expected
        == {
            "sequence_output": "project",
            "pooled_output": "pool_dense",
        }
    )
    assert [key for key, _ in info.output_keys] == list(model.output)
    assert info.input_keys == tuple(model.input) and set(info.input_keys) == {
        "token_ids",
        "padding_mask",
    }


def test_a_head_on_an_output_named_by_its_key(two_outputs: Path, keras: Any) -> None:
    info = walk(keras.saving.load_model(two_outputs))
    on_pooled = HeadSpec(replace="pooled_output", classes=3)
    assert validate(info, on_pooled) == []
    where = placement(info, on_pooled)
    assert where is not None and where.replaced_output is not None
    assert where.replaced_output.name == "pool_dense"
    # pool_dense is no classifier (8 tanh units): the head takes its output, as a head on
    # BERT's pooled_output does.
    assert where.attach.layer.name == "pool_dense" and where.replaced == ()
    assert [row.name for row in where.dropped] == ["project"]
    # The feature layer by key: the sequence, pooled over its positions.
    on_sequence = HeadSpec(feature_layer="sequence_output", classes=3)
    found = attachment(info, on_sequence)
    assert found is not None and found.layer.name == "project"
    assert found.shape == (None, None, 16)
    # A key that is not one is refused with the outputs listed by layer and key.
    (problem,) = validate(info, HeadSpec(replace="pooled_outptu"))
    assert "pool_dense (pooled_output)" in problem
    assert "did you mean 'pooled_output'" in problem or 'did you mean "pooled_output"' in problem


def test_no_head_exports_the_model_as_it_is(two_outputs: Path, keras: Any, tmp_path: Path) -> None:
    from kfreeze_tui.core.model.loading import load

    session = ModelSession(load(str(two_outputs)))
    boundary = session.info.find("project").path
    head = HeadSpec(kind="none", classes=1, activation="softmax")  # the rest does not apply
    assert validate(session.info, head) == []
    plan = FreezePlan(boundary=boundary)
    totals = new_totals(session.view, plan, head)
    assert totals is not None and totals.head == 0
    request = ExportRequest(tmp_path / "base.keras", tmp_path / "base.toml", tmp_path / "base.py")
    result = session.export(LoadOptions(), plan, head, CompileSpec(), request)
    assert result.verification is not None and result.step is not None
    # The one-step proof ran on a model with no loss of its own: the trainable weights moved.
    assert result.step.trainable_changed > 0 and result.step.frozen_changed == []
    exported = keras.saving.load_model(request.model_path)
    original = keras.saving.load_model(two_outputs)
    assert not exported.compiled
    assert [layer.name for layer in exported.layers] == [layer.name for layer in original.layers]
    assert list(exported.output) == list(original.output)
    # What trains is the plan's: the layers from the boundary on (Keras counts them).
    trainable = sum(
        math.prod(v.shape)
        for name in ("project", "pool_dense")
        for v in original.get_layer(name).trainable_weights
    )
    assert trainable_count(exported) == totals.trainable == trainable
    x, _ = synthetic_batch(original, 2)
    for key, value in original(x).items():
        np.testing.assert_array_equal(np.asarray(exported(x)[key]), np.asarray(value))
    assert 'kind = "none"' in request.plan_path.read_text()
    script = request.script_path.read_text()
    assert "model = base" in script and "model.compile(" not in script.split("def train")[0]


def test_the_no_head_script_builds_and_trains_with_a_loss(
    two_outputs: Path, tmp_path: Path
) -> None:
    from kfreeze_tui.core.model.loading import load

    session = ModelSession(load(str(two_outputs)))
    plan = FreezePlan(boundary=session.info.find("project").path)
    request = ExportRequest(tmp_path / "base.keras", script_path=tmp_path / "base.py")
    session.export(LoadOptions(), plan, HeadSpec(kind="none"), CompileSpec(), request)
    probe = (
        "import math, runpy\n"
        "import numpy as np\n"
        "import tensorflow as tf\n"
        f"script = runpy.run_path({str(request.script_path)!r})\n"
        "model = script['model']\n"
        "print(sum(math.prod(v.shape) for v in model.trainable_weights))\n"
        "x = {'token_ids': np.ones((4, 5), 'int32'), 'padding_mask': np.ones((4, 5), 'int32')}\n"
        "y = {'sequence_output': np.zeros((4, 5, 16), 'float32'),"
        " 'pooled_output': np.zeros((4, 8), 'float32')}\n"
        "data = tf.data.Dataset.from_tensors((x, y))\n"
        "loss = {'sequence_output': 'mse', 'pooled_output': 'mse'}\n"
        "history = script['train'](data, loss=loss, epochs=1, verbose=0)\n"
        "print(int(model.optimizer.iterations.numpy()), len(history.history['loss']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    count, steps = out.stdout.strip().splitlines()[-2:]
    assert int(count) == session.view.totals(plan).trainable
    assert steps == "1 1"


def test_no_head_refuses_phases(two_outputs: Path, tmp_path: Path) -> None:
    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.model.loading import load

    session = ModelSession(load(str(two_outputs)))
    boundary = session.info.find("project").path
    session.set_training_plan((Phase(boundary, 1), Phase(None, 1)))
    with pytest.raises(PlanError, match="there is no head"):
        session.export(
            LoadOptions(),
            FreezePlan(boundary=boundary),
            HeadSpec(kind="none"),
            CompileSpec(),
            ExportRequest(tmp_path / "m.keras"),
        )
    assert list(tmp_path.iterdir()) == []


def test_export_command_with_no_head_and_apply_of_its_plan(
    run_cli: Any, two_outputs: Path, tmp_path: Path, keras: Any
) -> None:
    out = tmp_path / "out.keras"
    result = run_cli(
        "export", str(two_outputs), "--freeze-before", "project", "--head", "none",
        "-o", str(out), "--plan", str(tmp_path / "p.toml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "head: none (the model as it is" in result.stdout
    replayed = tmp_path / "replayed.keras"
    result = run_cli("apply", str(tmp_path / "p.toml"), "-o", str(replayed))
    assert result.returncode == 0, result.stderr
    assert trainable_count(keras.saving.load_model(replayed)) == trainable_count(
        keras.saving.load_model(out)
    )
    # A head on an output named by its key, from the command line.
    result = run_cli(
        "export", str(two_outputs), "--freeze-before", "project",
        "--replace-output", "pooled_output", "--classes", "3", "-o", str(tmp_path / "c.keras"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "replaces pool_dense" in result.stdout or "pool_dense" in result.stdout
    built = keras.saving.load_model(tmp_path / "c.keras")
    assert isinstance(built.input, dict)  # it takes a dict, as the base does
    assert built.get_layer("head_output").output.shape == (None, 3)
    assert built.get_layer("head_output").input.shape == (None, 8)  # pool_dense's output


def test_one_step_on_a_dict_model_without_a_loss(two_outputs: Path, keras: Any) -> None:
    model = keras.saving.load_model(two_outputs)
    model.get_layer("embed").trainable = False
    step = one_step(model)
    frozen = len(model.get_layer("embed").weights)
    assert step.frozen_unchanged == frozen and step.frozen_changed == []
    assert step.trainable_changed == len(model.trainable_weights)
    assert step.trainable_unchanged == []
