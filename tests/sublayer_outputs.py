"""The shapes of the tensors sublayers return when Keras runs a model on real inputs: the
outside reference for the output shapes the walk shows for a subclassed layer's sublayers.

Keras's ``Layer.__call__`` runs ``self.call`` (Keras 3.15), so a ``call`` set on one layer
instance sees every real output of that layer, however its parent calls it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def shapes_when_run(model: Any, inputs: Any, layers: Iterable[Any]) -> dict[int, list[tuple]]:
    """Run ``model(inputs)`` and return, by ``id(layer)``, the shape of each tensor each of
    ``layers`` returned (one list per layer, one shape per call and output)."""
    import keras

    seen: dict[int, list[tuple]] = {}
    wrapped = []
    for layer in layers:
        inner = layer.call

        def call(*args: Any, _inner: Any = inner, _id: int = id(layer), **kwargs: Any) -> Any:
            out = _inner(*args, **kwargs)
            for tensor in keras.tree.flatten(out):
                if hasattr(tensor, "shape"):
                    seen.setdefault(_id, []).append(tuple(int(d) for d in tensor.shape))
            return out

        object.__setattr__(layer, "call", call)
        wrapped.append(layer)
    try:
        model(inputs)
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
    return seen


def agrees(shown: tuple[int | None, ...], actual: tuple[int, ...]) -> bool:
    """Whether a shape the walk shows (None for a dimension it leaves open, such as the
    batch) describes a tensor of shape ``actual``."""
    return len(shown) == len(actual) and all(
        s is None or s == a for s, a in zip(shown, actual, strict=False)
    )
