"""Keras's own view of a cut's crossing tensors, for the feature cache tests: the symbolic
tensors of a functional model found by the names kfreeze gives them, and the frozen part run
twice in training mode (the purity oracle)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_CALL = re.compile(r"^(?P<name>.+?) \((?:call (?P<call>\d+))?(?:, )?(?:output (?P<out>\d+))?\)$")


def keras_tensors(model: Any) -> dict[str, Any]:
    """Every symbolic tensor of a functional model by the name of what made it (a layer's
    name, ``op:add`` for a plain operation between layers) and ``#index`` for a later
    output: what the walk calls ``conv1``, ``op:add``, ``two_headed (output 2)``."""
    from kfreeze_tui.core.runtime.keras_private import tensor_origin

    layers = {id(layer) for layer in model.layers}
    found: dict[str, Any] = {}
    seen: set[int] = set()
    pending = list(_flat(model.outputs))
    for layer in model.layers:
        for attribute in ("input", "output"):
            try:
                pending.extend(_flat(getattr(layer, attribute)))
            except (AttributeError, ValueError):  # a layer called several times
                continue
    while pending:
        tensor = pending.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        origin = tensor_origin(tensor)
        if origin is None:
            continue
        operation, node, index = origin
        name = operation.name if id(operation) in layers else f"op:{operation.name}"
        found.setdefault(name if not index else f"{name}#{index}", tensor)
        pending.extend(_flat(node.input_tensors))
    return found


def _flat(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flat(item)]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _flat(item)]
    return [value]


def crossing_tensors(model: Any, labels: tuple[str, ...]) -> list[Any]:
    """The Keras tensors behind a cut's labels (``conv4_block6_out``, ``add after conv2``,
    ``two_headed (output 2)``)."""
    tensors = keras_tensors(model)
    result = []
    for label in labels:
        name, index = label, 0
        match = _CALL.match(label)
        if match is not None:
            name = match.group("name")
            index = int(match.group("out") or 1) - 1
        if " after " in name:
            name = "op:" + name.split(" after ", 1)[0]
        key = name if not index else f"{name}#{index}"
        assert key in tensors, (label, key)
        result.append(tensors[key])
    return result


def per_example_shapes(model: Any, labels: tuple[str, ...]) -> list[tuple[int | None, ...]]:
    """The shapes (batch axis dropped) of the outputs of ``keras.Model(model.inputs,
    crossing)``, as Keras builds it."""
    import keras

    part = keras.Model(model.inputs, crossing_tensors(model, labels))
    return [tuple(output.shape[1:]) for output in part.outputs]


def run_twice(model: Any, labels: tuple[str, ...], batch: Any) -> tuple[list[Any], list[Any]]:
    """The frozen part (the model up to the crossing tensors) called twice with
    ``training=True`` on the same batch."""
    import keras

    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    part = keras.Model(inputs, crossing_tensors(model, labels))
    first = [np.asarray(t) for t in _flat(part(batch, training=True))]
    second = [np.asarray(t) for t in _flat(part(batch, training=True))]
    return first, second
