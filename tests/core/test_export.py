"""Build, export, verify, replay: the exported model is what the plan says, and trains so."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfreeze_tui.core.errors import ExportError, PlanError
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.export import ExportRequest

NONE = LoadOptions(weights="none")
HEAD = HeadSpec(pooling="avg", dropout=0.0, classes=10, activation="softmax")


def trainable_count(model: Any) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


@pytest.fixture(scope="module")
def exported(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ResNet50 exported with the boundary at conv5_block1_1_conv, BatchNorm trainable."""
    folder = tmp_path_factory.mktemp("export")
    session = ModelSession(load("resnet50", NONE))
    plan = FreezePlan(
        boundary=session.info.find("conv5_block1_1_conv").path, bn_policy=BNPolicy.TRAINABLE
    )
    request = ExportRequest(folder / "out.keras", folder / "out.toml", folder / "out.py")
    steps: list[str] = []
    result = session.export(NONE, plan, HEAD, CompileSpec(), request, steps.append)
    return {"folder": folder, "result": result, "steps": steps, "request": request}


def test_exported_resnet50_reloads_with_the_planned_counts(
    exported: dict[str, Any], keras: Any
) -> None:
    reloaded = keras.saving.load_model(exported["request"].model_path)
    assert len(reloaded.layers) == 177
    trainable = trainable_count(reloaded)
    assert (trainable, reloaded.count_params() - trainable) == (14_996_490, 8_611_712)
    verification = exported["result"].verification
    assert verification.trainable_params == 14_996_490 and verification.layers == 177
    assert [f.what for f in exported["result"].files] == ["model", "plan", "script"]
    assert exported["steps"][0] == "Building the model"
    assert any(step.startswith("Loading it back") for step in exported["steps"])
    assert reloaded.compiled and reloaded.optimizer.learning_rate.numpy() == pytest.approx(1e-4)


def test_export_proves_the_plan_with_one_step(exported: dict[str, Any], keras: Any) -> None:
    """The verification trains a copy one step: what is frozen stays, what trains moves."""
    reloaded = keras.saving.load_model(exported["request"].model_path)
    step = exported["result"].step
    trainable = len(reloaded.trainable_weights)
    # BatchNormalization trains here: the moving statistics of stage 5's 30 BN layers move
    # with the batch and are neither frozen nor trainable weights.
    statistics = 2 * sum(
        1 for layer in reloaded.layers
        if layer.name.startswith("conv5") and layer.name.endswith("_bn")
    )  # fmt: skip
    assert step.trainable_changed == trainable and step.trainable_unchanged == []
    assert step.frozen_unchanged == len(reloaded.weights) - trainable - statistics
    assert step.frozen_changed == [] and step.bn_stats_changed == []
    assert exported["result"].verification.checks[-1] == step.summary()
    assert "Training one step on a copy to prove the plan" in exported["steps"]


def test_default_policy_keeps_stage5_batchnorm_frozen(keras: Any, tmp_path: Path) -> None:
    session = ModelSession(load("resnet50", NONE))
    plan = FreezePlan(boundary=session.info.find("conv5_block1_1_conv").path)
    session.export(NONE, plan, HEAD, CompileSpec(), ExportRequest(tmp_path / "m.keras"))
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    info = walk(reloaded)
    stage5_bn = [r for r in info.layers if r.is_batch_norm and r.name.startswith("conv5")]
    assert len(stage5_bn) == 10
    assert all(not r.trainable and r.trainable_params == 0 for r in stage5_bn)
    assert info.trainable_params == 14_953_472 + 20_490


def test_one_training_step_moves_exactly_the_trainable_weights(keras: Any, tmp_path: Path) -> None:
    # A small model with BatchNormalization both sides of the boundary keeps this step fast.
    options = LoadOptions(weights="none", input_shape=(64, 64, 3))
    session = ModelSession(load("mobilenetv2", options))
    plan = FreezePlan(boundary=session.info.find("block_14_expand").path)  # BN after: frozen
    request = ExportRequest(tmp_path / "m.keras", savedmodel_path=tmp_path / "m_savedmodel")
    result = session.export(options, plan, HEAD, CompileSpec(learning_rate=1e-2), request)
    assert (tmp_path / "m_savedmodel" / "saved_model.pb").is_file()
    assert [f.what for f in result.files] == ["model", "SavedModel"]
    model = keras.saving.load_model(request.model_path)  # the exported file itself
    before = {id(v): np.array(v) for v in model.weights}
    trainable_ids = {id(v) for v in model.trainable_weights}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 10, size=(8,))
    model.train_on_batch(x, y)
    changed = {id(v) for v in model.weights if not np.array_equal(before[id(v)], np.array(v))}
    frozen = [v for v in model.weights if id(v) not in trainable_ids]
    assert any("moving_mean" in v.path for v in frozen)  # frozen statistics are checked too
    assert not [v.path for v in frozen if id(v) in changed]
    assert not [v.path for v in model.trainable_weights if id(v) not in changed]


