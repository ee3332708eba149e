"""Keras 2's ``hard_sigmoid``, kept exactly in Keras 3, or refused by name.

Keras 2's hard_sigmoid is clip(0.2x + 0.5, 0, 1); Keras 3's, under the same name, is
clip(x/6 + 0.5, 0, 1). Where the input of the activation is affine in the weights of the layer
that applies it (a Dense's kernel and bias, the gate columns of an LSTM or GRU), scaling those
weights by 1.2 once they are loaded keeps what the model computes. Where no weights of the
layer make its whole input (an ``Activation`` layer, an LSTM's cell state), the file is refused
before the model is built: it would load and compute something else.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LegacyError
from kfreeze_tui.core.model.legacy.repairs import RepairLog

#: Activations that Keras 3 computes otherwise than Keras 2 did under the same name, with
#: Keras 2's formula and Keras 3's (a test compares every activation the two share).
CHANGED_ACTIVATIONS: dict[str, tuple[str, str]] = {
    "hard_sigmoid": ("clip(0.2 * x + 0.5, 0, 1)", "clip(x / 6 + 0.5, 0, 1)"),
}
#: Keras 2's hard_sigmoid(z) is Keras 3's hard_sigmoid(1.2 * z): where z is affine in the
#: weights of the layer that applies it, scaling those weights by 1.2 keeps what it computes.
HARD_SIGMOID_SCALE = 1.2
#: The names of the weights to scale, and (number of gates in their last axis, the gates to
#: scale), or None for every column.
WeightsSpec = tuple[tuple[str, ...], tuple[int, tuple[int, ...]] | None]
_AFFINE = ("kernel", "bias")
_RECURRENT = ("kernel", "recurrent_kernel", "bias")
#: Where Keras 2's hard_sigmoid is kept exactly, by Keras 3 class and activation argument: the
#: weights that make its input, and (number of gates in their last axis, the gates it applies
#: to), or None for every column. RNN layers are listed with their cells (the weights live in
#: the cell); a gate's columns are Keras's [i, f, c, o] (LSTM) and [z, r, h] (GRU).
HARD_SIGMOID_WEIGHTS: dict[tuple[str, str], WeightsSpec] = {
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


def repair_activations(
    class_name: str,
    layer_name: str,
    config: dict[str, Any],
    keras: ModuleType,
    custom: dict[str, Any],
    log: RepairLog,
) -> None:
    """Keep Keras 2's hard_sigmoid where the layer's own weights make its input (those
    weights are scaled by 1.2 once loaded, by :func:`keep_hard_sigmoid`); refuse it where
    none do, as the model would load and compute something else.

    Raises:
        LegacyError: a changed activation that no weights of its layer can keep.
    """
    cls = None if class_name in custom else getattr(keras.layers, class_name, None)
    keras3 = cls.__name__ if isinstance(cls, type) else class_name
    if not _changed_activations(class_name, layer_name, config, keras3):
        return
    log.add(
        "hard_sigmoid",
        "kept Keras 2's hard_sigmoid (clip(0.2 * x + 0.5, 0, 1)) exactly by scaling by "
        f"{HARD_SIGMOID_SCALE} the weights that make its input in {{what}}",
        class_name,
        layer_name,
    )
    if _has_penalties(config, keras3):
        log.add(
            "hard_sigmoid_penalties",
            "the regularizers and constraints of {what} see the weights scaled for "
            "hard_sigmoid (what the model computes is unchanged; training penalties differ)",
            class_name,
            layer_name,
        )


def _changed_activations(
    class_name: str, layer_name: str, config: dict[str, Any], keras3: str
) -> bool:
    """Whether the layer has activations Keras 3 changed, all of them kept by scaling the
    weights of its Keras 3 class ``keras3``; one that cannot be kept is refused."""
    changed = False
    for key, value in config.items():
        if not key.endswith("activation"):
            continue
        name = value.get("class_name") if isinstance(value, dict) else value
        if not isinstance(name, str) or name not in CHANGED_ACTIVATIONS:
            continue
        if (keras3, key) not in HARD_SIGMOID_WEIGHTS:
            raise _refused(class_name, layer_name, key, name, keras3)
        changed = True
    return changed


def _has_penalties(config: dict[str, Any], keras3: str) -> bool:
    """Whether regularizers or constraints of the layer act on the weights that get scaled."""
    return any(
        argument.endswith(("_regularizer", "_constraint"))
        and argument != "activity_regularizer"  # on the output: unchanged
        and not (keras3.startswith("SeparableConv") and argument.startswith("depthwise"))
        and setting is not None
        for argument, setting in config.items()
    )


def _refused(class_name: str, layer_name: str, key: str, name: str, keras3: str) -> LegacyError:
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


def keep_hard_sigmoid(model: Any, keras: ModuleType, source: str) -> int:
    """Scale by 1.2 the loaded weights that make the input of every hard_sigmoid in ``model``,
    so that Keras 3's hard_sigmoid computes Keras 2's (see :data:`HARD_SIGMOID_WEIGHTS`).

    Call it once, after the weights are loaded, on a model rebuilt from a legacy config that
    :func:`repair_activations` accepted. A layer shared by several models is scaled once.

    Returns:
        how many layers or cells were scaled.

    Raises:
        LegacyError: a hard_sigmoid whose input no weights of its layer make (which
            :func:`repair_activations` refuses before the model is built).
    """
    hard_sigmoid = keras.activations.get("hard_sigmoid")
    scaled = 0
    for layer in _layers_and_cells(model, set()):
        if hasattr(layer, "cell"):
            continue  # an RNN layer: its weights and activations are its cell's
        for key in ("activation", "recurrent_activation"):
            if getattr(layer, key, None) is not hard_sigmoid:
                continue
            _scale(layer, _scaled_weights(layer, key, source))
            scaled += 1
    return scaled


def _scaled_weights(layer: Any, key: str, source: str) -> WeightsSpec:
    """The entry of :data:`HARD_SIGMOID_WEIGHTS` for this layer's ``key`` activation."""
    spec = HARD_SIGMOID_WEIGHTS.get((type(layer).__name__, key))
    if spec is None or not type(layer).__module__.startswith("keras."):
        raise LegacyError(
            f"{source}: layer {layer.name} ({type(layer).__name__}) has "
            f"{key}='hard_sigmoid', whose Keras 2 meaning no weights of the layer keep",
            "rebuild that layer in Keras 3 code and save it with model.save()",
            kind="repair",
        )
    return spec


def _scale(layer: Any, spec: WeightsSpec) -> None:
    """Scale the weights of ``layer`` that ``spec`` names by 1.2: every column, or the chosen
    gates'."""
    import numpy as np

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
