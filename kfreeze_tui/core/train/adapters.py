"""LoRA export without the trap: the deployable file and the adapters saved apart.

Saving a LoRA model to ``.keras`` merges A.B into each kernel; on loading, a layer whose
config still says ``lora_rank`` gets A and B both zero, whose gradients are exactly zero:
resumed LoRA training would silently train nothing. So an export with LoRA writes two files:

- ``NAME.keras``, the deployable model: each kernel holds W + A.B (Keras merges it), and every
  layer loads as a plain layer (``lora_rank`` is taken out of the file's config). It loads
  in bare Keras and gives the LoRA model's outputs; there is no zero adapter in it to train.
- ``NAME.lora.npz``, the training state apart from the base: the LoRA A and B matrices, every
  other trainable weight (the head, the biases), and BatchNormalization's moving statistics,
  each named by its variable path (``transformer_layer_0/self_attention_layer/query/
  lora_kernel_b``). The script rebuilds the base from the source, puts freeze and LoRA on it
  again and loads this file: training resumes with live adapters.

The functions under "shared with the script" are copied into the generated script by
:func:`script_source` (one implementation for both): they import only what they use, inside.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import ExportError
from kfreeze_tui.core.runtime.keras_private import (
    enable_lora_on,
    find_layers,
    make_holders_trainable,
    set_sublayer_flags,
)

#: What the adapters file's name adds to the model file's stem.
ADAPTERS_SUFFIX = ".lora.npz"
#: The last part of the path of a LoRA matrix.
LORA_NAMES = ("lora_kernel_a", "lora_kernel_b", "lora_embeddings_a", "lora_embeddings_b")


def adapters_path(model_path: Path) -> Path:
    """``out.lora.npz`` beside ``out.keras``."""
    return model_path.with_name(model_path.stem + ADAPTERS_SUFFIX)


def copy_model(model: Any) -> Any:
    """A copy of ``model`` with the same layers, paths and weights, sharing nothing with it
    (Keras's ``enable_lora`` cannot be undone: the session's model must never get it)."""
    from kfreeze_tui.core.runtime.process import import_keras

    keras = import_keras()
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    copy.set_weights(model.get_weights())
    return copy


def lora_matrices(model: Any) -> list[Any]:
    """The LoRA A and B variables of ``model``, in its weights' order."""
    return [v for v in model.weights if str(v.path).rsplit("/", 1)[-1] in LORA_NAMES]


# -- shared with the script: self-contained, plain Python ------------------------------------


def state_variables(model):  # noqa: ANN001, ANN201
    """The variables the adapters file holds: every trainable weight (LoRA's A and B, the
    head, the biases) and BatchNormalization's moving statistics (fit updates them); each
    named by its path, which must be unique."""
    chosen = {}
    for variable in model.weights:
        name = str(variable.path)
        last = name.rsplit("/", 1)[-1]
        if variable.trainable or last in ("moving_mean", "moving_variance"):
            if name in chosen and chosen[name] is not variable:
                raise ValueError(f"two weights of the model have the path {name}")
            chosen[name] = variable
    return chosen


def save_adapters(model, path):  # noqa: ANN001, ANN201
    """Write the LoRA adapters and the rest of the training state (see state_variables) to
    the ``.npz`` file ``path``, through a temporary file and a rename."""
    import os

    import numpy as np

    path = str(path)
    arrays = {name: np.asarray(v.numpy()) for name, v in state_variables(model).items()}
    temp = f"{path}.tmp-{os.getpid()}.npz"
    try:
        with open(temp, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return len(arrays)


def load_adapters(model, path):  # noqa: ANN001, ANN201
    """Load what save_adapters wrote into ``model``, built with the same freeze and LoRA:
    every variable by its path, shapes checked; refuses a file that does not fit, or whose
    LoRA matrices the model has no trainable LoRA for."""
    import numpy as np

    wanted = state_variables(model)
    with np.load(str(path), allow_pickle=False) as data:
        names = set(data.files)
        missing = sorted(set(wanted) - names)
        if missing:
            raise ValueError(
                f"{path} has no weight {missing[0]} ({len(missing)} missing): it was saved "
                "from a model with another plan or LoRA"
            )
        # LoRA matrices the model has no place for would be lost without a word (a phased
        # plan's first phases go without LoRA: set_phase of a phase with it puts it on).
        unplaced = sorted(n for n in names - set(wanted) if n.rsplit("/", 1)[-1][:5] == "lora_")
        if unplaced:
            raise ValueError(
                f"{path} has LoRA weights the model has no LoRA for ({unplaced[0]}): put LoRA "
                "on the same layers first"
            )
        for name, variable in wanted.items():
            value = data[name]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{path}: weight {name} has shape {tuple(value.shape)}, the model's "
                    f"{tuple(variable.shape)}"
                )
            variable.assign(value)
    return len(wanted)


