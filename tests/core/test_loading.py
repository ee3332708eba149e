"""Every way a source can fail to load gives one clear LoadError sentence."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.errors import LoadError
from kfreeze_tui.core.model.loading import LoadOptions, load, parse_input_shape


def _fails(source: str | Path, options: LoadOptions | None = None) -> LoadError:
    with pytest.raises(LoadError) as caught:
        load(str(source), options)
    error = caught.value
    sentence = error.sentence
    assert "\n" not in sentence and sentence.endswith(".")
    assert "Traceback" not in sentence and "File not found" not in sentence
    return error


@pytest.fixture(scope="module")
def lambda_files(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lambda")
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="times_two")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    files = {"keras": folder / "lambda.keras", "h5": folder / "lambda.h5"}
    for path in files.values():
        model.save(path)
    return files


@pytest.fixture(scope="module")
def custom_files(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models using a custom layer class that is not registered with Keras."""
    folder = tmp_path_factory.mktemp("custom")

    class Doubler(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2.0

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Doubler(name="doubler")(inputs)))
    files = {"keras": folder / "custom.keras", "h5": folder / "custom.h5"}
    for path in files.values():
        model.save(path)
    (folder / "layers.py").write_text(
        "import keras\n\n\n"
        "class Doubler(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 2.0\n"
    )
    files["module"] = folder / "layers.py"
    (folder / "broken.py").write_text("import keras\nraise RuntimeError('boom')\n")
    files["broken"] = folder / "broken.py"
    return files


def test_missing_path(tmp_path: Path) -> None:
    error = _fails(tmp_path / "nope.keras")
    assert error.kind == "missing" and "does not exist" in error.message


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    error = _fails(tmp_path)
    assert error.kind == "directory" and "directory" in error.message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.keras"
    path.write_bytes(b"")
    error = _fails(path)
    assert error.kind == "empty" and "empty" in error.message


def test_random_bytes_named_keras(tmp_path: Path) -> None:
    path = tmp_path / "random.keras"
    path.write_bytes(os.urandom(4096))
    error = _fails(path)
    assert error.kind == "format" and "neither a .keras archive nor an HDF5 file" in error.message


def test_truncated_keras(small_model_file: Path, tmp_path: Path) -> None:
    data = small_model_file.read_bytes()
    path = tmp_path / "truncated.keras"
    path.write_bytes(data[: len(data) // 2])
    error = _fails(path)
    assert error.kind == "truncated" and "truncated" in error.message


def test_zip_without_config(tmp_path: Path) -> None:
    path = tmp_path / "notes.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    error = _fails(path)
    assert "without config.json" in error.message


def test_weights_only_file(small_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "small.weights.h5"
    small_model.save_weights(path)
    error = _fails(path)
    assert error.kind == "weights-only" and "only weights" in error.message
    assert "load_weights" in error.hint


def test_savedmodel_directory(small_model: Any, tmp_path: Path) -> None:
    folder = tmp_path / "exported"
    small_model.export(str(folder), verbose=False)
    assert (folder / "saved_model.pb").exists()
    error = _fails(folder)
    assert error.kind == "savedmodel" and "SavedModel" in error.message
    assert "model.save('model.keras')" in error.hint


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_lambda_refused_without_unsafe(lambda_files: dict[str, Path], fmt: str) -> None:
    error = _fails(lambda_files[fmt])
    assert error.kind == "lambda" and "Lambda" in error.message and "--unsafe" in error.hint


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_lambda_allowed_with_unsafe(lambda_files: dict[str, Path], fmt: str) -> None:
    loaded = load(str(lambda_files[fmt]), LoadOptions(unsafe=True))
    assert any(layer.name == "times_two" for layer in loaded.model.layers)
    assert any("--unsafe" in warning for warning in loaded.warnings)
    # --unsafe is scoped to that load: Keras itself still refuses the Lambda afterwards
    # (kfreeze no longer switches safe mode off for the whole process).
    if fmt == "keras":
        import keras

        with pytest.raises(ValueError, match=r"(?i)lambda|unsafe|safe_mode"):
            keras.saving.load_model(lambda_files[fmt])


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_unregistered_custom_layer(custom_files: dict[str, Path], fmt: str) -> None:
    error = _fails(custom_files[fmt])
    assert error.kind == "custom"
    assert "Doubler" in error.message and "--custom-objects" in error.hint


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_custom_objects_file_makes_it_load(custom_files: dict[str, Path], fmt: str) -> None:
    loaded = load(str(custom_files[fmt]), LoadOptions(custom_objects=custom_files["module"]))
    assert [type(layer).__name__ for layer in loaded.model.layers][1] == "Doubler"


def test_custom_objects_file_that_fails_to_import(custom_files: dict[str, Path]) -> None:
    error = _fails(custom_files["keras"], LoadOptions(custom_objects=custom_files["broken"]))
    assert "RuntimeError: boom" in error.message


def test_unknown_catalog_name_suggests_close_names() -> None:
    error = _fails("resnet5")
    assert error.kind == "unknown" and "ResNet50" in error.hint


def test_catalog_name_any_case(keras: Any) -> None:
    loaded = load("mobilenetv3small", LoadOptions(weights="none"))
    assert loaded.architecture is not None and loaded.architecture.name == "MobileNetV3Small"
    assert loaded.random_weights
    assert tuple(loaded.model.input_shape) == (None, 224, 224, 3)


def test_input_shape_option(keras: Any) -> None:
    loaded = load("MobileNetV2", LoadOptions(weights="none", input_shape=(96, 96, 3)))
    assert tuple(loaded.model.input_shape) == (None, 96, 96, 3)


def test_input_shape_too_small_is_explained(keras: Any) -> None:
    error = _fails("vgg16", LoadOptions(weights="none", input_shape=(8, 8, 3)))
    assert error.kind == "shape" and "--input-shape" in error.hint


def test_missing_weights_file(tmp_path: Path) -> None:
    error = _fails("resnet50", LoadOptions(weights=str(tmp_path / "w.h5")))
    assert "weights file" in error.message


def test_weights_file_of_another_model(small_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "other.weights.h5"
    small_model.save_weights(path)
    error = _fails("mobilenetv3small", LoadOptions(weights=str(path)))
    assert error.kind == "weights" and "do not fit" in error.message


@pytest.mark.parametrize("text", ["224,224", "a,b,c", "0,224,3", ""])
def test_bad_input_shape(text: str) -> None:
    with pytest.raises(LoadError, match="three positive integers"):
        parse_input_shape(text)


def test_input_shape_forms() -> None:
    assert parse_input_shape("224,224,3") == (224, 224, 3)
    assert parse_input_shape("96x128x1") == (96, 128, 1)


def test_loads_a_keras_file(small_model_file: Path) -> None:
    loaded = load(str(small_model_file))
    assert loaded.model.name == "small_cnn" and not loaded.random_weights
    assert "small.keras" in loaded.description
