"""The generated script's data pipeline: the architecture's own preprocess_input, an image
folder through load_images, and the script run as a program that trains on that folder."""

from __future__ import annotations

import ast
import functools
import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfreeze_tui.core.model import catalog
from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.export import ExportRequest
from kfreeze_tui.core.train.script import preprocess_function

SMALL = LoadOptions(weights="none", input_shape=(32, 32, 3))


def resolve(keras: Any, dotted: str) -> Any:
    """``keras.applications.resnet.preprocess_input`` as the script's ``import keras`` sees it."""
    assert dotted.startswith("keras.")
    return functools.reduce(getattr, dotted.split(".")[1:], keras)


def test_every_architecture_gets_its_own_preprocess_input(keras: Any) -> None:
    for arch in catalog.architectures():
        named = resolve(keras, preprocess_function(arch.name) or "")
        # Keras defines each architecture's preprocess_input beside its constructor.
        defining = importlib.import_module(getattr(keras.applications, arch.name).__module__)
        assert named is defining.preprocess_input, arch.name
    # What the Keras documentation names for some of them.
    expected = {
        "ResNet50": keras.applications.resnet.preprocess_input,
        "ResNet50V2": keras.applications.resnet_v2.preprocess_input,
        "MobileNetV2": keras.applications.mobilenet_v2.preprocess_input,
        "EfficientNetB0": keras.applications.efficientnet.preprocess_input,
        "EfficientNetV2S": keras.applications.efficientnet_v2.preprocess_input,
        "InceptionV3": keras.applications.inception_v3.preprocess_input,
        "VGG16": keras.applications.vgg16.preprocess_input,
    }
    for name, function in expected.items():
        assert resolve(keras, preprocess_function(name.lower()) or "") is function, name
    assert preprocess_function("models/resnet50.keras") is None


def _write_images(keras: Any, folder: Path, classes: dict[str, int], seed: int = 0) -> None:
    """PNG files of random pixels, 40x48 (the model's input is 32x32: they are resized)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            tf.io.write_file(str(folder / name / f"{i}.png"), tf.io.encode_png(pixels))


@pytest.fixture(scope="module")
def mobilenet_script(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNetV2 at 32x32 (its preprocess_input scales to [-1, 1]), exported with a script,
    and a folder of images beside it: train/ and val/, two classes."""
    folder = tmp_path_factory.mktemp("script")
    session = ModelSession(load("mobilenetv2", SMALL))
    plan = FreezePlan(boundary=session.info.find("block_16_project").path)
    request = ExportRequest(folder / "ft.keras", script_path=folder / "ft.py")
    session.export(SMALL, plan, HeadSpec(classes=2), CompileSpec(), request)
    _write_images(keras, folder / "data" / "train", {"cats": 3, "dogs": 3})
    _write_images(keras, folder / "data" / "val", {"cats": 1, "dogs": 1}, seed=1)
    _write_images(keras, folder / "data" / "three", {"a": 1, "b": 1, "c": 1}, seed=2)
    return folder


def test_load_images_preprocesses_as_keras_does(mobilenet_script: Path, keras: Any) -> None:
    script = runpy.run_path(str(mobilenet_script / "ft.py"))
    text = (mobilenet_script / "ft.py").read_text()
    assert "keras.applications.mobilenet_v2.preprocess_input(images)" in text
    batch = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1])
    images, same = script["preprocess"](batch.copy(), labels)
    reference = keras.applications.mobilenet_v2.preprocess_input(batch.copy())
    np.testing.assert_allclose(np.asarray(images), reference, rtol=0, atol=1e-6)
    assert same is labels
    # The folder, through load_images: resized to the input, preprocessed, labels by folder.
    data = script["load_images"](str(mobilenet_script / "data" / "train"), shuffle=False)
    x, y = next(iter(data))
    assert tuple(x.shape) == (6, 32, 32, 3) and list(np.asarray(y)) == [0, 0, 0, 1, 1, 1]
    raw = keras.utils.image_dataset_from_directory(
        str(mobilenet_script / "data" / "train"), image_size=(32, 32), shuffle=False
    )
    expected = keras.applications.mobilenet_v2.preprocess_input(next(iter(raw))[0])
    np.testing.assert_allclose(np.asarray(x), np.asarray(expected), atol=1e-6)
    assert float(np.min(x)) >= -1.0 and float(np.max(x)) <= 1.0
    # A folder whose classes the head is not for is one sentence, before any training.
    with pytest.raises(ValueError, match="has 3 class folders, but the model is for 2 classes"):
        script["load_images"](str(mobilenet_script / "data" / "three"))


