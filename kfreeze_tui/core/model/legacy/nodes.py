"""The nodes of a legacy functional config, rewritten into what Keras 3 reads.

A Keras 2 node is the structure of the layer's first call argument, each tensor an entry
``[layer, node, tensor, kwargs]``; the other call arguments are in ``kwargs``, tensors among
them as ``[layer, node, tensor]``; constants as ``["_CONSTANT_VALUE", -1, value]``. Keras 3
reads neither the tensors among the arguments nor the constants. Keras 2's recurrent layers
(and Bidirectional) packed their ``initial_state`` tensors after the sequence in the first
argument; Keras 3 takes them as ``initial_state``. Keras 2 also numbered the calls of a nested
model from 1 and wrote a model's single input and output as one-element lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kfreeze_tui.core.model.legacy.arguments import LayerArguments
from kfreeze_tui.core.model.legacy.entries import (
    CONSTANT_VALUE,
    entry_name,
    is_leaf,
    is_model_entry,
    is_reference,
    node_leaves,
)
from kfreeze_tui.core.model.legacy.ops import OP_CLASSES
from kfreeze_tui.core.model.legacy.repairs import RepairLog


class NodeRepairs:
    """Turns the Keras 2 nodes that Keras 3's reader of old nodes gets wrong into Keras 3's
    node format (``{"args": ..., "kwargs": ...}``)."""

    def __init__(self, arguments: LayerArguments, log: RepairLog) -> None:
        self.arguments = arguments
        self.log = log

    def repair(self, entry: dict[str, Any], names: set[str]) -> None:
        """Rewrite the nodes of one layer entry; ``names`` are the layers of its model."""
        nodes = entry.get("inbound_nodes")
        if not isinstance(nodes, list):
            return
        class_name = str(entry.get("class_name"))
        layer_name = entry_name(entry)
        for index, node in enumerate(nodes):
            if isinstance(node, dict) and "args" in node:
                continue  # Keras 3's format already
            leaves = list(node_leaves(node))
            if not leaves:
                continue
            kwargs = self._call_kwargs(leaves, class_name, layer_name)
            rewritten = self._rewrite(node, leaves, kwargs, class_name, layer_name, names)
            if rewritten is not None:
                nodes[index] = rewritten

    def _call_kwargs(
        self, leaves: list[list[Any]], class_name: str, layer_name: str
    ) -> dict[str, Any]:
        """The call arguments of a node (its last leaf's), those Keras 3 does not take
        dropped."""
        kwargs: dict[str, Any] = {}
        dropped = False
        for leaf in leaves:
            if len(leaf) >= 4 and isinstance(leaf[3], dict):
                dropped |= self.arguments.call_arguments(leaf[3], class_name, layer_name)
                kwargs = leaf[3]
        if dropped:
            self.log.add(
                "call_arguments",
                "dropped call arguments Keras 2 recorded as None that Keras 3 does not "
                "take from {what}",
                class_name,
                layer_name,
            )
        return kwargs

    def _rewrite(
        self,
        node: Any,
        leaves: list[list[Any]],
        kwargs: dict[str, Any],
        class_name: str,
        layer_name: str,
        names: set[str],
    ) -> dict[str, Any] | None:
        """The node in Keras 3's format, or None where Keras 3 reads the old one right."""
        has_refs = _has_references(kwargs, names)
        constants = any(leaf[0] == CONSTANT_VALUE for leaf in leaves)
        packed = len(leaves) > 1 and self.arguments.is_recurrent(class_name)
        plain = isinstance(node, list) and all(is_leaf(item) for item in node)
        if not (has_refs or constants or packed or not plain):
            return None
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
        return {"args": [first], "kwargs": new_kwargs}


def renumber_nested(inner: dict[str, Any], layers: list[dict[str, Any]], log: RepairLog) -> None:
    """Keras 2 numbered the calls of a nested model from 1 (node 0 was the model's own);
    Keras 3 numbers them from 0. A reference past the last call can only mean the old
    numbering."""
    calls = {}
    for entry in layers:
        nodes = entry.get("inbound_nodes")
        if is_model_entry(entry) and isinstance(nodes, list):
            calls[str(entry.get("name") or entry["config"].get("name"))] = len(nodes)
    if not calls:
        return
    references = list(_references(inner, layers))
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
        log.add(
            "nested_calls",
            "renumbered the calls of {n} nested model{s} from Keras 2's 1 to Keras 3's 0",
            "",
            name,
        )


def single_io(inner: dict[str, Any], model_name: str, log: RepairLog) -> None:
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
        log.add(
            "single_io",
            "read the one-element input and output lists of {n} nested model{s} as "
            "single tensors, as Keras 2 did",
            "",
            model_name,
        )


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


def _tensor(reference: list[Any]) -> dict[str, Any]:
    """A Keras 3 reference to a tensor; Keras puts the real tensor in its place, so the
    shape and dtype written here are never used."""
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": [], "dtype": "float32", "keras_history": list(reference[:3])},
    }


def _node_structure(node: Any) -> Any:
    if is_leaf(node):
        return node[2] if node[0] == CONSTANT_VALUE else _tensor(node)
    if isinstance(node, list):
        return [_node_structure(item) for item in node]
    if isinstance(node, dict):
        return {key: _node_structure(item) for key, item in node.items()}
    return node


def _has_references(value: Any, names: set[str]) -> bool:
    if is_reference(value, names):
        return True
    if isinstance(value, list):
        return any(_has_references(item, names) for item in value)
    if isinstance(value, dict):
        return any(_has_references(item, names) for item in value.values())
    return False


def _tensor_kwargs(value: Any, names: set[str]) -> Any:
    if is_reference(value, names):
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
