"""A Keras 3 config made from a legacy one: the walk over its models and layers.

Each layer entry, nested models' and wrapped layers' included, is repaired by rule
(:mod:`~kfreeze_tui.core.model.legacy.arguments` for the arguments Keras 3 no longer takes,
:mod:`~kfreeze_tui.core.model.legacy.hard_sigmoid` for the activation Keras 3 changed,
:mod:`~kfreeze_tui.core.model.legacy.nodes` for the wiring), and each repair is recorded; a
change that would alter what the model computes is refused with a sentence instead.
"""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

from kfreeze_tui.core.model.legacy import hard_sigmoid, nodes
from kfreeze_tui.core.model.legacy.arguments import LayerArguments
from kfreeze_tui.core.model.legacy.entries import INNER_LAYER_KEYS, entry_name, is_model_entry
from kfreeze_tui.core.model.legacy.ops import OP_CLASSES
from kfreeze_tui.core.model.legacy.repairs import Repair, RepairLog


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
    log = RepairLog()
    _Repairer(keras, custom or {}, log).model(config, top=True)
    return config, log.repairs()


class _Repairer:
    def __init__(self, keras: ModuleType, custom: dict[str, Any], log: RepairLog) -> None:
        self.keras = keras
        self.custom = custom
        self.log = log
        self.arguments = LayerArguments(keras, custom, log)
        self.nodes = nodes.NodeRepairs(self.arguments, log)

    def model(self, entry: dict[str, Any], top: bool = False) -> None:
        """A model entry: its class, its layout, its layers, and (for a functional model) the
        nodes that wire them."""
        inner = self._model_layout(entry, top)
        if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
            return
        layers = [layer for layer in inner["layers"] if isinstance(layer, dict)]
        if entry["class_name"] == "Sequential":
            self._sequential_input(inner, layers)
            layers = [layer for layer in inner["layers"] if isinstance(layer, dict)]
        for layer in layers:
            self.layer(layer)
        if entry["class_name"] != "Sequential":
            self._wiring(entry, inner, layers, top)

    def _model_layout(self, entry: dict[str, Any], top: bool) -> Any:
        """Keras 2.2's class ``Model`` and bare-list Sequential configs read as Keras 3's;
        the model's own config returned."""
        if str(entry.get("class_name")) == "Model":
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
        return inner

    def _wiring(
        self, entry: dict[str, Any], inner: dict[str, Any], layers: list[dict[str, Any]], top: bool
    ) -> None:
        """The nodes of a functional model's layers, the numbering of its nested models'
        calls, and (for a nested model) its single input and output."""
        names = {entry_name(layer) for layer in layers}
        for layer in layers:
            self.nodes.repair(layer, names)
        nodes.renumber_nested(inner, layers, self.log)
        if not top:
            model_name = str(inner.get("name") or entry.get("name") or "model")
            nodes.single_io(inner, model_name, self.log)

    def layer(self, entry: dict[str, Any]) -> None:
        """A layer entry (or a nested model's), and the layers inside it."""
        class_name = str(entry.get("class_name"))
        config = entry.get("config")
        self._strip_module(entry)
        if is_model_entry(entry):
            self.model(entry)
            return
        if not isinstance(config, dict):
            return
        layer_name = str(config.get("name") or entry.get("name") or class_name)
        if class_name in OP_CLASSES:
            self.log.add("tf_ops", "rebuilt {what} as keras.ops calls", class_name, layer_name)
        hard_sigmoid.repair_activations(
            class_name, layer_name, config, self.keras, self.custom, self.log
        )
        self.arguments.repair(class_name, layer_name, config)
        self.arguments.dtype_policy(class_name, layer_name, config)
        self._input_shape(class_name, layer_name, config)
        if class_name == "BatchNormalization":
            axis = config.get("axis")
            if isinstance(axis, list) and len(axis) == 1:
                config["axis"] = int(axis[0])
        self._inner_layers(class_name, layer_name, config)

    def _input_shape(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        """Keras 2's ``batch_input_shape``: an InputLayer's ``batch_shape`` in Keras 3, and a
        copy that other layers kept, dropped."""
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

    def _inner_layers(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        """The layers a wrapper or an RNN holds (its ``layer``, ``cell`` or ``cells``)."""
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
