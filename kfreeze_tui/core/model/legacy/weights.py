"""The weights of a legacy file, loaded into the Keras 3 model rebuilt from its config.

From HDF5, layer by layer by layer name, each weight assigned with ``Variable.assign`` once its
shape is checked; from a tf.keras 2.13-2.15 archive, by the archive's own paths, through
``Model.load_weights``.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import LegacyError, first_line
from kfreeze_tui.core.model.legacy.repairs import Repair


def load_h5_weights(model: Any, path: Path, source: str) -> None:
    """Load an HDF5 model file's weights into ``model``, layer by layer, by layer name.

    Within a layer, weights are matched by name (``kernel``, ``moving_mean`` ...) in the order
    Keras 2 wrote them (trainable, then non-trainable); every weighted layer must be found and
    every shape must agree.

    Raises:
        LegacyError: a layer's weights are missing or do not fit.
    """
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        wanted = {
            layer.name: layer.trainable_weights + layer.non_trainable_weights
            for layer in model.layers
            if layer.trainable_weights or layer.non_trainable_weights
        }
        _check_layers(group, set(wanted), source)
        for name, variables in wanted.items():
            _load_layer(group[name], name, variables, source)


def _check_layers(group: Any, wanted: set[str], source: str) -> None:
    """Refuse a file whose weighted layers are not the model's."""
    stored = [_text(name) for name in group.attrs.get("layer_names", [])]
    with_weights = {
        name
        for name in stored
        if name in group and len(group[name].attrs.get("weight_names", [])) > 0
    }
    missing = sorted(wanted - with_weights)
    extra = sorted(with_weights - wanted)
    if missing or extra:
        what = (
            f"no weights for {', '.join(missing[:3])}"
            if missing
            else (f"weights for {', '.join(extra[:3])}, which the model does not have")
        )
        raise LegacyError(
            f"{source} has {what}, so its weights do not fit the architecture it stores",
            "save the model again with model.save()",
            kind="weights",
        )


def _load_layer(layer_group: Any, name: str, variables: list[Any], source: str) -> None:
    """Assign one layer's stored weights to its variables, matched by name, shapes checked."""
    import numpy as np

    names = [_text(n) for n in layer_group.attrs["weight_names"]]
    values = [np.asarray(layer_group[n]) for n in names]
    order = _match_weights(names, variables)
    if len(values) != len(variables):
        raise LegacyError(
            f"{source} stores {len(values)} weights for layer {name}, whose Keras 3 "
            f"rebuild has {len(variables)}",
            "the layer changed between Keras versions; save it again with model.save()",
            kind="weights",
        )
    for variable, index in zip(variables, order, strict=True):
        value = values[index]
        if tuple(value.shape) != tuple(variable.shape):
            raise LegacyError(
                f"{source} stores {names[index]} with shape {tuple(value.shape)}, but "
                f"the Keras 3 layer {name} needs {tuple(variable.shape)}",
                "the file may come from Keras 1 or another backend; save it again "
                "with model.save() in the Keras that wrote it",
                kind="weights",
            )
        variable.assign(value.astype(variable.dtype))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def _match_weights(stored: list[str], variables: list[Any]) -> list[int]:
    """For each variable, the index of its stored weight: by short name when the names agree
    (``kernel``, ``bias`` ... in the order they come), by position otherwise."""
    stored_short = [_short(name) for name in stored]
    wanted_short = [_short(str(variable.name)) for variable in variables]
    if sorted(stored_short) != sorted(wanted_short):
        return list(range(len(variables)))
    seen: Counter[str] = Counter()
    order = []
    for short in wanted_short:
        positions = [i for i, name in enumerate(stored_short) if name == short]
        order.append(positions[seen[short]])
        seen[short] += 1
    return order


def load_archive_weights(model: Any, archive: zipfile.ZipFile, source: str) -> list[Repair]:
    """Load the weights of a tf.keras 2.13-2.15 archive, by the archive's own paths.

    Those archives name weights by position and class (``layers/conv2d/vars/0``), as Keras 3
    does; files saved on Windows have backslashes in those paths, which are turned into
    slashes (and reported).

    Raises:
        LegacyError: the weights do not fit the model.
    """
    import h5py

    repairs: list[Repair] = []
    with tempfile.TemporaryDirectory(prefix="kfreeze-legacy-") as folder:
        target = Path(folder) / "model.weights.h5"
        with archive.open("model.weights.h5") as member, target.open("wb") as out:
            shutil.copyfileobj(member, out)
        with h5py.File(target, "r") as handle:
            backslashed = [name for name in handle if "\\" in name]
        if backslashed:
            fixed = Path(folder) / "fixed.weights.h5"
            _copy_with_slashes(target, fixed)
            target = fixed
            repairs.append(
                Repair(
                    "windows_paths",
                    "turned backslashes in the weight paths into slashes (a file saved on Windows)",
                )
            )
        try:
            model.load_weights(str(target))
        except Exception as exc:
            raise LegacyError(
                f"{source} has weights that do not fit the architecture it stores "
                f"({first_line(exc)})",
                "save the model again with model.save()",
                kind="weights",
            ) from exc
    return repairs


def _copy_with_slashes(source: Path, target: Path) -> None:
    import h5py

    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        for key, value in old.attrs.items():
            new.attrs[key] = value

        def copy(name: str, item: Any) -> None:
            path = name.replace("\\", "/")
            if isinstance(item, h5py.Dataset):
                new.create_dataset(path, data=item[()])
            else:
                group = new.require_group(path)
                for key, value in item.attrs.items():
                    group.attrs[key] = value

        old.visititems(copy)