def rewrite_config(keras_file, edit, make_temp=None):  # noqa: ANN001, ANN201
    """Rewrite a saved ``.keras`` file's ``config.json`` through a temporary file beside it:
    ``edit(node)`` sees every dict of the config, depth first, and returns what it changed
    in it (a list, empty for nothing); the file is rewritten only when something changed.
    ``make_temp()`` names the temporary file (default: the file's name, ``.tmp-PID``).
    Returns the list of all changes."""
    import json
    import os
    import zipfile

    keras_file = str(keras_file)
    changes = []

    def visit(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            changes.extend(edit(node))
            for value in list(node.values()):
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    with zipfile.ZipFile(keras_file) as source:
        config = json.loads(source.read("config.json"))
        visit(config)
        if not changes:
            return changes
        temp = str(make_temp()) if make_temp else f"{keras_file}.tmp-{os.getpid()}.keras"
        try:
            with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as target:
                for item in source.infolist():
                    data = source.read(item.filename)
                    if item.filename == "config.json":
                        data = json.dumps(config).encode("utf-8")
                    target.writestr(item, data)
        except BaseException:
            if os.path.exists(temp):
                os.remove(temp)
            raise
    os.replace(temp, keras_file)
    return changes


def strip_lora(keras_file):  # noqa: ANN001, ANN201
    """Make every layer of a saved ``.keras`` file load as a plain layer: its kernel already
    holds W + A.B (Keras merges it on saving), and a layer loaded with ``lora_rank`` would
    get A and B both zero, which train nothing. Returns how many layers it changed."""

    def no_rank(node):  # noqa: ANN001, ANN202
        if not node.get("lora_rank"):
            return []
        node["lora_rank"] = None
        return [node.get("name")]

    return len(rewrite_config(keras_file, no_rank))


_SHARED = (
    state_variables,
    save_adapters,
    load_adapters,
    rewrite_config,
    strip_lora,
)
_FIND = (find_layers, make_holders_trainable)


def script_source(lora: bool = True, sublayers: bool = False) -> list[str]:
    """The shared functions' source, as lines of the generated script: the LoRA helpers,
    and the step that sets flags inside subclassed layers (each finds layers by their
    chains of names with the same ``find_layers``)."""
    functions = [
        *(_SHARED if lora else ()),
        *(_FIND if lora or sublayers else ()),
        *((enable_lora_on,) if lora else ()),
        *((set_sublayer_flags,) if sublayers else ()),
    ]
    lines: list[str] = []
    for function in functions:
        text = re.sub(r"  # noqa: [A-Z0-9, ]+", "", inspect.getsource(function))
        lines += ["", "", *text.rstrip("\n").split("\n")]
    return lines


def save_adapters_checked(model: Any, path: Path) -> int:
    """:func:`save_adapters`, its refusals as an :class:`ExportError`."""
    try:
        return int(save_adapters(model, path))
    except ValueError as exc:
        raise ExportError(f"the LoRA adapters cannot be saved: {exc}") from exc


def load_adapters_checked(model: Any, path: Path) -> int:
    """:func:`load_adapters`, its refusals as an :class:`ExportError`."""
    try:
        return int(load_adapters(model, path))
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
