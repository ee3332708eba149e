"""A Keras 3 model built from a repaired config.

Through Keras's public deserializer where it can (``keras.saving.deserialize_keras_object``
takes legacy layer entries, those without ``module``, through Keras's own legacy
deserializer), and, for a model holding tf.keras op layers, by calling its layers node by node
in the order of their nodes, as Keras's ``from_config`` does, with the op layers called as
``keras.ops`` (:mod:`~kfreeze_tui.core.model.legacy.ops`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LegacyError
from kfreeze_tui.core.model.legacy import ops as legacy_ops
from kfreeze_tui.core.model.legacy.entries import (
    CONSTANT_VALUE,
    entry_name,
    is_leaf,
    is_model_entry,
    is_reference,
    layer_entries,
    node_leaves,
)

#: A layer's name, its entry, and one of its nodes: a call still to make.
_Pending = tuple[str, dict[str, Any], Any]


def build(
    config: dict[str, Any],
    keras: ModuleType,
    custom: dict[str, Any],
    unsafe: bool,
    source: str = "the model",
) -> Any:
    """A Keras 3 model from a repaired config, through Keras's public deserializer (or, for
    a model holding tf.keras op layers, by calling its layers node by node)."""

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
        """A functional model: its layers built, then called node by node."""
        inner = config["config"]
        layers, calls, pending = self._layers(inner)
        self._call_in_order(inner, layers, calls, pending)
        inputs = self._io(inner.get("input_layers"), calls)
        outputs = self._io(inner.get("output_layers"), calls)
        return self.keras.Model(
            inputs, outputs, name=inner.get("name"), trainable=inner.get("trainable", True)
        )

    def _layers(
        self, inner: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, list[Any]], list[_Pending]]:
        """Each layer by name (an op layer's entry, to be called as ``keras.ops``), the calls
        made so far (an InputLayer's output), and the calls to make, in the file's order."""
        layers: dict[str, Any] = {}
        calls: dict[str, list[Any]] = {}
        pending: list[_Pending] = []
        for entry in inner["layers"]:
            name = entry_name(entry)
            calls[name] = []
            if entry.get("class_name") in legacy_ops.OP_CLASSES:
                layers[name] = entry
            else:
                layers[name] = self._layer(entry)
                if entry.get("class_name") == "InputLayer":
                    calls[name].append(layers[name].output)
            for node in entry.get("inbound_nodes") or []:
                pending.append((name, entry, node))
        return layers, calls, pending

    def _call_in_order(
        self,
        inner: dict[str, Any],
        layers: dict[str, Any],
        calls: dict[str, list[Any]],
        pending: list[_Pending],
    ) -> None:
        """Make every pending call once its inputs exist, a layer's calls in their order."""
        while pending:
            waiting: list[_Pending] = []
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
                stuck = ", ".join(sorted({name for name, _, _ in waiting})[:3])
                raise self._broken(
                    f"has layers whose inputs never appear in the model {inner.get('name')} "
                    f"({stuck})"
                )
            pending = waiting

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
        if is_model_entry(layer_entry):
            return build(layer_entry, self.keras, self.custom, self.unsafe, self.source)
        if class_name not in self.custom and hasattr(self.keras.layers, class_name):
            layer_entry.update(module="keras.layers", registered_name=None)
        return self.keras.saving.deserialize_keras_object(
            layer_entry, custom_objects=self.custom or None, safe_mode=not self.unsafe
        )

    def _call(
        self, layer: Any, entry: dict[str, Any], name: str, first: Any, kwargs: dict[str, Any]
    ) -> Any:
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
            raise self._broken(f"has a node that refers to a layer {name} it does not have")
        if len(made) <= node:
            raise _NotYet
        value = self.keras.tree.flatten(made[node])[index]
        return value.value if isinstance(value, legacy_ops.Static) else value

    def _broken(self, what: str) -> LegacyError:
        """The file's graph does not hold together (``what`` is wrong with it)."""
        return LegacyError(
            f"{self.source} {what}", "save the model again with model.save()", kind="graph"
        )

    def _arguments(self, node: Any, calls: dict[str, list[Any]]) -> tuple[Any, dict[str, Any]]:
        names = set(calls)

        def resolve(value: Any) -> Any:
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                return self._tensor(value["config"]["keras_history"], calls)
            if is_reference(value, names):
                return self._tensor(value, calls)
            if isinstance(value, list):
                return [resolve(item) for item in value]
            if isinstance(value, dict):
                return {key: resolve(item) for key, item in value.items()}
            return value

        if isinstance(node, dict) and "args" in node:
            args = resolve(node["args"])
            return (args[0] if args else None), resolve(node.get("kwargs") or {})
        leaves = list(node_leaves(node))
        kwargs: dict[str, Any] = {}
        for leaf in leaves:
            if len(leaf) >= 4 and isinstance(leaf[3], dict):
                kwargs = leaf[3]

        def first_of(value: Any) -> Any:
            if is_leaf(value):
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
