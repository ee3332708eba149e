"""Model files written before Keras 3: read, repaired into Keras 3 configs, and refused clearly.

Keras 3 refuses most files that Keras 2 and tf.keras wrote, for mechanical reasons: arguments
it no longer takes, at Keras 2's default (``groups=1`` on DepthwiseConv2D, ``time_major=False``
on LSTM, ``noise_shape=None`` on SpatialDropout2D, ``dtype='float32'`` in Keras 2.2's
initializer configs), older names (``batch_input_shape``, class ``Model``), older layouts (nested
models numbered from 1, a Sequential config that is a bare list, one-element input and output
lists, HDF5 inside a file named ``.keras``, the tf.keras 2.13-2.15 ``.keras`` archive), older
nodes (tensors among a call's arguments, ``initial_state`` packed into an RNN's inputs), and
tf.keras's op layers (``TFOpLambda``, rebuilt as ``keras.ops`` calls by
:mod:`kfreeze_tui.core.model.legacy.ops`), and Keras 2's ``hard_sigmoid``
(clip(0.2x + 0.5, 0, 1); Keras 3's is clip(x/6 + 0.5, 0, 1)), kept exactly by scaling by 1.2
the loaded weights that make its input (the gate columns of an LSTM or GRU, a Dense's kernel
and bias). This module reads the
stored config without running anything from the file, applies named repairs (each one
reported, never silent), builds the model with Keras 3's public API and loads the weights: from
HDF5 by layer name, from an archive by the archive's own paths.

A change that would alter what the model computes is not a repair: it is refused with a
sentence (``time_major=True``, ``groups=4`` where Keras 3 has no groups, ``hard_sigmoid`` where
no weights of its layer make its input, as in an ``Activation`` layer, ``tf.shape``, which a
Keras 3 model has no operation for), as is what cannot be opened safely (a Lambda whose code
another Python version marshalled, a subclassed model whose architecture is not in the file).

Only public Keras API is used: ``keras.saving.deserialize_keras_object`` (which takes legacy
layer entries, those without ``module``, through Keras's own legacy deserializer),
``Model.load_weights`` for archives and ``Variable.assign`` for HDF5 weights (and for the
weights scaled for ``hard_sigmoid``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import shutil
import struct
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LegacyError
from kfreeze_tui.core.model.legacy.ops import OP_CLASSES

#: Classes whose config is a whole model (their ``layers`` are layer entries).
MODEL_CLASSES = ("Functional", "Model", "Sequential")
#: Keys under which a layer config holds the config of another layer (wrappers, RNN cells).
INNER_LAYER_KEYS = ("layer", "backward_layer", "cell")
#: Arguments that Keras 3's classes no longer take, with the default Keras 2 gave them (read
#: from tf_keras's and tf.compat.v1's signatures; a test checks both facts). Dropped where Keras 3
#: refuses them and the value is that default, which is what Keras 3 computes; any other value
#: is refused by name. Layers, and the initializer, regularizer and constraint configs inside
#: them (Keras 2.2's initializers carried ``dtype``).
NEUTRAL_ARGUMENTS: dict[str, Any] = {
    "groups": 1,
    "time_major": False,
    "noise_shape": None,
    "fused": None,
    "virtual_batch_size": None,
    "adjustment": None,
    "dynamic": False,
    "conv_op": None,
    "force_generator": False,
    "rng_type": None,
    "robust_masking": False,
    "softmax_robust_masking": False,
    "sparse": False,
    "dtype": "float32",
    "trainable": True,
}
#: What Keras 3's Layer takes out of ``**kwargs`` (not named in its signature).
LAYER_KWARGS = frozenset({"input_shape", "input_dim"})
#: Activations that Keras 3 computes otherwise than Keras 2 did under the same name, with
#: Keras 2's formula and Keras 3's (a test compares every activation the two share).
CHANGED_ACTIVATIONS: dict[str, tuple[str, str]] = {
    "hard_sigmoid": ("clip(0.2 * x + 0.5, 0, 1)", "clip(x / 6 + 0.5, 0, 1)"),
}
#: Keras 2's hard_sigmoid(z) is Keras 3's hard_sigmoid(1.2 * z): where z is affine in the
#: weights of the layer that applies it, scaling those weights by 1.2 keeps what it computes.
HARD_SIGMOID_SCALE = 1.2
_AFFINE = ("kernel", "bias")
_RECURRENT = ("kernel", "recurrent_kernel", "bias")
#: Where Keras 2's hard_sigmoid is kept exactly, by Keras 3 class and activation argument: the
#: weights that make its input, and (number of gates in their last axis, the gates it applies
#: to), or None for every column. RNN layers are listed with their cells (the weights live in
#: the cell); a gate's columns are Keras's [i, f, c, o] (LSTM) and [z, r, h] (GRU).
HARD_SIGMOID_WEIGHTS: dict[
    tuple[str, str], tuple[tuple[str, ...], tuple[int, tuple[int, ...]] | None]
] = {
    **{
        (name, "activation"): (_AFFINE, None)
        for name in (
            "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
            "Conv2DTranspose", "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D",
        )
    },
    ("SeparableConv1D", "activation"): (("pointwise_kernel", "bias"), None),
    ("SeparableConv2D", "activation"): (("pointwise_kernel", "bias"), None),
    ("SimpleRNN", "activation"): (_RECURRENT, None),
    ("SimpleRNNCell", "activation"): (_RECURRENT, None),
    **{
        (name, "recurrent_activation"): (_RECURRENT, (4, (0, 1, 3)))
        for name in ("LSTM", "LSTMCell", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "ConvLSTMCell")
    },
    **{
        (name, "recurrent_activation"): (_RECURRENT, (3, (0, 1)))
        for name in ("GRU", "GRUCell")
    },
    **{(name, "activation"): (_RECURRENT, (3, (2,))) for name in ("GRU", "GRUCell")},
}  # fmt: skip
#: Why hard_sigmoid cannot be kept where no weights of the layer make its whole input.
HARD_SIGMOID_REFUSED: dict[str, str] = {
    **{
        name: "applies it to the cell state too, which is not affine in the layer's weights"
        for name in ("LSTM", "LSTMCell", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
    },
    "Activation": "has no weights that make its input",
}
#: The Keras 3 modules where the class of an object inside a layer config is looked up.
OBJECT_MODULES = ("initializers", "regularizers", "constraints")
#: Arguments Keras 2 stored for some layers but never used (its SeparableConv kept the plain
#: convolution's kernel settings; its kernels are the depthwise and pointwise ones).
UNUSED_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "SeparableConv1D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
    "SeparableConv2D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
}


@dataclass(frozen=True)
class Repair:
    """One kind of change made to a legacy config, over every layer it applied to.

    Attributes:
        code: a stable tag (``groups``, ``time_major``, ``batch_input_shape`` ...).
        message: what was changed, e.g. ``dropped groups=1 from 17 DepthwiseConv2D layers``.
        layers: the names of the layers changed (empty for a change to the file's layout).
    """

    code: str
    message: str
    layers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "layers": list(self.layers)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repair:
        return cls(str(data["code"]), str(data["message"]), tuple(map(str, data["layers"])))


@dataclass
class _RepairLog:
    """Collects repairs as they are made, one entry per (code, layer)."""

    entries: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, template: str, class_name: str = "", layer: str = "") -> None:
        self.templates.setdefault(code, template)
        self.entries.setdefault(code, []).append((class_name, layer))

    def repairs(self) -> list[Repair]:
        found = []
        for code, entries in self.entries.items():
            counts = Counter(class_name for class_name, _ in entries if class_name)
            layers = tuple(dict.fromkeys(layer for _, layer in entries if layer))
            n = len(layers) or len(entries)
            message = self.templates[code].format(
                what=_count_text(counts) if counts else "", n=n, s="" if n == 1 else "s"
            )
            found.append(Repair(code, message, layers))
        return found


def _count_text(counts: Counter[str]) -> str:
    parts = [
        f"{count} {name} layer{'s' if count != 1 else ''}" for name, count in counts.most_common()
    ]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# -- what kind of file --------------------------------------------------------------------


def h5_is_legacy(keras_version: str | None, named_keras: bool) -> bool:
    """An HDF5 model file that Keras 3 did not write (or HDF5 in a ``.keras`` name)."""
    return named_keras or not (keras_version or "").startswith("3")


def archive_is_legacy(config: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """A ``.keras`` archive written by tf.keras 2.13-2.15 (or tf_keras), not by Keras 3."""
    version = str(metadata.get("keras_version", ""))
    if version and not version.startswith("3"):
        return True
    module = str(config.get("module") or "")
    return module.startswith(("tf_keras", "keras.engine", "keras.src.engine"))


# -- archives: checked before anything in them is read --------------------------------------

PICKLE_PROTOCOLS = (2, 3, 4, 5)
NPY_MAGIC = b"\x93NUMPY"


def check_archive(archive: zipfile.ZipFile, source: str) -> None:
    """Refuse an archive that could run code or hide what it holds, before deserializing.

    Raises:
        LegacyError: for duplicate member names (two members, one name: which one a reader
            takes is up to the reader) and for pickled data (unpickling runs code).
    """
    names = [info.filename for info in archive.infolist()]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise LegacyError(
            f"{source} is refused: its archive holds several members named "
            f"{', '.join(duplicates[:3])}, so what is loaded would depend on the reader",
            "save the model again with model.save() to get a well-formed file",
            kind="archive",
        )
    for name in names:
        if name.endswith("/"):
            continue
        with archive.open(name) as member:
            head = member.read(256)
        if _is_pickle(name, head) or _is_object_npy(head):
            raise LegacyError(
                f"{source} is refused: its member {name} holds pickled Python objects, "
                "and unpickling them would run code from the file",
                "save the model again with model.save() from the code that built it",
                kind="archive",
            )


def _is_pickle(name: str, head: bytes) -> bool:
    if name.lower().endswith((".pkl", ".pickle")):
        return True
    return len(head) >= 2 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS


def _is_object_npy(head: bytes) -> bool:
    if not head.startswith(NPY_MAGIC):
        return False
    return b"'|O'" in head or b"'O'" in head


# -- the config: repairs ------------------------------------------------------------------


def repair_config(
    config: dict[str, Any], keras: ModuleType, custom: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[Repair]]:
    """A Keras 3 config made from a legacy one, and the repairs that made it.

    Args:
        config: the model config as stored (not changed).
        keras: the Keras 3 module (to ask which arguments its layers take).
        custom: custom classes by name (``--custom-objects``).

    Raises:
        LegacyError: a change would alter what the model computes.
    """
    config = copy.deepcopy(config)
    log = _RepairLog()
    repairer = _Repairer(keras, custom or {}, log)
    repairer.model(config, top=True)
    return config, log.repairs()


class _Repairer:
    def __init__(self, keras: ModuleType, custom: dict[str, Any], log: _RepairLog) -> None:
        self.keras = keras
        self.custom = custom
        self.log = log
        self._accepts: dict[str, set[str] | None] = {}

    # A model entry: its class, its layout, its layers, the node numbering of nested models.
    def model(self, entry: dict[str, Any], top: bool = False) -> None:
        name = str(entry.get("class_name"))
        if name == "Model":
            entry["class_name"] = "Functional"
            self.log.add("model_class", "class Model (Keras 2.2) read as Functional")
        inner = entry.get("config")
        if entry["class_name"] == "Sequential" and isinstance(inner, list):
            entry["config"] = inner = {"name": entry.get("name") or "sequential", "layers": inner}
            self.log.add(
                "sequential_list", "read a Sequential config written as a bare list (Keras 2.2)"
            )
        if not top:
            self._strip_module(entry)
        if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
            return
        layers = [layer for layer in inner["layers"] if isinstance(layer, dict)]
        if entry["class_name"] == "Sequential":
            self._sequential_input(inner, layers)
            layers = [layer for layer in inner["layers"] if isinstance(layer, dict)]
        for layer in layers:
            self.layer(layer)
        if entry["class_name"] != "Sequential":
            names = {_entry_name(layer) for layer in layers}
            for layer in layers:
                self._nodes(layer, names)
            self._renumber_nested(inner, layers)
            if not top:
                self._single_io(inner, str(inner.get("name") or entry.get("name") or "model"))

    def layer(self, entry: dict[str, Any]) -> None:
        class_name = str(entry.get("class_name"))
        config = entry.get("config")
        self._strip_module(entry)
        if self._is_model_entry(entry):
            self.model(entry)
            return
        if not isinstance(config, dict):
            return
        layer_name = str(config.get("name") or entry.get("name") or class_name)
        if class_name in OP_CLASSES:
            self.log.add("tf_ops", "rebuilt {what} as keras.ops calls", class_name, layer_name)
        self._activations(class_name, layer_name, config)
        self._arguments(class_name, layer_name, config)
        self._dtype(class_name, layer_name, config)
        if class_name == "InputLayer" and "batch_input_shape" in config:
            config["batch_shape"] = config.pop("batch_input_shape")
            self.log.add(
                "batch_input_shape",
                "renamed batch_input_shape to batch_shape on {what}",
                class_name,
                layer_name,
            )
        elif "batch_input_shape" in config:
            del config["batch_input_shape"]  # the InputLayer before it carries the shape
            self.log.add(
                "input_shape_copy",
                "dropped the copy of the input shape Keras 2 kept on {what} (the InputLayer "
                "has it)",
                class_name,
                layer_name,
            )
        if class_name == "BatchNormalization":
            axis = config.get("axis")
            if isinstance(axis, list) and len(axis) == 1:
                config["axis"] = int(axis[0])
        for key in INNER_LAYER_KEYS:
            inner = config.get(key)
            if isinstance(inner, dict) and "class_name" in inner:
                self._inner_layer(inner, class_name, layer_name)
        cells = config.get("cells")
        if isinstance(cells, list):
            for cell in cells:
                if isinstance(cell, dict) and "class_name" in cell:
                    self._inner_layer(cell, class_name, layer_name)

    def _inner_layer(self, inner: dict[str, Any], outer_class: str, outer_name: str) -> None:
        """The layer inside a wrapper: repaired like any layer, and given the ``module`` that
        Keras 3's wrappers need to find built-in classes (``Could not locate class 'Dense'``)."""
        had_module = bool(inner.get("module"))
        self.layer(inner)
        class_name = str(inner.get("class_name"))
        if class_name not in self.custom and hasattr(self.keras.layers, class_name):
            inner["module"] = "keras.layers"
            inner["registered_name"] = None
            if had_module:
                return  # a Keras 2 module path, read as Keras 3's: nothing the user must know
            self.log.add(
                "wrapped_layer",
                "named the module of the layer inside {what} (Could not locate class)",
                outer_class,
                outer_name,
            )

    def _strip_module(self, entry: dict[str, Any]) -> None:
        """Keras 2 module paths (``tf_keras.src.engine.functional``) mean nothing to Keras 3:
        the entry is read as a legacy one, by class name."""
        module = entry.get("module")
        if module is None and "registered_name" not in entry:
            return
        entry.pop("module", None)
        entry.pop("registered_name", None)

    def accepts(self, class_name: str, module: str = "layers") -> set[str] | None:
        """The arguments a Keras 3 class takes (None: unknown): those its constructor names,
        and those of the constructors it hands ``**kwargs`` on to."""
        key = f"{module}.{class_name}"
        if key not in self._accepts:
            import inspect

            cls = self.custom.get(class_name) or getattr(
                getattr(self.keras, module), class_name, None
            )
            accepted: set[str] | None = None
            if isinstance(cls, type):
                accepted = set()
                for base in cls.__mro__:
                    if "__init__" not in vars(base):
                        continue
                    parameters = inspect.signature(base.__init__).parameters.values()
                    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
                    accepted |= {p.name for p in parameters if p.kind not in variadic}
                    if base is self.keras.layers.Layer:
                        accepted |= LAYER_KWARGS  # what it takes out of **kwargs
                    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
                        break
            self._accepts[key] = accepted
        return self._accepts[key]

    def _arguments(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        accepted = self.accepts(class_name)
        if accepted is None or class_name in self.custom:
            return
        self._neutral(
            config, accepted, class_name, layer_name, f"layer {layer_name} ({class_name})"
        )
        shapes = [
            key
            for key, value in config.items()
            if key.endswith("_shape")
            and key not in accepted
            and key not in NEUTRAL_ARGUMENTS
            and key != "batch_input_shape"
            and (value is None or _is_shape(value))
        ]
        for key in shapes:
            del config[key]
        if shapes:
            self.log.add(
                "call_shapes",
                "dropped the input shapes Keras 2 stored in {what} (Keras 3 takes them from "
                "the call)",
                class_name,
                layer_name,
            )
        unused = [
            name
            for name in UNUSED_ARGUMENTS.get(class_name, ())
            if name in config and name not in accepted
        ]
        for name in unused:
            del config[name]
        if unused:
            self.log.add(
                "unused_arguments",
                "dropped the kernel_* arguments Keras 2 stored but never used from {what}",
                class_name,
                layer_name,
            )
        for key, value in config.items():
            if key in INNER_LAYER_KEYS or not isinstance(value, dict):
                continue
            inner_class = value.get("class_name")
            inner = value.get("config")
            if not isinstance(inner_class, str) or not isinstance(inner, dict):
                continue
            for module in OBJECT_MODULES:
                inner_accepted = self.accepts(inner_class, module)
                if inner_accepted is not None:
                    self._neutral(
                        inner,
                        inner_accepted,
                        class_name,
                        layer_name,
                        f"the {key} of layer {layer_name} ({class_name})",
                        nested=inner_class,
                    )
                    break

    def _neutral(
        self,
        config: dict[str, Any],
        accepted: set[str],
        class_name: str,
        layer_name: str,
        where: str,
        nested: str = "",
    ) -> None:
        """Drop the arguments Keras 3 no longer takes that hold Keras 2's default; refuse the
        others by name."""
        for argument, neutral in NEUTRAL_ARGUMENTS.items():
            if argument not in config or argument in accepted:
                continue
            value = config[argument]
            if value != neutral:
                owner = nested or class_name
                raise LegacyError(
                    f"{where} has {argument}={value!r}, which Keras 3's {owner} does not take "
                    f"(only Keras 2's default, {argument}={neutral!r}, can be left out without "
                    "changing what the model computes)",
                    "rebuild that layer in Keras 3 code (for time_major, transpose the input "
                    "instead), load the weights into it, and save it with model.save()",
                    kind="repair",
                )
            del config[argument]
            if nested:
                self.log.add(
                    f"{argument}_in_objects",
                    f"dropped {argument}={neutral!r} from the initializer, regularizer and "
                    "constraint configs of {what}",
                    class_name,
                    layer_name,
                )
            else:
                self.log.add(
                    argument,
                    f"dropped {argument}={neutral!r} from {{what}}",
                    class_name,
                    layer_name,
                )

    def _activations(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        """Keep Keras 2's hard_sigmoid where the layer's own weights make its input (those
        weights are scaled by 1.2 once loaded, by :func:`keep_hard_sigmoid`); refuse it where
        none do, as the model would load and compute something else."""
        kept = []
        for key, value in config.items():
            if not key.endswith("activation"):
                continue
            name = value.get("class_name") if isinstance(value, dict) else value
            if not isinstance(name, str) or name not in CHANGED_ACTIVATIONS:
                continue
            cls = (
                None if class_name in self.custom else getattr(self.keras.layers, class_name, None)
            )
            keras3 = cls.__name__ if isinstance(cls, type) else class_name
            if (keras3, key) not in HARD_SIGMOID_WEIGHTS:
                raise self._activation_refused(class_name, layer_name, key, name, keras3)
            kept.append(keras3)
        if not kept:
            return
        self.log.add(
            "hard_sigmoid",
            "kept Keras 2's hard_sigmoid (clip(0.2 * x + 0.5, 0, 1)) exactly by scaling by "
            f"{HARD_SIGMOID_SCALE} the weights that make its input in {{what}}",
            class_name,
            layer_name,
        )
        penalties = [
            argument
            for argument, setting in config.items()
            if argument.endswith(("_regularizer", "_constraint"))
            and argument != "activity_regularizer"  # on the output: unchanged
            and not (kept[0].startswith("SeparableConv") and argument.startswith("depthwise"))
            and setting is not None
        ]
        if penalties:
            self.log.add(
                "hard_sigmoid_penalties",
                "the regularizers and constraints of {what} see the weights scaled for "
                "hard_sigmoid (what the model computes is unchanged; training penalties differ)",
                class_name,
                layer_name,
            )

    @staticmethod
    def _activation_refused(
        class_name: str, layer_name: str, key: str, name: str, keras3: str
    ) -> LegacyError:
        keras2_formula, keras3_formula = CHANGED_ACTIVATIONS[name]
        reason = HARD_SIGMOID_REFUSED.get(
            keras3, "kfreeze knows no weights of that layer that make its input"
        )
        return LegacyError(
            f"layer {layer_name} ({class_name}) has {key}={name!r}, which Keras 2 computed as "
            f"{keras2_formula} and Keras 3 computes as {keras3_formula}, and it cannot be kept "
            f"by scaling weights: the layer {reason}",
            "rebuild that layer in Keras 3 code with an activation that computes "
            f"Keras 2's {name}, load the weights into it, and save it with model.save()",
            kind="repair",
        )

    def _dtype(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        dtype = config.get("dtype")
        if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
            policy = (dtype.get("config") or {}).get("name")
            if isinstance(policy, str):
                config["dtype"] = policy
                self.log.add(
                    "dtype_policy",
                    "read Keras 2 dtype policies (Policy) as Keras 3 DTypePolicy on {what}",
                    class_name,
                    layer_name,
                )

    def _sequential_input(self, inner: dict[str, Any], layers: list[dict[str, Any]]) -> None:
        """Keras 2 put ``batch_input_shape`` on a Sequential's first layer; Keras 3 wants an
        InputLayer."""
        if not layers or layers[0].get("class_name") == "InputLayer":
            return
        first = layers[0].get("config")
        if not isinstance(first, dict) or "batch_input_shape" not in first:
            return
        shape = first.pop("batch_input_shape")
        dtype = first.get("dtype") if isinstance(first.get("dtype"), str) else "float32"
        input_entry = {
            "class_name": "InputLayer",
            "config": {"batch_shape": shape, "dtype": dtype, "name": f"{first.get('name')}_input"},
        }
        inner["layers"].insert(inner["layers"].index(layers[0]), input_entry)
        self.log.add(
            "batch_input_shape",
            "gave {n} Sequential model{s} an InputLayer for the first layer's batch_input_shape",
            "",
            str(inner.get("name") or "sequential"),
        )

    def _renumber_nested(self, inner: dict[str, Any], layers: list[dict[str, Any]]) -> None:
        """Keras 2 numbered the calls of a nested model from 1 (node 0 was the model's own);
        Keras 3 numbers them from 0. A reference past the last call can only mean the old
        numbering."""
        calls = {}
        for entry in layers:
            nodes = entry.get("inbound_nodes")
            if self._is_model_entry(entry) and isinstance(nodes, list):
                calls[str(entry.get("name") or entry["config"].get("name"))] = len(nodes)
        if not calls:
            return
        references = list(self._references(inner, layers))
        shifted = set()
        for name, count in calls.items():
            used = [ref[1] for ref in references if ref[0] == name]
            if used and max(used) >= count and min(used) >= 1:
                shifted.add(name)
        if not shifted:
            return
        for ref in references:
            if ref[0] in shifted:
                ref[1] -= 1
        for name in sorted(shifted):
            self.log.add(
                "nested_calls",
                "renumbered the calls of {n} nested model{s} from Keras 2's 1 to Keras 3's 0",
                "",
                name,
            )

    def _single_io(self, inner: dict[str, Any], model_name: str) -> None:
        """Keras 2 wrote a model's inputs and outputs as lists, and a model with one of
        them took and returned a single tensor (its Functional unpacked a one-element list);
        Keras 3 keeps the list, so a nested model would hand the next layer a list."""
        changed = False
        for key in ("input_layers", "output_layers"):
            value = inner.get(key)
            if (
                isinstance(value, list)
                and len(value) == 1
                and isinstance(value[0], list)
                and len(value[0]) == 3
                and isinstance(value[0][0], str)
            ):
                inner[key] = value[0]
                changed = True
        if changed:
            self.log.add(
                "single_io",
                "read the one-element input and output lists of {n} nested model{s} as "
                "single tensors, as Keras 2 did",
                "",
                model_name,
            )

    def _nodes(self, entry: dict[str, Any], names: set[str]) -> None:
        """Turn the Keras 2 nodes that Keras 3's reader of old nodes gets wrong into Keras
        3's node format (``{"args": ..., "kwargs": ...}``).

        A Keras 2 node is the structure of the layer's first call argument, each tensor an
        entry ``[layer, node, tensor, kwargs]``; the other call arguments are in ``kwargs``,
        tensors among them as ``[layer, node, tensor]``; constants as
        ``["_CONSTANT_VALUE", -1, value]``. Keras 3 reads neither the tensors among the
        arguments nor the constants. Keras 2's recurrent layers (and Bidirectional) packed
        their ``initial_state`` tensors after the sequence in the first argument; Keras 3
        takes them as ``initial_state``.
        """
        nodes = entry.get("inbound_nodes")
        if not isinstance(nodes, list):
            return
        class_name = str(entry.get("class_name"))
        layer_name = _entry_name(entry)
        for index, node in enumerate(nodes):
            if isinstance(node, dict) and "args" in node:
                continue  # Keras 3's format already
            leaves = list(_node_leaves(node))
            if not leaves:
                continue
            kwargs: dict[str, Any] = {}
            dropped = False
            for leaf in leaves:
                if len(leaf) >= 4 and isinstance(leaf[3], dict):
                    dropped |= self._call_arguments(leaf[3], class_name, layer_name)
                    kwargs = leaf[3]
            if dropped:
                self.log.add(
                    "call_arguments",
                    "dropped call arguments Keras 2 recorded as None that Keras 3 does not "
                    "take from {what}",
                    class_name,
                    layer_name,
                )
            has_refs = _has_references(kwargs, names)
            constants = any(leaf[0] == CONSTANT_VALUE for leaf in leaves)
            packed = len(leaves) > 1 and self._is_recurrent(class_name)
            plain = isinstance(node, list) and all(_is_leaf(item) for item in node)
            if not (has_refs or constants or packed or not plain):
                continue
            first = _node_structure(node)
            if len(leaves) == 1 or (isinstance(first, list) and len(first) == 1):
                first = _node_structure(leaves[0])
            new_kwargs = _tensor_kwargs(kwargs, names)
            if packed and isinstance(first, list):
                first, states = first[0], first[1:]
                new_kwargs["initial_state"] = states
                self.log.add(
                    "initial_state",
                    "passed the initial states Keras 2 packed into the inputs of {what} as "
                    "initial_state",
                    class_name,
                    layer_name,
                )
            elif has_refs and class_name not in OP_CLASSES:
                self.log.add(
                    "call_tensors",
                    "read the tensors Keras 2 stored among the call arguments of {what}",
                    class_name,
                    layer_name,
                )
            nodes[index] = {"args": [first], "kwargs": new_kwargs}

    def _call_arguments(self, kwargs: dict[str, Any], class_name: str, layer_name: str) -> bool:
        """Keras 2 recorded every argument of a layer's call, given or not; one that Keras 3's
        ``call`` does not take is dropped when it is None (not given), refused otherwise."""
        import inspect

        cls = self.custom.get(class_name) or getattr(self.keras.layers, class_name, None)
        if not isinstance(cls, type) or class_name in OP_CLASSES:
            return False
        parameters = inspect.signature(cls.call).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return False
        dropped = False
        # Keras 3 itself passes `training` only to a call that takes it.
        for argument in [key for key in kwargs if key not in parameters and key != "training"]:
            if kwargs[argument] is not None:
                raise LegacyError(
                    f"layer {layer_name} ({class_name}) is called with {argument}, which "
                    f"Keras 3's {class_name} does not take",
                    "rebuild that layer in Keras 3 code, load the weights into it, and save "
                    "it with model.save()",
                    kind="repair",
                )
            del kwargs[argument]
            dropped = True
        return dropped

    def _is_recurrent(self, class_name: str) -> bool:
        cls = self.custom.get(class_name) or getattr(self.keras.layers, class_name, None)
        return isinstance(cls, type) and issubclass(
            cls, (self.keras.layers.RNN, self.keras.layers.Bidirectional)
        )

    def _is_model_entry(self, entry: dict[str, Any]) -> bool:
        config = entry.get("config")
        return str(entry.get("class_name")) in MODEL_CLASSES or (
            isinstance(config, dict) and isinstance(config.get("layers"), list)
        )

    @staticmethod
    def _references(inner: dict[str, Any], layers: list[dict[str, Any]]) -> Iterator[list[Any]]:
        """Every ``[layer_name, node_index, tensor_index, ...]`` reference, as mutable lists."""
        for entry in layers:
            for node in entry.get("inbound_nodes") or []:
                if isinstance(node, list):
                    for ref in node:
                        if isinstance(ref, list) and len(ref) >= 3:
                            yield ref
                elif isinstance(node, dict):
                    yield from _history_references(node)
        for key in ("input_layers", "output_layers"):
            value = inner.get(key)
            if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
                yield value
            elif isinstance(value, list):
                for ref in value:
                    if isinstance(ref, list) and len(ref) >= 3:
                        yield ref


#: The layer name Keras 2 wrote for a constant among a layer's inputs.
CONSTANT_VALUE = "_CONSTANT_VALUE"


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(d is None or isinstance(d, int) for d in value)


def _entry_name(entry: dict[str, Any]) -> str:
    config = entry.get("config")
    name = entry.get("name")
    if not name and isinstance(config, dict):
        name = config.get("name")
    return str(name or entry.get("class_name"))


def _is_leaf(item: Any) -> bool:
    """A Keras 2 node entry: ``[layer, node, tensor]`` or ``[layer, node, tensor, kwargs]``."""
    return (
        isinstance(item, list)
        and len(item) in (3, 4)
        and isinstance(item[0], str)
        and isinstance(item[1], int)
        and (item[0] == CONSTANT_VALUE or isinstance(item[2], int))
    )


def _node_leaves(node: Any) -> Iterator[list[Any]]:
    if _is_leaf(node):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _node_leaves(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _node_leaves(item)


def _tensor(reference: list[Any]) -> dict[str, Any]:
    """A Keras 3 reference to a tensor; Keras puts the real tensor in its place, so the
    shape and dtype written here are never used."""
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": [], "dtype": "float32", "keras_history": list(reference[:3])},
    }


def _node_structure(node: Any) -> Any:
    if _is_leaf(node):
        return node[2] if node[0] == CONSTANT_VALUE else _tensor(node)
    if isinstance(node, list):
        return [_node_structure(item) for item in node]
    if isinstance(node, dict):
        return {key: _node_structure(item) for key, item in node.items()}
    return node


def _is_reference(value: Any, names: set[str]) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and value[0] in names
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _has_references(value: Any, names: set[str]) -> bool:
    if _is_reference(value, names):
        return True
    if isinstance(value, list):
        return any(_has_references(item, names) for item in value)
    if isinstance(value, dict):
        return any(_has_references(item, names) for item in value.values())
    return False


def _tensor_kwargs(value: Any, names: set[str]) -> Any:
    if _is_reference(value, names):
        return _tensor(value)
    if isinstance(value, list):
        return [_tensor_kwargs(item, names) for item in value]
    if isinstance(value, dict):
        return {key: _tensor_kwargs(item, names) for key, item in value.items()}
    return value


def _history_references(node: Any) -> Iterator[list[Any]]:
    """``keras_history`` references inside a Keras 3-style node (``{"args": ...}``)."""
    if isinstance(node, dict):
        history = node.get("keras_history")
        if isinstance(history, list) and len(history) == 3:
            yield history
        for value in node.values():
            yield from _history_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _history_references(value)


# -- what cannot be opened ------------------------------------------------------------------


def layer_entries(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer entry in a config: nested models' and wrapped layers included."""
    if isinstance(config, dict):
        inner = config.get("config")
        if isinstance(inner, dict):
            if isinstance(inner.get("layers"), list):
                for entry in inner["layers"]:
                    if isinstance(entry, dict) and "class_name" in entry:
                        yield entry
                        yield from layer_entries(entry)
            for key in INNER_LAYER_KEYS:
                wrapped = inner.get(key)
                if isinstance(wrapped, dict) and "class_name" in wrapped:
                    yield wrapped
                    yield from layer_entries(wrapped)
        elif isinstance(inner, list):  # a Keras 2.2 Sequential
            for entry in inner:
                if isinstance(entry, dict) and "class_name" in entry:
                    yield entry
                    yield from layer_entries(entry)


def check_model_class(config: dict[str, Any], source: str, custom: dict[str, Any]) -> None:
    """Refuse a model whose class kfreeze cannot rebuild, naming the class.

    Raises:
        LegacyError: a subclassed model whose architecture is not in the file, or a custom
            model class that ``--custom-objects`` did not define.
    """
    class_name = str(config.get("class_name"))
    if class_name in MODEL_CLASSES or class_name in custom:
        return
    inner = config.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
        raise LegacyError(
            f"{source} is a model of the custom model class {class_name}, which kfreeze "
            "does not know",
            "pass --custom-objects FILE.py with a Python file that defines it (decorated with "
            "@keras.saving.register_keras_serializable())",
            kind="custom",
        )
    raise LegacyError(
        f"{source} holds a subclassed model, {class_name}, whose architecture is not stored in "
        "the file (only its weights are), so its layers cannot be rebuilt from the file",
        f"pass --custom-objects FILE.py with the Python file that defines {class_name} (its code "
        "is needed)",
        kind="subclassed",
    )


def check_lambdas(config: dict[str, Any], source: str) -> None:
    """Refuse a Lambda whose code another Python version marshalled: it cannot run here.

    Raises:
        LegacyError: naming the layer and the Python version that wrote its code.
    """
    for entry in layer_entries(config):
        if entry.get("class_name") != "Lambda":
            continue
        inner = entry.get("config") or {}
        code = _lambda_code(inner.get("function"))
        if code is None:
            continue
        written = marshal_python(code)
        here = marshal_python(_own_marshal())
        if written is not None and written != here:
            name = inner.get("name") or entry.get("name") or "Lambda"
            raise LegacyError(
                f"{source} has a Lambda layer, {name}, whose code was marshalled by {written} "
                f"and cannot run in this Python ({here})",
                "rebuild the Lambda in Python, or pass --custom-objects FILE.py with a layer "
                "class that replaces it",
                kind="lambda-version",
            )


def _lambda_code(function: Any) -> bytes | None:
    text = None
    if isinstance(function, list) and function and isinstance(function[0], str):
        text = function[0]
    elif isinstance(function, dict) and function.get("class_name") == "__lambda__":
        text = (function.get("config") or {}).get("code")
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text.encode("ascii"), validate=False)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _own_marshal() -> bytes:
    import marshal

    return marshal.dumps((lambda x: x).__code__)


#: First opcode of every 3.11+ function: RESUME, by the versions that number it so.
_RESUME = {0x97: "Python 3.11 or 3.12", 0x95: "Python 3.13", 0x80: "Python 3.14"}


def marshal_python(data: bytes) -> str | None:
    """Which Python version wrote a marshalled code object, read from its layout alone.

    The header of a code object changed with CPython versions: 4 integer fields before the
    bytecode in Python 2, 5 in 3.0-3.7, 6 in 3.8-3.10 (``co_posonlyargcount``), 5 again from
    3.11 (``co_nlocals`` went), where the bytecode starts with RESUME. Nothing is unmarshalled.

    Returns:
        e.g. ``Python 3.8 to 3.10``; None when the bytes are not a marshalled code object.
    """
    if len(data) < 30 or data[0] & 0x7F != ord("c"):
        return None
    for fields in (4, 5, 6):
        at = 1 + 4 * fields
        if data[at] & 0x7F != ord("s"):
            continue
        (length,) = struct.unpack_from("<i", data, at + 1)
        if not 0 < length <= len(data) - at - 5:
            continue
        code = data[at + 5 : at + 5 + length]
        if fields == 4:
            return "Python 2"
        if fields == 6:
            return "Python 3.8 to 3.10"
        if code[:1] and code[0] in _RESUME and code[1] == 0:
            return _RESUME[code[0]]
        return "Python 3.7 or earlier"
    return None


# -- building and loading -------------------------------------------------------------------


def check_tf_ops(config: dict[str, Any], source: str) -> None:
    """Refuse tf.keras op layers whose TensorFlow function has no exact ``keras.ops``
    equivalent, naming the functions.

    Raises:
        LegacyError: kind ``tf-op``.
    """
    from kfreeze_tui.core.model.legacy import ops as legacy_ops

    refused = legacy_ops.unsupported(layer_entries(config))
    if refused:
        raise LegacyError(
            f"{source} calls TensorFlow functions that kfreeze cannot rebuild in Keras 3: "
            + "; ".join(refused),
            "rebuild those steps with keras.ops in Keras 3 code, load the weights into that "
            "model, and save it with model.save()",
            kind="tf-op",
        )


def build(
    config: dict[str, Any],
    keras: ModuleType,
    custom: dict[str, Any],
    unsafe: bool,
    source: str = "the model",
) -> Any:
    """A Keras 3 model from a repaired config, through Keras's public deserializer (or, for
    a model holding tf.keras op layers, by calling its layers node by node)."""
    from kfreeze_tui.core.model.legacy import ops as legacy_ops

    class_name = str(config.get("class_name"))
    if class_name not in custom and legacy_ops.has_ops(layer_entries(config)):
        builder = _GraphBuilder(keras, custom, unsafe, source)
        if class_name == "Sequential":
            return builder.sequential(config)
        return builder.model(config)
    entry: dict[str, Any] = {"config": config.get("config")}
    if class_name in custom:
        entry.update(class_name=class_name, module=None, registered_name=class_name)
    elif class_name == "Sequential":
        entry.update(class_name="Sequential", module="keras", registered_name=None)
    else:
        entry.update(class_name="Model", module="keras", registered_name=None)
    return keras.saving.deserialize_keras_object(
        entry, custom_objects=custom or None, safe_mode=not unsafe
    )


class _NotYet(Exception):
    """A node refers to a call that has not been made yet."""


class _GraphBuilder:
    """Builds a functional config by calling its layers in the order of their nodes, as
    Keras's ``from_config`` does, with tf.keras op layers called as ``keras.ops``."""

    def __init__(
        self, keras: ModuleType, custom: dict[str, Any], unsafe: bool, source: str
    ) -> None:
        self.keras = keras
        self.custom = custom
        self.unsafe = unsafe
        self.source = source

    def model(self, config: dict[str, Any]) -> Any:
        from kfreeze_tui.core.model.legacy import ops as legacy_ops

        inner = config["config"]
        layers: dict[str, Any] = {}
        calls: dict[str, list[Any]] = {}
        pending: list[tuple[str, dict[str, Any], Any]] = []
        for entry in inner["layers"]:
            name = _entry_name(entry)
            calls[name] = []
            if entry.get("class_name") in legacy_ops.OP_CLASSES:
                layers[name] = entry
            else:
                layers[name] = self._layer(entry)
                if entry.get("class_name") == "InputLayer":
                    calls[name].append(layers[name].output)
            for node in entry.get("inbound_nodes") or []:
                pending.append((name, entry, node))
        while pending:
            waiting: list[tuple[str, dict[str, Any], Any]] = []
            for name, entry, node in pending:
                if any(other == name for other, _, _ in waiting):
                    waiting.append((name, entry, node))  # a layer's calls keep their order
                    continue
                try:
                    first, kwargs = self._arguments(node, calls)
                except _NotYet:
                    waiting.append((name, entry, node))
                    continue
                calls[name].append(self._call(layers[name], entry, name, first, kwargs))
            if len(waiting) == len(pending):
                raise LegacyError(
                    f"{self.source} has layers whose inputs never appear in the model "
                    f"{inner.get('name')} "
                    f"({', '.join(sorted({name for name, _, _ in waiting})[:3])})",
                    "save the model again with model.save()",
                    kind="graph",
                )
            pending = waiting
        inputs = self._io(inner.get("input_layers"), calls)
        outputs = self._io(inner.get("output_layers"), calls)
        return self.keras.Model(
            inputs, outputs, name=inner.get("name"), trainable=inner.get("trainable", True)
        )

    def sequential(self, config: dict[str, Any]) -> Any:
        """A Sequential whose nested models hold op layers: its layers built here, added in
        order (as Keras's ``Sequential.from_config`` does)."""
        inner = config["config"]
        model = self.keras.Sequential(name=inner.get("name"))
        for entry in inner["layers"]:
            model.add(self._layer(entry))
        return model

    def _layer(self, entry: dict[str, Any]) -> Any:
        # Its calls build the layer (a build_config of several inputs does not).
        layer_entry = {
            key: value
            for key, value in entry.items()
            if key not in ("inbound_nodes", "build_config")
        }
        class_name = str(layer_entry.get("class_name"))
        config = layer_entry.get("config")
        if class_name in MODEL_CLASSES or (
            isinstance(config, dict) and isinstance(config.get("layers"), list)
        ):
            return build(layer_entry, self.keras, self.custom, self.unsafe, self.source)
        if class_name not in self.custom and hasattr(self.keras.layers, class_name):
            layer_entry.update(module="keras.layers", registered_name=None)
        return self.keras.saving.deserialize_keras_object(
            layer_entry, custom_objects=self.custom or None, safe_mode=not self.unsafe
        )

    def _call(
        self, layer: Any, entry: dict[str, Any], name: str, first: Any, kwargs: dict[str, Any]
    ) -> Any:
        from kfreeze_tui.core.model.legacy import ops as legacy_ops

        if entry.get("class_name") in legacy_ops.OP_CLASSES:
            try:
                return legacy_ops.call(self.keras, entry, first, kwargs, name)
            except legacy_ops.OpError as exc:
                raise LegacyError(
                    f"{self.source} cannot be rebuilt in Keras 3: {exc.message}",
                    "rebuild that step with keras.ops in Keras 3 code, load the weights into "
                    "that model, and save it with model.save()",
                    kind="tf-op",
                ) from exc
        return layer(first, **kwargs)

    def _tensor(self, reference: list[Any], calls: dict[str, list[Any]]) -> Any:
        name, node, index = reference[0], reference[1], reference[2]
        made = calls.get(name)
        if made is None:
            raise LegacyError(
                f"{self.source} has a node that refers to a layer {name} it does not have",
                "save the model again with model.save()",
                kind="graph",
            )
        if len(made) <= node:
            raise _NotYet
        from kfreeze_tui.core.model.legacy.ops import Static

        value = self.keras.tree.flatten(made[node])[index]
        return value.value if isinstance(value, Static) else value

    def _arguments(self, node: Any, calls: dict[str, list[Any]]) -> tuple[Any, dict[str, Any]]:
        names = set(calls)

        def resolve(value: Any) -> Any:
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                return self._tensor(value["config"]["keras_history"], calls)
            if _is_reference(value, names):
                return self._tensor(value, calls)
            if isinstance(value, list):
                return [resolve(item) for item in value]
            if isinstance(value, dict):
                return {key: resolve(item) for key, item in value.items()}
            return value

        if isinstance(node, dict) and "args" in node:
            args = resolve(node["args"])
            return (args[0] if args else None), resolve(node.get("kwargs") or {})
        leaves = list(_node_leaves(node))
        kwargs: dict[str, Any] = {}
        for leaf in leaves:
            if len(leaf) >= 4 and isinstance(leaf[3], dict):
                kwargs = leaf[3]

        def first_of(value: Any) -> Any:
            if _is_leaf(value):
                return value[2] if value[0] == CONSTANT_VALUE else self._tensor(value, calls)
            if isinstance(value, list):
                return [first_of(item) for item in value]
            if isinstance(value, dict):
                return {key: first_of(item) for key, item in value.items()}
            return value

        first = first_of(node)
        if isinstance(first, list) and len(first) == 1:
            first = first[0]
        return first, resolve(kwargs)

    def _io(self, value: Any, calls: dict[str, list[Any]]) -> Any:
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return self._tensor(value, calls)
        if isinstance(value, list):
            return [self._io(item, calls) for item in value]
        if isinstance(value, dict):
            return {key: self._io(item, calls) for key, item in value.items()}
        return value


def build_subclassed(model: Any, build_config: dict[str, Any], keras: ModuleType) -> None:
    """Build a model rebuilt from its class (``--custom-objects``), by calling it once on
    zeros of the input shape the file recorded, so that it has weights to load."""
    model.build_from_config(build_config)
    shape = build_config.get("input_shape")
    if model.built or not isinstance(shape, list) or not shape:
        return
    if all(isinstance(d, int) or d is None for d in shape):
        model(keras.ops.zeros([d or 1 for d in shape]))


def load_h5_weights(model: Any, path: Path, source: str) -> None:
    """Load an HDF5 model file's weights into ``model``, layer by layer, by layer name.

    Within a layer, weights are matched by name (``kernel``, ``moving_mean`` ...) in the order
    Keras 2 wrote them (trainable, then non-trainable); every weighted layer must be found and
    every shape must agree.

    Raises:
        LegacyError: a layer's weights are missing or do not fit.
    """
    import h5py
    import numpy as np

    with h5py.File(path, "r") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        stored = [_text(name) for name in group.attrs.get("layer_names", [])]
        wanted = {
            layer.name: layer.trainable_weights + layer.non_trainable_weights
            for layer in model.layers
            if layer.trainable_weights or layer.non_trainable_weights
        }
        with_weights = {
            name
            for name in stored
            if name in group and len(group[name].attrs.get("weight_names", [])) > 0
        }
        missing = sorted(set(wanted) - with_weights)
        extra = sorted(with_weights - set(wanted))
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
        for name, variables in wanted.items():
            layer_group = group[name]
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
            from kfreeze_tui.core.errors import first_line

            raise LegacyError(
                f"{source} has weights that do not fit the architecture it stores "
                f"({first_line(exc)})",
                "save the model again with model.save()",
                kind="weights",
            ) from exc
    return repairs


def keep_hard_sigmoid(model: Any, keras: ModuleType, source: str) -> int:
    """Scale by 1.2 the loaded weights that make the input of every hard_sigmoid in ``model``,
    so that Keras 3's hard_sigmoid computes Keras 2's (see :data:`HARD_SIGMOID_WEIGHTS`).

    Call it once, after the weights are loaded, on a model rebuilt from a legacy config that
    :func:`repair_config` accepted. A layer shared by several models is scaled once.

    Returns:
        how many layers or cells were scaled.

    Raises:
        LegacyError: a hard_sigmoid whose input no weights of its layer make (which
            :func:`repair_config` refuses before the model is built).
    """
    import numpy as np

    hard_sigmoid = keras.activations.get("hard_sigmoid")
    scaled = 0
    for layer in _layers_and_cells(model, set()):
        if hasattr(layer, "cell"):
            continue  # an RNN layer: its weights and activations are its cell's
        for key in ("activation", "recurrent_activation"):
            if getattr(layer, key, None) is not hard_sigmoid:
                continue
            spec = HARD_SIGMOID_WEIGHTS.get((type(layer).__name__, key))
            if spec is None or not type(layer).__module__.startswith("keras."):
                raise LegacyError(
                    f"{source}: layer {layer.name} ({type(layer).__name__}) has "
                    f"{key}='hard_sigmoid', whose Keras 2 meaning no weights of the layer keep",
                    "rebuild that layer in Keras 3 code and save it with model.save()",
                    kind="repair",
                )
            names, blocks = spec
            for variable in layer.weights:
                if variable.name not in names:
                    continue
                value = np.asarray(variable.numpy())
                factor = np.ones(value.shape[-1], dtype=value.dtype)
                if blocks is None:
                    factor[:] = HARD_SIGMOID_SCALE
                else:
                    gates, chosen = blocks
                    width = value.shape[-1] // gates
                    for gate in chosen:
                        factor[gate * width : (gate + 1) * width] = HARD_SIGMOID_SCALE
                variable.assign((value * factor).astype(value.dtype))
            scaled += 1
    return scaled


def _layers_and_cells(layer: Any, seen: set[int]) -> Iterator[Any]:
    """Every layer and RNN cell under ``layer``, each once: nested models' layers, wrapped
    layers (TimeDistributed's, Bidirectional's two directions), RNN cells, stacked cells."""
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    inner: list[Any] = []
    for attribute in ("layer", "forward_layer", "backward_layer", "cell"):
        found = getattr(layer, attribute, None)
        if found is not None:
            inner.append(found)
    for attribute in ("layers", "cells"):
        found = getattr(layer, attribute, None)
        if isinstance(found, list | tuple):
            inner.extend(found)
    for item in inner:
        yield from _layers_and_cells(item, seen)


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


def read_archive_metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        data = json.loads(archive.read("metadata.json"))
    except (KeyError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
