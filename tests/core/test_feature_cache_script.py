"""``kfreeze export --cache-features``: the script's cached features, run in a fresh process.

The assembled model's outputs must equal the trainable part applied to the features read back
from the shards (and to the frozen part's own output), the frozen weights must stay bitwise
unchanged while the trainable ones move, a stopped caching run must resume to the same
features, a directory made for another plan must be refused, and a phase that unfreezes below
the cut must train the whole model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec, parse_phase
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.export import ExportRequest

#: Run in a fresh Python inside the export's folder: trains from the cache and prints FACTS.
PROBE = """
import json, runpy, sys
import keras
import numpy as np
import tensorflow as tf

script = runpy.run_path(sys.argv[1])
model = script["model"]
size = model.inputs[0].shape[1]
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (40, size, size, 3)).astype("float32")
y = rng.integers(0, 3, 40)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
initial = {w.path: w.numpy().copy() for w in model.weights}
facts = {}
facts["cached"] = script["cache_features"](ds, "cache", verbose=False)
snapshots = []


def values():
    return {w.path: w.numpy().copy() for w in model.weights}


class Snap(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        snapshots.append(("begin", self.model.name, values()))

    def on_train_end(self, logs=None):
        snapshots.append(("end", self.model.name, values()))


kwargs = {} if "PHASES" in script else {"epochs": 2}
history = script["train"](ds, verbose=0, cache_dir="cache", callbacks=[Snap()], **kwargs)
facts["epochs"] = len(history["loss"])
full = model(x, training=False).numpy()
two = script["top_model"](model)(script["feature_model"](model)(x, training=False), training=False)
with np.load("cache/shard-00000.npz") as shard:
    keys = sorted((k for k in shard.files if k.startswith("features_")), key=lambda k: int(k[9:]))
    features = [shard[key] for key in keys]
    facts["labels_kept"] = bool(np.array_equal(shard["labels_0"], y))
facts["feature_shapes"] = [list(f.shape[1:]) for f in features]
top = script["top_model"](model)
cached = top(features[0] if len(features) == 1 else features, training=False).numpy()
facts["vs_two_parts"] = float(np.abs(full - np.asarray(two)).max())
facts["vs_cached"] = float(np.abs(full - cached).max())
# Frozen in the last phase (so in every phase): bitwise unchanged.
facts["frozen_changed"] = [
    w.path for w in model.non_trainable_weights if not np.array_equal(w.numpy(), initial[w.path])
]
facts["frozen_count"] = len(model.non_trainable_weights)
facts["trainable_moved"] = sum(
    not np.array_equal(w.numpy(), initial[w.path]) for w in model.trainable_weights
)
facts["fits"] = []
for (_, name, before), (_, _, after) in zip(snapshots[0::2], snapshots[1::2]):
    moved = sorted({p.split("/")[0] for p in before if not np.array_equal(before[p], after[p])})
    facts["fits"].append({"model": name, "moved": moved})
print("FACTS " + json.dumps(facts))
"""

#: Resume: a run that stopped after some shards (a temporary file left behind) goes on to
#: the same features as an uninterrupted run; another plan's directory is refused.
RESUME = """
import json, os, runpy, shutil, sys
import numpy as np
import tensorflow as tf

script = runpy.run_path(sys.argv[1])
other = runpy.run_path(sys.argv[2])
script["cache_features"].__globals__["SHARD_BATCHES"] = 2
rng = np.random.default_rng(1)
x = rng.uniform(-1, 1, (44, 16, 16, 3)).astype("float32")
y = rng.integers(0, 3, 44)
w = rng.uniform(0, 1, 44).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(4)
script["cache_features"](ds, "whole", verbose=False)
manifest = json.loads(open("whole/manifest.json").read())
facts = {"shards": len(manifest["shards"])}
shutil.copytree("whole", "stopped")
state = json.loads(open("stopped/manifest.json").read())
state["shards"] = state["shards"][:3]
state["complete"] = False
open("stopped/manifest.json", "w").write(json.dumps(state))
for name in sorted(os.listdir("stopped"))[4:]:
    if name.startswith("shard-"):
        os.remove(os.path.join("stopped", name))
open("stopped/.shard-00003.npz.tmp", "wb").write(b"half")
facts["resumed"] = script["cache_features"](ds, "stopped", verbose=False)
same = []
for shard in manifest["shards"]:
    with np.load("whole/" + shard["file"]) as a, np.load("stopped/" + shard["file"]) as b:
        equal = all(np.array_equal(a[k], b[k]) for k in a.files)
        same.append(sorted(a.files) == sorted(b.files) and equal)
facts["same"] = same
with np.load("whole/shard-00000.npz") as a:
    facts["files"] = sorted(a.files)
    facts["weights_kept"] = bool(np.array_equal(a["weights_0"], w[:8]))
# Training reads the weights back from the shards (through tf.data) with the labels.
history = script["train"](ds, epochs=1, verbose=0, cache_dir="whole")
facts["weighted_epochs"] = len(history["loss"])
try:
    other["cache_features"](ds, "whole", verbose=False)
    facts["refused"] = None
except ValueError as error:
    facts["refused"] = str(error)
print("FACTS " + json.dumps(facts))
"""

#: Reading the cache back: the frozen part is traced once for every batch size and gives
#: predict_on_batch's features; cached_dataset gives every example once an epoch with its
#: label and weight, in memory (a small cache: read once) or from the shards.
READ = """
import json, os, runpy, shutil, sys
import numpy as np
import tensorflow as tf

script = runpy.run_path(sys.argv[1])
script["cache_features"].__globals__["SHARD_BATCHES"] = 2
model = script["model"]
frozen = script["feature_model"](model)
rng = np.random.default_rng(2)
x = rng.uniform(-1, 1, (43, 16, 16, 3)).astype("float32")
y = rng.integers(0, 3, 43)
ids = np.arange(43, dtype="float32")  # the sample weights: each example's number
ds = tf.data.Dataset.from_tensor_slices((x, y, ids)).batch(8)  # the last batch holds 3
facts = {}
predict = script["_predictor"](frozen)
outputs = [np.asarray(predict(x[i : i + 8])) for i in range(0, 43, 8)]
facts["traces"] = int(predict.function.experimental_get_tracing_count())
expected = np.concatenate([frozen.predict_on_batch(x[i : i + 8]) for i in range(0, 43, 8)])
facts["vs_predict_on_batch"] = float(np.abs(np.concatenate(outputs) - expected).max())
# uint8 images go in as Keras would take them (cast to the input's dtype).
pixels = rng.integers(0, 255, (4, 16, 16, 3)).astype("uint8")
facts["uint8"] = float(np.abs(np.asarray(predict(pixels)) - frozen.predict_on_batch(
    pixels.astype("float32"))).max())
facts["cached"] = script["cache_features"](ds, "cache", verbose=False)
facts["shards"] = len(json.loads(open("cache/manifest.json").read())["shards"])
features = np.concatenate([
    np.load(os.path.join("cache", name))["features_0"]
    for name in sorted(os.listdir("cache")) if name.endswith(".npz")
])
facts["vs_frozen"] = float(np.abs(features - expected).max())


def epochs(data, count=2):
    runs = []
    for _ in range(count):
        batches = [[np.asarray(part) for part in batch] for batch in data]
        got = np.concatenate([b[2] for b in batches]).astype(int)
        feats = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        runs.append({
            "order": got.tolist(),
            "sizes": [len(b[1]) for b in batches],
            "rows_right": bool(np.array_equal(feats, features[got])),
            "labels_right": bool(np.array_equal(labels, y[got])),
        })
    return runs


for name, memory in (("memory", True), ("shards", False), ("default", None)):
    for shuffle in (True, False):
        data = script["cached_dataset"]("cache", shuffle=shuffle, in_memory=memory)
        facts[f"{name}_{shuffle}"] = epochs(data)
# The default reads a small cache once: it still gives its batches with the files gone.
shutil.copytree("cache", "gone")
kept = script["cached_dataset"]("gone")
script["cached_dataset"].__globals__["IN_MEMORY_BYTES"] = 0
streamed = script["cached_dataset"]("gone")
for name in os.listdir("gone"):
    if name.endswith(".npz"):
        os.remove(os.path.join("gone", name))
facts["kept_after_removal"] = sum(len(np.asarray(b[1])) for b in kept)
try:
    sum(1 for _ in streamed)
    facts["streamed_after_removal"] = "read"
except Exception as error:  # the shard files are read every epoch
    facts["streamed_after_removal"] = type(error).__name__
print("FACTS " + json.dumps(facts))
"""


def _facts(code: str, folder: Path, *args: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=900, cwd=folder, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("FACTS "))
    return dict(json.loads(line.removeprefix("FACTS ")))


@pytest.fixture(scope="module")
def small_exports(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv model with BatchNormalization and Dropout before the cut at ``c2``,
    exported three ways: cut at c2 (ft.py), cut at c3 (other.py), and phases head then c2
    (phased.py)."""
    folder = tmp_path_factory.mktemp("cache_small")
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c3")(x)
    base = keras.Model(inputs, x, name="small")
    base.save(folder / "small.keras")
    options = LoadOptions()
    session = ModelSession(load(str(folder / "small.keras"), options))
    head = HeadSpec(classes=3)
    info = session.info
    for name, boundary in (("ft", "c2"), ("other", "c3")):
        request = ExportRequest(
            folder / f"{name}.keras", script_path=folder / f"{name}.py", cache_features=True
        )
        plan = FreezePlan(boundary=info.find(boundary).path)
        session.export(options, plan, head, CompileSpec(), request)
    session.set_training_plan([parse_phase("head:1:1e-2", info), parse_phase("c2:1:1e-2", info)])
    request = ExportRequest(
        folder / "phased.keras", script_path=folder / "phased.py", cache_features=True
    )
    session.export(options, FreezePlan(boundary=None), head, CompileSpec(), request)
    return folder


def _assert_trained_from_cache(facts: dict[str, Any]) -> None:
    assert facts["cached"] == 40 and facts["labels_kept"]
    assert facts["vs_two_parts"] <= 1e-6
    assert facts["vs_cached"] <= 1e-6
    assert facts["frozen_changed"] == [] and facts["frozen_count"] > 0
    assert facts["trainable_moved"] > 0


def test_the_small_model_trains_from_its_cached_features(small_exports: Path) -> None:
    text = (small_exports / "ft.py").read_text()
    assert 'FEATURE_TENSORS = ["drop"]' in text
    folder = small_exports / "run_ft"
    folder.mkdir()
    facts = _facts(PROBE, folder, str(small_exports / "ft.py"))
    _assert_trained_from_cache(facts)
    assert facts["epochs"] == 2
    # One fit, of the trainable part: c1 and bn1 (before the cut) never moved.
    assert [fit["model"] for fit in facts["fits"]] == ["top"]
    assert set(facts["fits"][0]["moved"]) >= {"c2", "c3", "head_output"}
    assert not {"c1", "bn1", "bn2"} & set(facts["fits"][0]["moved"])


def test_a_stopped_cache_resumes_and_another_plans_is_refused(small_exports: Path) -> None:
    folder = small_exports / "run_resume"
    folder.mkdir()
    facts = _facts(RESUME, folder, str(small_exports / "ft.py"), str(small_exports / "other.py"))
    assert facts["shards"] == 6  # 11 batches of 4, 2 per shard
    assert facts["resumed"] == 44
    assert facts["same"] == [True] * 6
    assert facts["files"] == ["features_0", "labels_0", "weights_0"]
    assert facts["weights_kept"]
    assert facts["weighted_epochs"] == 1
    assert facts["refused"] is not None
    assert "holds features of another model, plan or cut" in facts["refused"]


def test_phases_train_the_cache_then_the_whole_model(small_exports: Path) -> None:
    text = (small_exports / "phased.py").read_text()
    assert "CACHED_PHASES = [True, False]" in text
    assert 'FEATURE_TENSORS = ["c3"]' in text  # the whole base frozen: where the head attaches
    folder = small_exports / "run_phased"
    folder.mkdir()
    facts = _facts(PROBE, folder, str(small_exports / "phased.py"))
    assert facts["cached"] == 40 and facts["labels_kept"]
    assert facts["vs_two_parts"] <= 1e-6
    # Phase 2 trained c2 and c3, which made the cached features: the cache is stale now
    # (its fingerprint holds the frozen weights, so cache_features refuses to extend it).
    assert facts["vs_cached"] > 1e-4
    first, second = facts["fits"]
    assert first["model"] == "top" and set(first["moved"]) == {"head_output"}
    assert second["model"] != "top"
    assert {"c2", "c3", "head_output"} <= set(second["moved"])
    assert not {"c1", "bn1", "bn2"} & set(second["moved"])


def test_mobilenetv2_trains_from_its_cached_features(
    keras: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("cache_mobilenet")
    options = LoadOptions(weights="none", input_shape=(32, 32, 3))
    session = ModelSession(load("mobilenetv2", options))
    plan = FreezePlan(boundary=session.info.find("block_13_expand").path)
    request = ExportRequest(folder / "mn.keras", script_path=folder / "mn.py", cache_features=True)
    session.export(options, plan, HeadSpec(classes=3), CompileSpec(), request)
    assert 'FEATURE_TENSORS = ["block_12_add"]' in (folder / "mn.py").read_text()
    facts = _facts(PROBE, folder, str(folder / "mn.py"))
    _assert_trained_from_cache(facts)
    assert not any(name.startswith("block_12") for name in facts["fits"][0]["moved"])


def test_the_cache_is_read_back_whole_in_memory_or_from_its_shards(small_exports: Path) -> None:
    folder = small_exports / "run_read"
    folder.mkdir()
    facts = _facts(READ, folder, str(small_exports / "ft.py"))
    # One trace for batches of 8 and of 3 (predict_on_batch traces again for the last).
    assert facts["traces"] == 1
    assert facts["vs_predict_on_batch"] <= 1e-6 and facts["uint8"] <= 1e-5
    assert facts["cached"] == 43 and facts["shards"] == 3  # 6 batches, 2 per shard
    assert facts["vs_frozen"] <= 1e-6
    for name in ("memory", "shards", "default"):
        shuffled, fixed = facts[f"{name}_True"], facts[f"{name}_False"]
        for epoch in (*shuffled, *fixed):
            assert sorted(epoch["order"]) == list(range(43)), name
            assert epoch["rows_right"] and epoch["labels_right"], name
            assert epoch["sizes"] == [8, 8, 8, 8, 8, 3], name
        assert [epoch["order"] for epoch in fixed] == [list(range(43))] * 2, name
        first, second = (epoch["order"] for epoch in shuffled)
        assert first != second and first != list(range(43)), name
    assert facts["kept_after_removal"] == 43
    assert facts["streamed_after_removal"] != "read"


def _export(path: Path, boundary: str | None, folder: Path) -> Path:
    """The model file at PATH exported with --cache-features (the cut before BOUNDARY, or
    the whole base frozen) to FOLDER/ft.py."""
    options = LoadOptions()
    session = ModelSession(load(str(path), options))
    plan = FreezePlan(boundary=None if boundary is None else session.info.find(boundary).path)
    request = ExportRequest(folder / "ft.keras", script_path=folder / "ft.py", cache_features=True)
    session.export(options, plan, HeadSpec(classes=3), CompileSpec(), request)
    return folder / "ft.py"


def test_a_cut_inside_a_residual_block_caches_both_crossing_tensors(
    keras: Any, tmp_path: Path
) -> None:
    inputs = keras.Input((16, 16, 3), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    a = keras.layers.BatchNormalization(name="bn1")(a)
    a = keras.layers.ReLU(name="r1")(a)
    b = keras.layers.Conv2D(4, 3, padding="same", name="c2")(a)
    b = keras.layers.ReLU(name="r2")(b)
    b = keras.layers.Conv2D(4, 3, padding="same", name="c3")(b)
    c = keras.layers.Add(name="add")([a, b])
    c = keras.layers.ReLU(name="r3")(c)
    c = keras.layers.Conv2D(8, 3, padding="same", name="c4")(c)
    keras.Model(inputs, c, name="resid").save(tmp_path / "resid.keras")
    script = _export(tmp_path / "resid.keras", "c3", tmp_path)
    # The shortcut (r1) and the main path (r2) both cross a cut before c3.
    assert 'FEATURE_TENSORS = ["r1", "r2"]' in script.read_text()
    run = tmp_path / "run"
    run.mkdir()
    facts = _facts(PROBE, run, str(script))
    _assert_trained_from_cache(facts)
    assert facts["feature_shapes"] == [[16, 16, 4], [16, 16, 4]]
    assert set(facts["fits"][0]["moved"]) >= {"c3", "c4", "head_output"}
    assert not {"c1", "bn1", "c2"} & set(facts["fits"][0]["moved"])


def _wrapped(keras: Any, folder: Path, pool: str = "gap") -> Path:
    """A base model nested in the model, as Keras's transfer-learning guide builds it (its
    pooling layer named POOL)."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    base = keras.Model(inputs, keras.layers.ReLU(name="r2")(x), name="base")
    pixels = keras.Input((16, 16, 3), name="pixels")
    y = base(keras.layers.Rescaling(1 / 255, name="scale")(pixels), training=False)
    y = keras.layers.GlobalAveragePooling2D(name=pool)(y)
    y = keras.layers.Dense(5, activation="softmax", name="old_head")(y)
    keras.Model(pixels, y, name="outer").save(folder / "outer.keras")
    return folder / "outer.keras"


@pytest.mark.parametrize("boundary", [None, "gap"])
def test_a_nested_base_frozen_whole_trains_from_the_cache(
    keras: Any, tmp_path: Path, boundary: str | None
) -> None:
    # Head only: the head reads gap's output. A cut before gap: base's output crosses it,
    # and base.output is the tensor of base's own graph, so the script takes gap.input.
    script = _export(_wrapped(keras, tmp_path), boundary, tmp_path)
    text = script.read_text()
    assert 'FEATURE_TENSORS = ["gap"]' in text
    if boundary is not None:
        assert "by the layers that read them (their .input)" in text
    run = tmp_path / "run"
    run.mkdir()
    facts = _facts(PROBE, run, str(script))
    _assert_trained_from_cache(facts)
    assert facts["feature_shapes"] == ([[6]] if boundary is None else [[16, 16, 6]])
    assert facts["fits"][0]["moved"] == ["head_output"]


@pytest.mark.parametrize("pool", ["gap", "r1"])
def test_a_cut_inside_a_nested_base_is_refused_in_one_sentence(
    keras: Any, tmp_path: Path, pool: str
) -> None:
    # r1 (inside base) crosses a cut before c2. With the model's own pooling layer named r1
    # too, the script's get_layer("r1") would find that one: refused all the same.
    from kfreeze_tui.core.errors import PlanError

    with pytest.raises(PlanError) as refused:
        _export(_wrapped(keras, tmp_path, pool), "c2", tmp_path)  # inside base
    message = str(refused.value)
    assert message.startswith(
        "--cache-features cannot be used: the cut is inside the nested model base"
    )
    assert "\n" not in message
    assert not (tmp_path / "ft.py").exists() and not (tmp_path / "ft.keras").exists()