def test_script_rebuilds_the_same_model(exported: dict[str, Any], keras: Any) -> None:
    script = exported["request"].script_path
    probe = (
        "import json, math, runpy\n"
        "import keras, numpy as np\n"
        f"script = runpy.run_path({str(script)!r})\n"
        "model = script['model']\n"
        "trainable = {id(v) for v in model.trainable_weights}\n"
        "rows = [(l.name, sum(math.prod(v.shape) for v in l.weights if id(v) in trainable))"
        " for l in model.layers]\n"
        # ResNet50's preprocess_input: RGB to BGR, minus the imagenet mean (caffe mode).
        "x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype('float32')\n"
        "ours = np.asarray(script['preprocess'](x.copy(), None)[0])\n"
        "theirs = keras.applications.resnet.preprocess_input(x.copy())\n"
        "diff = float(np.max(np.abs(ours - theirs)))\n"
        "moved = float(np.max(np.abs(ours - x)))\n"
        "print(json.dumps({'rows': rows, 'compiled': model.compiled, 'diff': diff,"
        " 'moved': moved}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    rebuilt = json.loads(result.stdout.strip().splitlines()[-1])
    reloaded = walk(keras.saving.load_model(exported["request"].model_path))
    # The input layer's automatic name depends on how many models a process built before.
    assert len(rebuilt["rows"]) == len(reloaded.top_level)
    assert [tuple(r) for r in rebuilt["rows"]][1:] == [
        (row.name, row.trainable_params) for row in reloaded.top_level
    ][1:]
    assert rebuilt["compiled"]
    assert rebuilt["diff"] == 0.0 and rebuilt["moved"] > 50  # it is applied, and it is Keras's


def test_script_for_a_nested_base(wrapped_base: Any, tmp_path: Path, keras: Any) -> None:
    path = tmp_path / "wrapped.keras"
    wrapped_base.save(path)
    session = ModelSession(load(str(path)))
    plan = FreezePlan(boundary=(0, 143))
    request = ExportRequest(tmp_path / "out.keras", script_path=tmp_path / "out.py")
    result = session.export(LoadOptions(), plan, HeadSpec(classes=3), CompileSpec(), request)
    assert result.verification is not None
    # The wrapped base ends in a classifier: the head goes on its pooled features.
    reloaded = keras.saving.load_model(request.model_path)
    assert reloaded.layers[-1].name == "head_output"
    expected = session.view.totals(plan).trainable - 10 * 2048 - 10 + (2048 * 3 + 3)
    assert trainable_count(reloaded) == expected
    probe = (
        "import math, runpy\n"
        f"m = runpy.run_path({str(request.script_path)!r})['model']\n"
        "print(sum(math.prod(v.shape) for v in m.trainable_weights))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert int(out.stdout.strip().splitlines()[-1]) == expected


def test_multi_output_model_export(multi_io_model: Any, tmp_path: Path, keras: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadedModel

    session = ModelSession(LoadedModel(multi_io_model, "multi", "multi"))
    head = HeadSpec(feature_layer="merge", classes=2, activation="sigmoid")
    plan = FreezePlan(boundary=session.info.find("merge").path)
    request = ExportRequest(tmp_path / "multi.keras")
    session.export(LoadOptions(), plan, head, CompileSpec(), request)
    reloaded = keras.saving.load_model(request.model_path)
    assert len(reloaded.inputs) == 2 and reloaded.output.shape == (None, 2)
    assert trainable_count(reloaded) == (4 + 4) * 2 + 2  # only the head trains


def test_a_kept_output_is_the_models_own(multi_io_model: Any, tmp_path: Path, keras: Any) -> None:
    """keep: the exported model outputs the head's and then mask_out, which equals the
    original model's mask_out on the same input (the weights are the model's); the counts
    are Keras's, the step proof passes, and the script and the plan rebuild the same."""
    import runpy

    from kfreeze_tui.core.model.loading import LoadedModel
    from kfreeze_tui.core.plan import planfile
    from kfreeze_tui.core.plan.head import new_totals

    base_path = tmp_path / "multi_io.keras"
    multi_io_model.save(base_path)
    session = ModelSession(LoadedModel(multi_io_model, str(base_path), "multi"))
    head = HeadSpec(classes=2, activation="sigmoid", keep=("mask_out",))
    plan = FreezePlan(boundary=session.info.find("merge").path)
    request = ExportRequest(tmp_path / "kept.keras", tmp_path / "kept.toml", tmp_path / "kept.py")
    result = session.export(LoadOptions(), plan, head, CompileSpec(), request)
    assert result.step is not None and result.step.ok
    reloaded = keras.saving.load_model(request.model_path)
    assert reloaded.output_names == ["head_output", "mask_out"]
    totals = new_totals(session.view, plan, head)
    assert totals is not None
    assert (totals.total, totals.trainable) == (reloaded.count_params(), trainable_count(reloaded))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 16, 16, 3)), rng.standard_normal((2, 4))]
    inputs = [array.astype("float32") for array in inputs]
    original = multi_io_model.predict(inputs, verbose=0)[1]
    assert np.array_equal(reloaded.predict(inputs, verbose=0)[1], original)
    # The plan and the script carry the same choice.
    doc = planfile.read(request.plan_path)
    assert (doc.head.replace, doc.head.keep) == ("class_out", ("mask_out",))
    script_model = runpy.run_path(str(request.script_path))["model"]
    assert script_model.output_names == ["head_output", "mask_out"]
    assert trainable_count(script_model) == totals.trainable


