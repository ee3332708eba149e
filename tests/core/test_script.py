"""The generated script's data pipeline: the architecture's own preprocess_input, an image
folder through load_images, and the script run as a program that trains on that folder."""

from __future__ import annotations

import functools
import importlib
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfreeze_tui.core import catalog
from kfreeze_tui.core.build import CompileSpec
from kfreeze_tui.core.export import ExportRequest
from kfreeze_tui.core.head import HeadSpec
from kfreeze_tui.core.loading import LoadOptions, load
from kfreeze_tui.core.plan import FreezePlan
from kfreeze_tui.core.script import preprocess_function
from kfreeze_tui.core.session import ModelSession

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