def test_the_script_trains_on_an_image_folder(mobilenet_script: Path, keras: Any) -> None:
    result = subprocess.run(
        [sys.executable, "ft.py", "data/train", "--val", "data/val", "--epochs", "2",
         "--save", "trained.keras"],
        capture_output=True, text=True, timeout=600, cwd=mobilenet_script, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]  # a quiet first run
    assert "Epoch 2/2" in result.stdout and "val_loss" in result.stdout
    assert "saved trained.keras" in result.stdout
    trained = keras.saving.load_model(mobilenet_script / "trained.keras")
    assert trained.optimizer.iterations.numpy() == 2  # one batch of 6 images, two epochs
    assert trained.get_layer("head_output").output.shape == (None, 2)


DEEP_LAYERS = 3_000


@pytest.fixture(scope="module")
def deep_script(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-layer chain (Input, Dense, then Identity layers: cheap to build and load),
    saved as base.keras, exported from that folder as the user typed ``base.keras``, with the
    script beside it."""
    from kfreeze_tui.core.model.loading import LoadedModel

    folder = tmp_path_factory.mktemp("deep")
    inputs = keras.Input((4,), name="features")
    x = keras.layers.Dense(4, name="first")(inputs)
    for i in range(DEEP_LAYERS - 2):
        x = keras.layers.Identity(name=f"step_{i}")(x)
    base = keras.Model(inputs, x, name="deep")
    base.save(folder / "base.keras")
    session = ModelSession(LoadedModel(base, "base.keras", "deep"))
    head = HeadSpec(feature_layer=f"step_{DEEP_LAYERS - 3}", dropout=0.0, classes=2)
    request = ExportRequest(folder / "ft.keras", script_path=folder / "ft.py")
    before = Path.cwd()
    os.chdir(folder)  # the model is named as typed, relative to the working folder
    try:
        session.export(LoadOptions(), FreezePlan(boundary=(1,)), head, CompileSpec(), request)
    finally:
        os.chdir(before)
    return folder


def test_the_script_of_a_very_deep_model_trains_from_another_folder(
    deep_script: Path, tmp_path: Path
) -> None:
    text = (deep_script / "ft.py").read_text()
    assert 'MODEL = HERE / "base.keras"' in text
    assert "sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))" in text
    # Another folder, holding another file of the same name (not a model at all).
    (tmp_path / "base.keras").write_bytes(b"")
    probe = (
        "import runpy, sys\n"
        "import numpy as np\n"
        "import tensorflow as tf\n"
        f"script = runpy.run_path({str(deep_script / 'ft.py')!r}, run_name='__main__')\n"
        "x = np.random.default_rng(0).normal(size=(4, 4)).astype('float32')\n"
        "data = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 0, 1]))).batch(4)\n"
        "script['train'](data, epochs=1, verbose=0)\n"
        "print('steps', int(script['model'].optimizer.iterations.numpy()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "steps 1"
    assert lines[-2].startswith(f"deep_finetune: {DEEP_LAYERS + 1} layers")


def _script_for(
    small_model: Any, source: str, script_dir: Path, load: LoadOptions, legacy: bool = False
) -> str:
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.plan.freeze import PlanView
    from kfreeze_tui.core.train.script import python_script

    view = PlanView(walk(small_model))
    head = HeadSpec(classes=2)
    plan = FreezePlan(boundary=view.info.find("block2_conv").path)
    return python_script(
        source, load, view, plan, head, CompileSpec(), legacy=legacy, script_dir=script_dir
    )


def test_the_script_names_its_files_from_its_own_folder(
    small_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    # Below the script's folder: relative to it.
    text = _script_for(small_model, "out/models/small.keras", out, LoadOptions())
    assert 'HERE = Path(__file__).resolve().parent\nMODEL = HERE / "models/small.keras"' in text
    assert "base = keras.saving.load_model(MODEL, compile=False)" in text
    assert "from pathlib import Path\n\nimport keras\n" in text
    # Elsewhere: by its absolute path, with no HERE.
    text = _script_for(small_model, "small.keras", out, LoadOptions(unsafe=True))
    assert f'MODEL = Path("{tmp_path / "small.keras"}")' in text and "HERE" not in text
    assert "load_model(MODEL, compile=False, safe_mode=False)" in text
    # A legacy file: its Keras 3 copy, and the conversion in the script's folder.
    text = _script_for(small_model, "out/old.h5", out, LoadOptions(), legacy=True)
    assert 'MODEL = HERE / "old_keras3.keras"' in text
    assert "#     kfreeze convert old.h5 -o old_keras3.keras" in text
    # An architecture with a weights file.
    weights = LoadOptions(weights="out/w.weights.h5", input_shape=(32, 32, 3))
    text = _script_for(small_model, "mobilenetv2", out, weights)
    assert 'WEIGHTS = HERE / "w.weights.h5"' in text and "weights=str(WEIGHTS)," in text
    # No file at all: no HERE, no pathlib, and nothing about recursion for a shallow model.
    text = _script_for(small_model, "mobilenetv2", out, SMALL)
    assert "Path" not in text and "HERE" not in text and "setrecursionlimit" not in text
    ast.parse(text)


def test_graph_depth_of_a_chain_is_its_length(small_model: Any) -> None:
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.train.script import graph_depth

    assert graph_depth(walk(small_model)) == len(small_model.layers)  # one layer after another


def test_the_script_and_the_snippet_unfreeze_what_the_source_froze(
    keras: Any, tmp_path: Path
) -> None:
    """A model file whose last layers were saved frozen: the plan trains them, and so must
    the script and the snippet (``base.trainable = True`` on a base already True runs no
    setter in Keras, and a layer frozen inside it would stay frozen)."""
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.plan.freeze import PlanView
    from kfreeze_tui.core.train.snippet import freeze_snippet

    inputs = keras.Input((6,), name="x")
    x = keras.layers.Dense(5, name="first")(inputs)
    x = keras.layers.Dense(4, name="second")(x)
    outputs = keras.layers.Dense(3, name="third")(x)
    model = keras.Model(inputs, outputs, name="saved_frozen")
    model.get_layer("third").trainable = False
    model.save(tmp_path / "frozen_top.keras")

    session = ModelSession(load(str(tmp_path / "frozen_top.keras")))
    plan = FreezePlan(boundary=session.info.find("second").path)
    planned = session.view.totals(plan).trainable
    assert planned == 4 * 5 + 4 + 3 * 4 + 3  # second and third train
    request = ExportRequest(tmp_path / "ft.keras", script_path=tmp_path / "ft.py")
    session.export(LoadOptions(), plan, HeadSpec(kind="none"), CompileSpec(), request)
    script = runpy.run_path(str(request.script_path))
    trained = sum(int(np.prod(v.shape)) for v in script["model"].trainable_weights)
    assert trained == planned
    reloaded = keras.saving.load_model(tmp_path / "frozen_top.keras")
    assert not reloaded.get_layer("third").trainable  # as the file has it
    exec(freeze_snippet(PlanView(walk(reloaded)), plan), {"model": reloaded})
    assert sum(int(np.prod(v.shape)) for v in reloaded.trainable_weights) == planned