def test_refuses_to_overwrite(exported: dict[str, Any]) -> None:
    target = exported["request"].model_path
    stamp = target.stat().st_mtime_ns
    session = ModelSession(load("mobilenetv3small", NONE))
    with pytest.raises(ExportError, match="exists already; pass --force"):
        session.export(NONE, FreezePlan(), HEAD, CompileSpec(), ExportRequest(target))
    assert target.stat().st_mtime_ns == stamp


def test_invalid_head_writes_nothing(tmp_path: Path) -> None:
    session = ModelSession(load("mobilenetv3small", NONE))
    with pytest.raises(PlanError, match="Softmax over 1 class"):
        session.export(
            NONE,
            FreezePlan(),
            HeadSpec(classes=1),
            CompileSpec(),
            ExportRequest(tmp_path / "m.keras"),
        )
    assert list(tmp_path.iterdir()) == []


def test_mixed_precision_head_stays_float32(keras: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadedModel
    from kfreeze_tui.core.train.build import build_model
    from kfreeze_tui.core.train.script import python_script

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, dtype="mixed_float16", name="conv")(inputs)
    model = keras.Model(inputs, x, name="mixed")
    session = ModelSession(LoadedModel(model, "mixed", "mixed"))
    built = build_model(
        model, session.view, FreezePlan(), HeadSpec(classes=3), CompileSpec(enabled=False)
    )
    assert built.get_layer("conv").compute_dtype == "float16"
    assert built.get_layer("head_output").compute_dtype == "float32"
    assert built.output.dtype == "float32"
    script = python_script(
        "mixed.keras",
        LoadOptions(),
        session.view,
        FreezePlan(),
        HeadSpec(classes=3),
        CompileSpec(),
        mixed_precision=True,
    )
    assert 'dtype="float32", name="head_output"' in script


def test_an_unwritable_folder_is_one_sentence(small_model: Any) -> None:
    from kfreeze_tui.core.train.export import export

    # /proc refuses new files even to root, as a read-only or full disk would.
    with pytest.raises(ExportError, match="could not write"):
        export(small_model, ExportRequest(Path("/proc/kfreeze-test.keras")))
    assert not Path("/proc/kfreeze-test.keras").exists()


LOAD_AND_FIT = """
import json, sys, warnings
import numpy as np
import keras

out = {}
for path in sys.argv[1:]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(path)
    loaded = [str(w.message) for w in caught]
    x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype("float32")
    history = model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    out[path] = {"warnings": loaded, "optimizer": type(model.optimizer).__name__,
                 "steps": int(model.optimizer.iterations.numpy()),
                 "loss": float(history.history["loss"][0])}
print(json.dumps(out))
"""


def test_the_exported_file_loads_silently_and_trains(
    small_model: Any, tmp_path: Path, keras: Any
) -> None:
    """An optimizer saved before its first step made every load warn "Skipping variable
    loading for optimizer 'adam'"; one plain Keras file saved so shows the probe hears it."""
    from kfreeze_tui.core.model.loading import LoadedModel
    from kfreeze_tui.core.plan.phases import Phase

    head = HeadSpec(classes=3)
    session = ModelSession(LoadedModel(small_model, "small.keras", "small"))
    boundary = session.info.find("block1_conv").path
    adam = tmp_path / "adam.keras"
    session.export(LoadOptions(), FreezePlan(boundary=boundary), head, CompileSpec(),
                   ExportRequest(adam))  # fmt: skip
    # Phase 1 with a range of rates: a MultiOptimizer, one Adam per rate.
    session.set_training_plan((Phase(boundary, 1, lr_range=(1e-5, 1e-4)), Phase(None, 1)))
    multi = tmp_path / "multi.keras"
    session.export(LoadOptions(), FreezePlan(), head, CompileSpec(), ExportRequest(multi))
    plain = tmp_path / "plain.keras"
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(plain)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", LOAD_AND_FIT, str(adam), str(multi), str(plain)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Skipping variable loading" not in result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out[str(adam)]["warnings"] == [] and out[str(multi)]["warnings"] == []
    assert out[str(adam)]["optimizer"] == "Adam"
    assert out[str(multi)]["optimizer"] == "MultiOptimizer"
    assert out[str(adam)]["steps"] == out[str(multi)]["steps"] == 1
    assert all(math.isfinite(entry["loss"]) for entry in out.values())
    assert any("Skipping variable loading" in w for w in out[str(plain)]["warnings"])
