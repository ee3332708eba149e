"""What a stored Keras config is made of: model and layer entries, and the nodes that wire them.

Read by the checks, the repairs and the graph builder alike; nothing here changes a config.
A Keras 2 node is the structure of a layer's first call argument, each tensor a *leaf*
``[layer, node, tensor]`` or ``[layer, node, tensor, kwargs]``; a constant among the inputs is
the leaf ``["_CONSTANT_VALUE", -1, value]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: Classes whose config is a whole model (their ``layers`` are layer entries).
MODEL_CLASSES = ("Functional", "Model", "Sequential")
#: Keys under which a layer config holds the config of another layer (wrappers, RNN cells).
INNER_LAYER_KEYS = ("layer", "backward_layer", "cell")

#: The layer name Keras 2 wrote for a constant among a layer's inputs.
CONSTANT_VALUE = "_CONSTANT_VALUE"


def entry_name(entry: dict[str, Any]) -> str:
    """The name of a layer entry (its own, or its config's, or its class)."""
    config = entry.get("config")
    name = entry.get("name")
    if not name and isinstance(config, dict):
        name = config.get("name")
    return str(name or entry.get("class_name"))


def is_model_entry(entry: dict[str, Any]) -> bool:
    """An entry whose config is a whole model (a nested model, or a custom model class)."""
    config = entry.get("config")
    return str(entry.get("class_name")) in MODEL_CLASSES or (
        isinstance(config, dict) and isinstance(config.get("layers"), list)
    )


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


def is_leaf(item: Any) -> bool:
    """A Keras 2 node entry: ``[layer, node, tensor]`` or ``[layer, node, tensor, kwargs]``."""
    return (
        isinstance(item, list)
        and len(item) in (3, 4)
        and isinstance(item[0], str)
        and isinstance(item[1], int)
        and (item[0] == CONSTANT_VALUE or isinstance(item[2], int))
    )


def node_leaves(node: Any) -> Iterator[list[Any]]:
    """Every leaf of a Keras 2 node, in order."""
    if is_leaf(node):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from node_leaves(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from node_leaves(item)


def is_reference(value: Any, names: set[str]) -> bool:
    """``[layer, node, tensor]`` naming one of ``names``: a tensor among a call's arguments."""
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and value[0] in names
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )
