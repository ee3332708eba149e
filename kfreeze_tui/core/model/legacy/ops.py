"""tf.keras's automatic op layers (``TFOpLambda``, ``SlicingOpLambda``), rebuilt as ``keras.ops``.

When a tf.keras 2.4+ functional model called a TensorFlow function on a Keras tensor
(``tf.tile(x, ...)``, ``x * 2.0``, ``x[:, 1:3]``), it recorded a ``TFOpLambda`` layer naming
the function (``tile``, ``math.multiply``) and the call's arguments in the layer's node; a
slice is a ``SlicingOpLambda`` of ``__operators__.getitem`` whose node holds the slice. Keras 3
records the same calls of ``keras.ops`` functions as operations of the model. Each function
with an exact ``keras.ops`` equivalent (on TensorFlow, the same TensorFlow kernel) is rebuilt
as that call, by a table from the function's name; nothing from the file is run. The others
are refused, named.

A model holding such layers is built here, by calling its layers in the order of its nodes
(as Keras's own ``from_config`` does), because Keras 3 has no class to deserialize them into.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LegacyError

#: The classes tf.keras recorded for TensorFlow functions called on Keras tensors.
OP_CLASSES = ("TFOpLambda", "SlicingOpLambda")
#: The function a SlicingOpLambda applies.
GETITEM = "__operators__.getitem"
#: A parameter with no default (the call must give it).
REQUIRED = object()


@dataclass(frozen=True)
class Op:
    """A TensorFlow function and its exact ``keras.ops`` equivalent.

    Attributes:
        keras_name: the ``keras.ops`` function.
        parameters: the TensorFlow function's parameters with their TensorFlow defaults,
            in the order the ``keras.ops`` function takes them positionally (whose defaults
            are the same).
    """

    keras_name: str
    parameters: tuple[tuple[str, Any], ...]


def _op(keras_name: str, *names: str, **defaults: Any) -> Op:
    parameters = tuple((name, defaults.get(name, REQUIRED)) for name in names)
    return Op(keras_name, parameters)


_BINARY = {
    "add": ("__operators__.add", "math.add"),
    "subtract": ("math.subtract",),
    "multiply": ("math.multiply",),
    "true_divide": ("math.truediv", "math.divide"),
    "power": ("math.pow",),
    "maximum": ("math.maximum",),
    "minimum": ("math.minimum",),
    "equal": ("math.equal",),
    "not_equal": ("math.not_equal",),
    "greater": ("math.greater",),
    "greater_equal": ("math.greater_equal",),
    "less": ("math.less",),
    "less_equal": ("math.less_equal",),
}
_UNARY = {
    "negative": ("math.negative",),
    "absolute": ("math.abs",),
    "sqrt": ("math.sqrt",),
    "square": ("math.square",),
    "exp": ("math.exp",),
    "log": ("math.log",),
    "tanh": ("math.tanh", "nn.tanh"),
    "sigmoid": ("math.sigmoid", "nn.sigmoid"),
    "rsqrt": ("math.rsqrt",),
    "reciprocal": ("math.reciprocal",),
    "sin": ("math.sin",),
    "cos": ("math.cos",),
    "floor": ("math.floor",),
    "ceil": ("math.ceil",),
    "round": ("math.round",),
    "sign": ("math.sign",),
    "log1p": ("math.log1p",),
    "erf": ("math.erf",),
}
_REDUCTIONS = {
    "mean": "math.reduce_mean",
    "sum": "math.reduce_sum",
    "max": "math.reduce_max",
    "min": "math.reduce_min",
    "prod": "math.reduce_prod",
}

#: TensorFlow function (as tf.keras names it) -> its ``keras.ops`` equivalent.
TF_OPS: dict[str, Op] = {
    **{tf: _op(k, "x", "y") for k, names in _BINARY.items() for tf in names},
    **{tf: _op(k, "x") for k, names in _UNARY.items() for tf in names},
    **{
        tf: _op(k, "input_tensor", "axis", "keepdims", axis=None, keepdims=False)
        for k, tf in _REDUCTIONS.items()
    },
    "nn.relu": _op("relu", "features"),
    "nn.relu6": _op("relu6", "features"),
    "nn.silu": _op("silu", "features"),
    "nn.elu": _op("elu", "features"),
    "math.softplus": _op("softplus", "features"),
    "nn.leaky_relu": _op("leaky_relu", "features", "alpha", alpha=0.2),
    "nn.softmax": _op("softmax", "logits", "axis", axis=-1),
    "math.softmax": _op("softmax", "logits", "axis", axis=-1),
    "concat": _op("concatenate", "values", "axis"),
    "stack": _op("stack", "values", "axis", axis=0),
    "reshape": _op("reshape", "tensor", "shape"),
    "tile": _op("tile", "input", "multiples"),
    "transpose": _op("transpose", "a", "perm", perm=None),
    "compat.v1.transpose": _op("transpose", "a", "perm", perm=None),
    "expand_dims": _op("expand_dims", "input", "axis"),
    "squeeze": _op("squeeze", "input", "axis", axis=None),
    "compat.v1.squeeze": _op("squeeze", "input", "axis", axis=None),
    "cast": _op("cast", "x", "dtype"),
    "clip_by_value": _op("clip", "t", "clip_value_min", "clip_value_max"),
    "where": _op("where", "condition", "x", "y", x=None, y=None),
    "linalg.matmul": _op("matmul", "a", "b"),
    # TensorFlow's axis=None means 0 here; keras.ops.take's would flatten.
    "gather": _op("take", "params", "indices", "axis", axis=0),
    "compat.v1.gather": _op("take", "params", "indices", "axis", axis=0),
}
#: Arguments that change nothing at their TensorFlow default (``name`` never does).
NEUTRAL_OP_ARGUMENTS: dict[str, Any] = {
    "transpose_a": False,
    "transpose_b": False,
    "adjoint_a": False,
    "adjoint_b": False,
    "a_is_sparse": False,
    "b_is_sparse": False,
    "conjugate": False,
    "output_type": None,
    "squeeze_dims": None,
    "validate_indices": None,
    "batch_dims": 0,
}
#: Functions that give a tensor's shape. A Keras 3 model has no operation for a shape known
#: only at run time; the dimensions its input shapes fix are constants, and what is computed
#: from them alone is computed once, here, by the same kernels (``tf.shape(x)[-1]`` in an
#: attention scale). A dimension known only at run time (the batch size) is refused where used.
SHAPE_FUNCTIONS = ("shape", "compat.v1.shape")
#: Functions that give a tensor's shape and that kfreeze does not fold.
UNFOLDED_SHAPE_FUNCTIONS = ("shape_n", "size", "rank", "compat.v1.size")


@dataclass(frozen=True)
class RuntimeDim:
    """A dimension that a shape function gives only at run time."""

    function: str
    layer: str
    axis: int


@dataclass(frozen=True)
class Static:
    """A value computed from static dimensions alone (not a tensor of the model)."""

    value: Any


class OpError(LegacyError):
    """An op layer that cannot be rebuilt; the message names the TensorFlow function."""


def function_of(entry: dict[str, Any]) -> str:
    config = entry.get("config")
    return str((config or {}).get("function") if isinstance(config, dict) else "")


def unsupported(entries: Iterator[dict[str, Any]]) -> list[str]:
    """A phrase for each op layer with no exact ``keras.ops`` equivalent, naming its function
    (``tf.compat.v1.shape (a tensor's run-time shape ...)``); empty when all can be rebuilt."""
    found: dict[str, str] = {}
    for entry in entries:
        if entry.get("class_name") not in OP_CLASSES:
            continue
        function = function_of(entry)
        if function == GETITEM or function in TF_OPS or function in SHAPE_FUNCTIONS:
            continue
        if function in UNFOLDED_SHAPE_FUNCTIONS:
            reason = "a tensor's run-time shape, which a Keras 3 model has no operation for"
        else:
            reason = "no keras.ops function computes exactly the same"
        found.setdefault(f"tf.{function}", reason)
    return [f"{name} ({reason})" for name, reason in found.items()]


def has_ops(entries: Iterator[dict[str, Any]]) -> bool:
    return any(entry.get("class_name") in OP_CLASSES for entry in entries)


def call(
    keras: ModuleType, entry: dict[str, Any], first: Any, kwargs: dict[str, Any], name: str
) -> Any:
    """Call the ``keras.ops`` equivalent of an op layer on its (resolved) arguments.

    Raises:
        OpError: an argument the equivalent cannot take, at a value that matters.
    """
    function = function_of(entry)
    if function in SHAPE_FUNCTIONS:
        return Static(
            [
                RuntimeDim(function, name, axis) if dim is None else int(dim)
                for axis, dim in enumerate(first.shape)
            ]
        )
    static = not _has_tensors(keras, [first, kwargs])
    if function == GETITEM and static:  # a dimension picked out of a shape
        import numpy as np

        key = _slice_key(kwargs.get("slice_spec"), function, name)
        picked = np.asarray(first, dtype=object)[key]
        return Static(picked.tolist() if isinstance(picked, np.ndarray) else picked)
    runtime = _runtime_dims([first, kwargs])
    if runtime:
        dim = runtime[0]
        raise OpError(
            f"layer {name} uses dimension {dim.axis} of the shape that layer {dim.layer} "
            f"(tf.{dim.function}) gives, which is known only at run time and which a Keras 3 "
            "model has no operation for"
        )
    if function == GETITEM:
        return first[_slice_key(kwargs.get("slice_spec"), function, name)]
    op = TF_OPS.get(function)
    if op is None:
        raise OpError(f"layer {name} calls tf.{function}, which has no keras.ops equivalent")
    given = dict(kwargs)
    given.pop("name", None)
    values: list[Any] = [first]
    for parameter, default in op.parameters[1:]:
        value = given.pop(parameter, default)
        # TensorFlow functions take None for "the default" (which the table spells out).
        values.append(default if value is None and default is not REQUIRED else value)
    for argument, value in given.items():
        if argument in NEUTRAL_OP_ARGUMENTS and value == NEUTRAL_OP_ARGUMENTS[argument]:
            continue
        raise OpError(
            f"layer {name} calls tf.{function} with {argument}={value!r}, which "
            f"keras.ops.{op.keras_name} does not take"
        )
    if any(value is REQUIRED for value in values):
        missing = next(p for (p, _), v in zip(op.parameters, values, strict=True) if v is REQUIRED)
        raise OpError(f"layer {name} calls tf.{function} without its argument {missing}")
    result = getattr(keras.ops, op.keras_name)(*values)
    if not static:
        return result
    # As Python numbers: Keras writes them into the model's config (numpy scalars it cannot);
    # a float32 value widens to a Python float exactly and narrows back to itself.
    return Static(keras.ops.convert_to_numpy(result).tolist())


def _runtime_dims(value: Any) -> list[RuntimeDim]:
    if isinstance(value, RuntimeDim):
        return [value]
    if isinstance(value, (list, tuple)):
        return [dim for item in value for dim in _runtime_dims(item)]
    if isinstance(value, dict):
        return [dim for item in value.values() for dim in _runtime_dims(item)]
    return []


def _has_tensors(keras: ModuleType, value: Any) -> bool:
    if isinstance(value, keras.KerasTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensors(keras, item) for item in value)
    if isinstance(value, dict):
        return any(_has_tensors(keras, item) for item in value.values())
    return False


def _slice_key(spec: Any, function: str, name: str) -> Any:
    def one(item: Any) -> Any:
        if isinstance(item, dict) and item.get("class_name") == "__ellipsis__":
            return Ellipsis
        if isinstance(item, dict) and set(item) <= {"start", "stop", "step"}:
            bounds = [item.get("start"), item.get("stop"), item.get("step")]
            if not all(bound is None or isinstance(bound, int) for bound in bounds):
                raise OpError(
                    f"layer {name} slices a tensor with bounds computed in the model, which "
                    f"tf.{function} took and a Keras 3 slice does not"
                )
            return slice(*bounds)
        if item is None or isinstance(item, int):
            return item
        raise OpError(f"layer {name} slices a tensor with {item!r}, which Keras 3 cannot")

    if isinstance(spec, list):
        return tuple(one(item) for item in spec)
    return one(spec)
