"""The one place kfreeze reads Keras internals, because no public API says the same.

Each function here has a test (tests/core/test_keras_private.py) that fails loudly when a
Keras release changes what it reads, so that the change is seen at once, not as a wrong
answer. Each says what it reads, the Keras version it was checked on, and what it does when
the attribute is not there. Nothing else in kfreeze reads an underscored Keras attribute.
"""

from __future__ import annotations

import sys
from typing import Any


def compiled_trainable_state(model: Any) -> dict[Any, bool] | None:
    """Each layer's ``trainable`` flag as it was when ``model.compile()`` last ran.

    Keras 3 records it in ``Trainer._compiled_trainable_state`` (to warn, on the first
    ``fit()`` after a change); there is no public accessor. Checked on Keras 3.15. None when
    the model was not compiled or the attribute is not there.
    """
    if not getattr(model, "compiled", False):
        return None
    state = getattr(model, "_compiled_trainable_state", None)
    return state if isinstance(state, dict) else None


def flatten_layers(layer: Any, include_self: bool = True) -> list[Any]:
    """Every layer inside ``layer`` at any depth, each once (in Keras's order, not that of
    ``.layers``).

    Reads ``Layer._flatten_layers`` (Keras 3.15), which also reaches the sublayers a
    subclassed layer tracks as attributes (keras-hub blocks), and a Sequential's own
    InputLayer, which ``.layers`` hides. When it is not there: a depth-first walk of
    ``.layers``, which differs only by those InputLayers (they hold no variables).

    Args:
        layer: a layer or model.
        include_self: put ``layer`` itself first.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if callable(flatten):
        return list(flatten(include_self=include_self))
    found: list[Any] = [layer] if include_self else []
    seen: set[int] = set()

    def visit(parent: Any) -> None:
        for child in getattr(parent, "layers", None) or []:
            if id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                visit(child)

    visit(layer)
    return found


def sublayers(layer: Any, is_model: bool | None = None) -> list[Any]:
    """The layers directly inside ``layer``, in a stable order: the walk's tree.

    For a model, ``.layers`` (public; its graph order). For any other layer, the sublayers
    Keras tracks as attributes (``MultiHeadAttention``'s ``query``, ``key``, ... EinsumDense
    projections; a keras-hub ``TransformerEncoder``'s attention, norms and dense layers), in
    the order they were assigned: ``Layer._flatten_layers(include_self=False,
    recursive=False)`` (Keras 3.15), the same list the ``trainable`` setter recurses into.
    Empty when the attribute is not there (such a layer is then walked as a leaf, its
    weights all its own).

    Args:
        layer: a layer or model.
        is_model: whether it is a ``keras.Model``, when the caller knows (saves a check in
            the walk of a 3,000-layer model).
    """
    if is_model is None:
        import keras

        is_model = isinstance(layer, keras.Model)
    if is_model:
        return list(getattr(layer, "layers", None) or [])
    flatten = getattr(layer, "_flatten_layers", None)
    if not callable(flatten):
        return []
    return list(flatten(include_self=False, recursive=False))


def built_input_shapes(layer: Any) -> dict[str, Any] | None:
    """The input shapes ``layer`` was built with, by the name of ``build``'s argument
    (``{"input_shape": (None, 8, 16)}``; a MultiHeadAttention's ``query_shape`` and
    ``value_shape``), with which ``compute_output_shape`` gives its output shape.

    Keras 3.15 records them in ``Layer._build_shapes_dict`` when a layer that overrides
    ``build`` is built (to rebuild it on loading); a layer without its own ``build``
    (Dropout, Softmax) has none. None when it is not there or not built.
    """
    shapes = getattr(layer, "_build_shapes_dict", None)
    if not isinstance(shapes, dict) or not shapes or not getattr(layer, "built", False):
        return None
    return dict(shapes)


def created_trainable_variables(layer: Any) -> list[Any] | None:
    """The variables ``layer`` itself created as trainable (kernels, gamma), frozen or not.

    ``layer.trainable = False`` empties ``trainable_weights`` and flips each variable's own
    flag, so no public API tells a frozen kernel from a moving mean; the list Keras 3.15
    keeps them in, ``Layer._trainable_variables``, does. None when it is not there (the
    caller then goes by the variables' flags).
    """
    created = getattr(layer, "_trainable_variables", None)
    return None if created is None else list(created)


def functional_graph(container: Any) -> Any:
    """The functional graph behind a model: the model itself when functional, the one a
    built Sequential keeps inside (``Sequential._functional``, Keras 3.15), else None (a
    subclassed model, an unbuilt Sequential, or a Keras where neither attribute is there)."""
    if hasattr(container, "_nodes"):
        return container
    return getattr(container, "_functional", None)


def inbound_nodes(layer: Any) -> list[Any]:
    """The nodes (``keras.src.ops.node.Node``) made by each call of ``layer`` on symbolic
    tensors, in any model, in call order: ``Operation._inbound_nodes`` (Keras 3.15).
    Empty when it is not there."""
    return list(getattr(layer, "_inbound_nodes", None) or [])


def nodes_in_graph(graph: Any, layer: Any) -> list[Any]:
    """The nodes through which ``layer`` takes part in ``graph``: one per call, in order.

    A shared layer called twice in a model has two; a layer also called in another model
    has nodes there that are not this graph's. Keras 3.15 keeps the graph's node keys in
    ``Functional._nodes`` as ``"{id(layer)}_ib-{i}"`` (``i`` indexing ``_inbound_nodes``).
    When ``_nodes`` is not there: the layer's only node if it has one, else none.
    """
    nodes = getattr(graph, "_nodes", None)
    inbound = inbound_nodes(layer)
    if nodes is None:
        return inbound[:1] if len(inbound) == 1 else []
    return [node for i, node in enumerate(inbound) if f"{id(layer)}_ib-{i}" in nodes]


def tensor_operation(tensor: Any) -> Any:
    """The operation (a layer, or an op such as ``x + 1``) that made a symbolic tensor:
    ``KerasTensor._keras_history.operation`` (Keras 3.15). None when the tensor has no
    history or the attribute is not there."""
    return getattr(getattr(tensor, "_keras_history", None), "operation", None)


def tensor_origin(tensor: Any) -> tuple[Any, Any, int] | None:
    """Where a symbolic tensor comes from: ``(operation, node, output index)``.

    Reads ``KerasTensor._keras_history`` (operation, node_index, tensor_index) and the
    operation's ``_inbound_nodes`` (Keras 3.15). None when the tensor has no history (a
    model input's own tensor has one, made by its InputLayer) or the attributes are absent.
    """
    history = getattr(tensor, "_keras_history", None)
    operation = tensor_operation(tensor)
    if operation is None:
        return None
    nodes = inbound_nodes(operation)
    index = getattr(history, "node_index", None)
    if not isinstance(index, int) or not 0 <= index < len(nodes):
        return None
    return operation, nodes[index], int(getattr(history, "tensor_index", 0))


#: Where Keras is while it loads a model: (module, function) of the frames that say how far
#: it has got, and the stage each one is.
_LOAD_FRAMES = {
    ("keras.src.models.functional", "functional_from_config"): "functional",
    ("keras.src.models.sequential", "from_config"): "sequential",
    ("keras.src.saving.saving_lib", "_load_container_state"): "weights",
}


def load_position(thread_id: int) -> tuple[str, int, int] | None:
    """How far ``keras.saving.load_model``, running in thread ``thread_id``, has got with
    the outermost model: ``(stage, done, total)`` in layers, the stage being ``layers``
    (layers made from their configs), ``connecting`` (layers called on their inputs) or
    ``weights`` (layers given their weights).

    Keras has no progress hook. This reads, without changing anything, the local variables
    of the Keras functions on that thread's stack: ``functional_from_config`` (the layers
    created, then the calls still to connect), ``Sequential.from_config`` (the layer being
    added) and ``saving_lib._load_container_state`` (the layer whose weights are read).
    None when the thread is in none of them, or they are no longer as read here.
    """
    try:
        frame = sys._current_frames().get(thread_id)
        found = None
        while frame is not None:
            kind = _LOAD_FRAMES.get((frame.f_globals.get("__name__"), frame.f_code.co_name))
            if kind is not None:
                position = _position(kind, frame.f_locals)
                found = position or found  # the outermost frame is the whole model's
            frame = frame.f_back
        return found
    except Exception:  # a Keras whose functions look otherwise: no position, the load goes on
        return None


def _position(kind: str, local: Any) -> tuple[str, int, int] | None:
    if kind == "functional":
        config = local.get("functional_config")
        created, waiting = local.get("created_layers"), local.get("unprocessed_nodes")
        if not isinstance(config, dict) or not isinstance(created, dict):
            return None
        total = len(config["layers"])
        if len(created) < total or not isinstance(waiting, dict):
            return "layers", len(created), total
        return "connecting", total - len(waiting), total
    if kind == "sequential":
        configs, current = local.get("layer_configs"), local.get("layer_config")
        if not isinstance(configs, list):
            return None
        return "layers", _index(configs, current), len(configs)
    container, current = local.get("container"), local.get("saveable")
    if not isinstance(container, list):
        return None
    return "weights", _index(container, current), len(container)


def _index(items: list[Any], item: Any) -> int:
    """The position of ``item`` (by identity) in ``items``: how many come before it."""
    return next((i for i, each in enumerate(items) if each is item), 0)


# The generated script's steps that find layers by their chains of names, put LoRA on and set
# the flags of a subclassed layer's sublayers (copied into it by
# kfreeze_tui.core.train.adapters.script_source; kfreeze itself uses build.apply_lora and
# build.apply_freeze). They read Layer._flatten_layers (Keras 3.15), as keras-hub's
# Backbone.enable_lora does, to reach a subclassed layer's sublayers.
def find_layers(model, names):  # noqa: ANN001, ANN201
    """The layers of ``model`` that ``names`` names, each by the names of the layers that
    hold it and its own, joined by "/" (``transformer_layer_0/self_attention_layer/query``):
    a dict from name to the layer and the layers holding it (the model first)."""
    names = set(names)
    found = {}

    def visit(layer, holders, prefix):  # noqa: ANN001, ANN202
        for inner in layer._flatten_layers(include_self=False, recursive=False):
            name = prefix + inner.name
            if name in names and name not in found:
                found[name] = (inner, holders)
            visit(inner, [*holders, inner], name + "/")

    visit(model, [model], "")
    missing = names - set(found)
    if missing:
        raise ValueError(f"the model has no layer {sorted(missing)[0]}")
    return found


def make_holders_trainable(holders):  # noqa: ANN001, ANN201
    """Make every layer in ``holders`` trainable (outermost first), each one's other layers
    keeping their flags (the setter sets every layer inside a layer)."""
    for holder in holders:
        if not holder.trainable:
            inside = holder._flatten_layers(include_self=False)
            flags = [(inner, inner.trainable) for inner in inside]
            holder.trainable = True
            for inner, flag in flags:
                inner.trainable = flag


def enable_lora_on(model, names, rank):  # noqa: ANN001, ANN201
    """Put LoRA of ``rank`` on the layers of ``model`` that ``names`` names (by chains of
    names, see find_layers), after the freeze: each layer (and every layer holding it, the
    model too) is made trainable first, since Keras creates A and B frozen in a frozen
    layer; a holder's other layers keep their flags. A layer whose LoRA is on already (a
    later training phase) gets its kernel frozen again: only A, B and the bias train.
    Returns how many layers."""
    found = find_layers(model, names)
    for layer, holders in found.values():
        make_holders_trainable(holders)
        layer.trainable = True
        if layer.lora_enabled:
            # Setting trainable made every weight of the layer trainable, the kernel that
            # enable_lora froze too (a phase sets the flags again): freeze it once more.
            for variable in layer.trainable_weights:
                if str(variable.path).rsplit("/", 1)[-1] in ("kernel", "embeddings"):
                    variable.trainable = False
        else:
            layer.enable_lora(rank)
    return len(found)


def set_sublayer_flags(model, flags):  # noqa: ANN001, ANN201
    """Set the trainable flags of layers inside subclassed layers, ``flags`` a dict from a
    chain of names (see find_layers) to the flag, outer layers before their sublayers
    (setting a layer's flag sets every layer inside it). Each flag goes off, then on: Keras
    runs no setter for a flag that does not change. A trainable layer's holders are made
    trainable, their other layers keeping their flags. Returns how many layers."""
    found = find_layers(model, flags)
    for name in sorted(flags, key=lambda name: name.count("/")):
        layer, holders = found[name]
        if flags[name]:
            make_holders_trainable(holders)
        layer.trainable = not flags[name]
        layer.trainable = flags[name]
    return len(found)
