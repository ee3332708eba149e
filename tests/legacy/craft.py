"""Legacy files crafted from the ones ``tf_keras`` wrote: older layouts, and files to refuse.

Each function copies a file ``tf_keras`` wrote and changes one thing in it, the way an older
Keras (or a hostile archive) would have it. The oracle for a crafted file that should open is
the output ``tf_keras`` gave for the file it was made from.
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import h5py
import numpy as np

Config = dict[str, Any]


def h5_with_config(source: Path, target: Path, change: Callable[[Config], None]) -> Path:
    """A copy of an HDF5 model file whose stored config ``change`` has edited."""
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        change(config)
        handle.attrs["model_config"] = json.dumps(config)
    return target


def archive_copy(
    source: Path,
    target: Path,
    config: Callable[[Config], None] | None = None,
    weights: Callable[[Path, Path], None] | None = None,
    extra: list[tuple[str, bytes]] | None = None,
) -> Path:
    """A copy of a ``.keras`` archive, its config and weights edited, members added."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == "config.json" and config is not None:
                document = json.loads(data)
                config(document)
                data = json.dumps(document).encode()
            if info.filename == "model.weights.h5" and weights is not None:
                folder = target.parent
                before, after = folder / f".{target.name}.in.h5", folder / f".{target.name}.out.h5"
                before.write_bytes(data)
                weights(before, after)
                data = after.read_bytes()
                before.unlink()
                after.unlink()
            new.writestr(info.filename, data)
        for name, data in extra or []:
            new.writestr(name, data)
    return target


def layers_of(config: Config) -> list[Config]:
    return config["config"]["layers"]


def named(config: Config, name: str) -> Config:
    return next(layer for layer in layers_of(config) if layer["config"]["name"] == name)


# -- layouts older Keras wrote (these must open) ---------------------------------------------


def keras22_layout(config: Config) -> None:
    """Keras 2.2: the top-level class is ``Model``; a nested Sequential's config is a bare list
    of layers, the first carrying ``batch_input_shape`` (no InputLayer)."""
    config["class_name"] = "Model"
    tower = named(config, "tower")
    layers = [layer for layer in tower["config"]["layers"] if layer["class_name"] != "InputLayer"]
    input_entry = next(
        entry for entry in tower["config"]["layers"] if entry["class_name"] == "InputLayer"
    )
    layers[0]["config"]["batch_input_shape"] = input_entry["config"]["batch_input_shape"]
    tower["config"] = layers


def wrappers_without_module(config: Config) -> None:
    """tf.keras up to 2.3: the layer inside Bidirectional / TimeDistributed has no module."""
    for layer in layers_of(config):
        inner = layer["config"].get("layer")
        if isinstance(inner, dict):
            inner.pop("module", None)
            inner.pop("registered_name", None)


def backslash_weight_paths(source: Path, target: Path) -> None:
    """tf.keras 2.13-2.15 on Windows: weight paths joined with backslashes."""
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:

        def copy(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                new.create_dataset(name.replace("/", "\\"), data=item[()])

        old.visititems(copy)


def keras224_teachable(config: Config) -> None:
    """The 2019 Teachable Machine export (tf.keras 2.2.4-tf): nested models of class ``Model``
    and initializer configs carrying ``"dtype": "float32"`` (TensorFlow 1's initializers)."""
    for entry in all_entries(config):
        if entry.get("class_name") == "Functional":
            entry["class_name"] = "Model"
        for value in (entry.get("config") or {}).values():
            if isinstance(value, dict) and str(value.get("module")) == "keras.initializers":
                value["config"]["dtype"] = "float32"
    tf24_layout(config)  # nor did it write modules


def tf24_layout(config: Any) -> None:
    """tf.keras 2.4 to 2.12 wrote no ``module``, ``registered_name`` or ``build_config``."""
    if isinstance(config, dict):
        for key in ("module", "registered_name", "build_config"):
            config.pop(key, None)
        for value in config.values():
            tf24_layout(value)
    elif isinstance(config, list):
        for value in config:
            tf24_layout(value)


def all_entries(config: Config) -> list[Config]:
    """Every layer entry, nested models' included."""
    found = []
    for entry in config["config"]["layers"]:
        found.append(entry)
        if isinstance(entry.get("config"), dict) and "layers" in entry["config"]:
            found += all_entries(entry)
    return found


def set_nested(layer_name: str, key: str, value: Any) -> Callable[[Config], None]:
    """``key`` set to ``value`` in the config of the layer ``layer_name``, at any depth, or
    in its kernel initializer's config when ``key`` starts with ``kernel_initializer.``."""

    def change(config: Config) -> None:
        entry = next(e for e in all_entries(config) if e["config"].get("name") == layer_name)
        target = entry["config"]
        if key.startswith("kernel_initializer."):
            target = target["kernel_initializer"]["config"]
        target[key.rsplit(".", 1)[-1]] = value

    return change


def unimportable_model_module(config: Config) -> None:
    """A Keras 3 subclassed model saved from a script: its class lives in that script's
    ``__main__``, which the reader's ``__main__`` is not."""
    config["module"] = "__main__"
    config["registered_name"] = config["class_name"]


# -- what must be refused --------------------------------------------------------------------


def lambda_code(code: str) -> Callable[[Config], None]:
    """The Lambda layer's code replaced by ``code`` (base64 marshal data)."""

    def change(config: Config) -> None:
        layer = next(entry for entry in layers_of(config) if entry["class_name"] == "Lambda")
        layer["config"]["function"][0] = code

    return change


def set_argument(layer_name: str, key: str, value: Any) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        named(config, layer_name)["config"][key] = value

    return change


def duplicate_config(source: Path, target: Path) -> Path:
    """A second ``config.json`` member, which some zip readers would take over the first."""
    other = json.dumps({"class_name": "Sequential", "config": {"layers": []}}).encode()
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")  # zipfile warns of the duplicate
        return archive_copy(source, target, extra=[("config.json", other)])


def pickled_npy(source: Path, target: Path) -> Path:
    """An asset holding a numpy array of Python objects (loading it needs pickle)."""
    buffer = BytesIO()
    np.save(buffer, np.array([{"run": "code"}], dtype=object), allow_pickle=True)
    return archive_copy(source, target, extra=[("assets/state.npy", buffer.getvalue())])


def pickled_member(source: Path, target: Path) -> Path:
    """A member that is a raw pickle."""
    return archive_copy(source, target, extra=[("assets/vocab.bin", pickle.dumps({"a": 1}))])
