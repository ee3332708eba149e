"""The layer walk: a ``keras.Model`` into plain frozen dataclasses.

No Keras object escapes this module: the UI and the command line get :class:`ModelInfo` and
:class:`LayerInfo`, which are cheap to copy, compare and render.

Trainable state is derived from the model's trainable weights, not from ``layer.trainable``
flags: after a save/load a nested Sequential and every InputLayer come back with
``trainable=True`` whatever they were, and a frozen container overrides its layers' flags.

The tree follows :func:`~kfreeze_tui.core.runtime.keras_private.sublayers`
(:func:`tree_sublayers`): a nested model's ``.layers``, and also the sublayers a subclassed
layer tracks as attributes (a
``MultiHeadAttention``'s ``query``/``key``/``value``/``attention_output`` EinsumDense layers,
a keras-hub ``TransformerEncoder``'s attention, norms and dense layers). Such a layer is a
container row (``is_container``, ``subclassed``) followed by its sublayers' rows, depth
first (``3.1.0``); a layer whose one sublayer holds all its weights (an LSTM's cell) stays a
leaf. Its sublayers have no functional graph: no wiring between them is invented (no
``inbound``), and their output shapes come from Keras's own rule, each layer's
``compute_output_shape`` for the shapes it was built with ("?" where that cannot tell:
a Dropout or Softmax has no recorded build shapes).

Every parameter is counted once. A container's *own* weights, those in none of its
sublayers (ViT's class token in its patching-and-embedding layer), are listed first in its
``weights`` (``own_weight_count`` of them); the plan treats such a container as a leaf for
those weights too (see :mod:`kfreeze_tui.core.plan.freeze`).
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kfreeze_tui.core.model import grouping
from kfreeze_tui.core.runtime.keras_private import (
    built_input_shapes,
    created_trainable_variables,
    flatten_layers,
    functional_graph,
    nodes_in_graph,
    sublayers,
    tensor_operation,
    tensor_origin,
)

Shape = tuple[int | None, ...]
T = TypeVar("T")
#: A plain operation between layers (``x + y``): its ``op:`` name and its inputs' names.
OpDef = tuple[str, tuple[str, ...]]

BATCH_NORM_CLASSES = frozenset({"BatchNormalization", "SyncBatchNormalization"})


@dataclass(frozen=True, slots=True)
class WeightInfo:
    """One weight variable of a layer."""

    name: str
    shape: Shape
    dtype: str
    trainable: bool
    can_train: bool = True
    """Whether training could ever update it (False for moving statistics), whatever the
    layer's flags say now; ``trainable`` is whether it is trainable in the model as loaded."""

    @property
    def size(self) -> int:
        """Number of scalars."""
        return math.prod(d or 0 for d in self.shape) if self.shape else 1


@dataclass(frozen=True, slots=True)
class CallInfo:
    """One call of a layer in its container's graph (a shared layer has several).

    Attributes:
        sources: its input tensors, named as :attr:`LayerInfo.sources` names them.
        input_shapes: their shapes, batch dimension included.
        output_shapes: the shapes this call makes.
    """

    sources: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]


def call_label(name: str, call: int, output: int = 0) -> str:
    """How a tensor a layer makes is named among tensors: the layer's name for the first
    output of its first call; ``encoder (call 2)`` for a later call (a shared layer),
    ``two_headed (output 2)`` for a later output, ``encoder (call 2, output 2)`` for both.

    Args:
        name: the layer's name.
        call: which call of the layer made it, from 0.
        output: which of that call's outputs it is, from 0 (Keras's ``tensor_index``).
    """
    parts = [f"call {call + 1}"] if call else []
    if output:
        parts.append(f"output {output + 1}")
    return f"{name} ({', '.join(parts)})" if parts else name


_LABEL_SUFFIX = re.compile(r" \((?:call \d+(?:, output \d+)?|output \d+)\)$")


def label_layer(label: str) -> str:
    """The layer behind a tensor's name (``encoder (call 2)`` -> ``encoder``)."""
    return _LABEL_SUFFIX.sub("", label)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One row of the layer tree.

    Attributes:
        index: position in its container's ``.layers``.
        path: indices from the root model, e.g. ``(0, 143)`` inside a wrapped base.
        name: the layer's name.
        class_name: its class, e.g. ``Conv2D``.
        output_shapes: one shape per output, batch dimension included, None for unknown dims.
        params: all parameters, including those of nested layers.
        trainable_params: parameters that training would update.
        non_trainable_params: the rest.
        trainable: whether training updates it (for weightless layers: its flags and its
            containers' flags).
        has_weights: whether it holds any weights.
        inbound: names of the layers that feed it in its container (in any of its calls).
        depth: 0 for the root model's layers, 1 inside a nested model, ...
        stage: stage number within its container (see :mod:`grouping`).
        block: block name within its container.
        stage_name: the stage's name: the architecture's own (``conv5``) or ``stage 5``.
        sources: its input tensors, over all its calls: layer names (``encoder (call 2)``
            for the output of a shared layer's second call, see :func:`call_label`), or
            ``op:add_3`` for the output of a plain operation (``x + y``) that is not a layer.
        ops: the definitions of those operations (and of the operations before them, up to
            the layers): ``("op:add_3", ("conv2d", "op:add_2"))``.
        is_container: whether it is a nested model or a layer with sublayers, whose
            layers follow it.
        child_count: how many layers it directly holds (0 unless a container).
        weights: its own and nested weights (a container's own ones first).
        calls: each call of the layer in its container's graph, in order (empty when the
            container has no graph); a shared layer has several, and every one counts for
            cuts, blocks and cost.
        activation: the name of its own activation function (a Dense's ``softmax``,
            ``relu``, ``linear``; an Activation layer's), empty for a layer without one.
        lora_kernel: the shape of the weight ``enable_lora`` would adapt (a Dense, EinsumDense
            or Conv kernel, an Embedding's embeddings); None when the layer has no
            ``enable_lora`` (or is not built).
        lora_enabled: LoRA is already on in the model as loaded.
        subclassed: a container that is not a model (its sublayers are attributes, with no
            graph between them), or a row inside one: a cut there is not a clean cut.
        own_weight_count: how many of ``weights`` (the first ones) a container holds
            itself, in none of its layers (0 for a leaf: all its weights are its own).
    """

    index: int
    path: tuple[int, ...]
    name: str
    class_name: str
    output_shapes: tuple[Shape, ...]
    params: int
    trainable_params: int
    non_trainable_params: int
    trainable: bool
    has_weights: bool
    inbound: tuple[str, ...]
    depth: int
    stage: int
    block: str
    stage_name: str = ""
    sources: tuple[str, ...] = ()
    ops: tuple[OpDef, ...] = ()
    is_container: bool = False
    child_count: int = 0
    weights: tuple[WeightInfo, ...] = ()
    calls: tuple[CallInfo, ...] = ()
    activation: str = ""
    lora_kernel: Shape | None = None
    lora_enabled: bool = False
    subclassed: bool = False
    own_weight_count: int = 0

    @property
    def lora_supported(self) -> bool:
        """Whether the layer can take LoRA (its class has ``enable_lora``)."""
        return self.lora_kernel is not None

    @property
    def own_weights(self) -> tuple[WeightInfo, ...]:
        """The weights the layer holds itself: all of a leaf's, a container's own ones."""
        return self.weights[: self.own_weight_count] if self.is_container else self.weights

    @property
    def is_leaf(self) -> bool:
        """Whether the plan sets its state itself: a layer without sublayers, or a
        container with weights of its own (for those; its layers are leaves of their own)."""
        return not self.is_container or self.own_weight_count > 0

    @property
    def own_trainable_size(self) -> int:
        """:attr:`trainable_size` of :attr:`own_weights`."""
        return sum(w.size for w in self.own_weights if w.can_train)

    @property
    def own_has_weights(self) -> bool:
        """Whether it holds weights of its own."""
        return bool(self.own_weights)

    @property
    def own_trainable(self) -> bool:
        """Whether any of its own weights trains in the model as walked (its flags for a
        layer without weights)."""
        own = self.own_weights
        return any(w.trainable for w in own) if own else self.trainable

    @property
    def call_count(self) -> int:
        """How many times the layer runs in a forward pass of its container (at least 1)."""
        return max(1, len(self.calls))

    @property
    def trainable_size(self) -> int:
        """Parameters training updates when the layer is trainable (not moving statistics)."""
        return sum(w.size for w in self.weights if w.can_train)

    @property
    def path_text(self) -> str:
        """The path as the UI shows it: ``143``, or ``0.143`` inside a nested model."""
        return ".".join(str(i) for i in self.path)

    @property
    def output_shape(self) -> Shape | None:
        """The first output shape (most layers have exactly one)."""
        return self.output_shapes[0] if self.output_shapes else None

    @property
    def output_shape_text(self) -> str:
        """Shapes as Keras prints them: ``(None, 7, 7, 512)``; several joined by ``, ``."""
        return ", ".join(format_shape(s) for s in self.output_shapes) or "?"

    @property
    def is_batch_norm(self) -> bool:
        """Whether it is a BatchNormalization layer (frozen ones run in inference mode)."""
        return self.class_name in BATCH_NORM_CLASSES

    @property
    def parent_path(self) -> tuple[int, ...]:
        """The path of the container that holds it (``()`` for the root)."""
        return self.path[:-1]


@dataclass(frozen=True)
class ModelInfo:
    """A walked model.

    Attributes:
        name: the model's name.
        source: where it came from (a catalog name or a path).
        description: one line about it (architecture, size, weights).
        input_shapes: one shape per model input.
        output_shapes: one shape per model output.
        total_params: ``model.count_params()``.
        trainable_params: size of ``model.trainable_weights``.
        non_trainable_params: the rest.
        layers: every layer, depth first: a container is followed by its layers.
        random_weights: the weights are random (``--weights none``).
        dtype_policy: the model's Keras dtype policy (``float32``, ``mixed_float16``, ...).
        output_layers: the root model's layers that make its outputs, in the model's output
            order (a layer making several outputs once); empty when Keras does not say.
        output_keys: for a model whose outputs are a dict (keras-hub backbones:
            ``pooled_output``, ``sequence_output``), each key and the layer that makes it, in
            the dict's order; empty for a model whose outputs are a tensor or a list.
        input_keys: the keys of a model that takes a dict of inputs (``token_ids``,
            ``padding_mask``), in the dict's order; empty otherwise.
    """

    name: str
    source: str
    description: str
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    layers: tuple[LayerInfo, ...]
    random_weights: bool = False
    dtype_policy: str = "float32"
    output_layers: tuple[str, ...] = ()
    output_keys: tuple[tuple[str, str], ...] = ()
    input_keys: tuple[str, ...] = ()
    _by_path: dict[tuple[int, ...], LayerInfo] = field(
        default_factory=dict, repr=False, compare=False
    )
    _memo: dict[object, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_path.update({layer.path: layer for layer in self.layers})

    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """``compute()``, once per model: for answers that the UI asks for on every keypress
        and that depend on the model alone (the model never changes once walked)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    @property
    def top_level(self) -> tuple[LayerInfo, ...]:
        """The root model's own layers, as ``model.layers`` gives them."""
        return self.memo("top_level", lambda: tuple(row for row in self.layers if row.depth == 0))

    def layer(self, path: tuple[int, ...]) -> LayerInfo:
        """The layer at ``path`` (KeyError if there is none)."""
        return self._by_path[path]

    def children(self, path: tuple[int, ...]) -> tuple[LayerInfo, ...]:
        """The layers directly inside the container at ``path`` (``()`` is the root)."""
        depth = len(path)
        return tuple(
            layer for layer in self.layers if layer.depth == depth and layer.path[:-1] == path
        )

    def find(self, name: str) -> LayerInfo | None:
        """The first layer (depth first) called ``name``."""
        return next((layer for layer in self.layers if layer.name == name), None)

    @property
    def trainable_fraction(self) -> float:
        """Trainable parameters as a fraction of all (0 for a model without weights)."""
        return self.trainable_params / self.total_params if self.total_params else 0.0


def format_shape(shape: Shape | None) -> str:
    """``(None, 7, 7, 512)``, as Keras prints shapes."""
    if shape is None:
        return "?"
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _shape(value: Any) -> Shape:
    return tuple(None if d is None else int(d) for d in value)


def _tensor_shapes(tensors: Any) -> tuple[Shape, ...]:
    if tensors is None:
        return ()
    if isinstance(tensors, dict):
        tensors = list(tensors.values())
    if not isinstance(tensors, (list, tuple)):
        tensors = [tensors]
    shapes: list[Shape] = []
    for tensor in tensors:
        if isinstance(tensor, (list, tuple, dict)):
            shapes.extend(_tensor_shapes(tensor))
        elif hasattr(tensor, "shape"):
            shapes.append(_shape(tensor.shape))
    return tuple(shapes)


def _inbound_sources(
    node: Any, calls: dict[int, tuple[str, int]]
) -> tuple[tuple[str, ...], tuple[OpDef, ...]]:
    """The tensors feeding a node, and the plain operations that make some of them.

    A functional graph may hold operations that are not layers (``x + 3.0`` in MobileNetV3's
    hard-swish, ConvNeXt's residual ``x + y``); they are not in ``.layers``. An input made by
    one is named ``op:<operation name>`` and defined by the inputs of that operation.

    Args:
        node: the node (one call of a layer).
        calls: for each node of a layer in the container, by node id: the layer's name and
            which of its calls the node is.

    Returns:
        The input names (see :func:`call_label`, or ``op:`` names) and the definitions of
        every operation between the node and the layers before it.
    """
    ops: dict[str, tuple[str, ...]] = {}

    def label(tensor: Any) -> str | None:
        origin = tensor_origin(tensor)
        if origin is None:
            return None
        operation, parent, output = origin
        if id(parent) in calls:
            name, call = calls[id(parent)]
            return call_label(name, call, output)
        key = f"op:{operation.name}"
        if key not in ops:
            ops[key] = ()  # a placeholder while its inputs are named
            ops[key] = labels_of(parent)
        return key

    def labels_of(of: Any) -> tuple[str, ...]:
        found = (label(tensor) for tensor in of.input_tensors)
        return tuple(dict.fromkeys(x for x in found if x is not None))

    return labels_of(node), tuple(ops.items())


def tensors_behind(names: tuple[str, ...], ops: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The layers' tensors behind inputs that may be operations' outputs (``encoder``,
    ``encoder (call 2)``): what a layer reads once the plain operations are looked through."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(reversed(names))
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith("op:"):
            stack.extend(reversed(ops.get(name, ())))
        else:
            found.append(name)
    return tuple(found)


def layers_behind(names: tuple[str, ...], ops: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The layers behind inputs that may be operations' outputs (what ``inbound`` shows)."""
    return tuple(dict.fromkeys(label_layer(name) for name in tensors_behind(names, ops)))


def call_inputs(row: LayerInfo) -> tuple[tuple[str, ...], ...]:
    """What each call of a layer reads, operations looked through: ``(("pa",), ("pb",))`` for
    a Dense shared by two branches. One entry (its inbound layers) for a layer walked
    without a graph."""
    if not row.calls:
        return (row.inbound,)
    ops = dict(row.ops)
    return tuple(tensors_behind(call.sources, ops) for call in row.calls)


def tree_sublayers(layer: Any, is_model: bool) -> list[Any]:
    """The layers the tree shows under ``layer`` (empty: a leaf).

    A model's layers, and the sublayers of any other layer, except when a layer has exactly
    one sublayer and no weights of its own (an LSTM's cell, a TimeDistributed's layer): that
    row would only repeat its parent, which freezes and trains with it.
    """
    inner = sublayers(layer, is_model)
    if is_model or len(inner) != 1:
        return inner
    return inner if own_variables(layer, inner) else []


def own_variables(layer: Any, inner: list[Any] | None = None) -> list[Any]:
    """The variables ``layer`` holds itself, in none of its sublayers (public API only).

    Args:
        layer: a Keras layer.
        inner: its sublayers, when the caller has them already.
    """
    inner = sublayers(layer) if inner is None else inner
    nested = {id(v) for child in inner for v in child.weights}
    return [v for v in _unique(layer.weights) if id(v) not in nested]


def walk(
    model: Any, source: str = "", description: str = "", random_weights: bool = False
) -> ModelInfo:
    """Walk a Keras model into a :class:`ModelInfo`.

    Args:
        model: a built ``keras.Model`` (functional, Sequential or nested).
        source: where it came from, kept for headers and plans.
        description: one line about it.
        random_weights: the weights are random, which the UI says.

    Returns:
        The walked model; no Keras object is kept in it.
    """
    import keras

    trainable_ids = {id(v) for v in model.trainable_weights}
    can_train_ids = _trainable_kind_ids(model)
    rows: list[LayerInfo] = []
    # A collection in the middle of a 1,000-layer walk costs more than the walk itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        context = _WalkContext(trainable_ids, can_train_ids, keras.Model, rows)
        _walk_layers(model, (), 0, True, context)
    finally:
        if gc_was_enabled:
            gc.enable()
    all_weights = _unique(model.weights)
    total = sum(_size(v) for v in all_weights)
    trainable = sum(_size(v) for v in all_weights if id(v) in trainable_ids)
    return ModelInfo(
        name=model.name,
        source=source,
        description=description or model.name,
        input_shapes=_tensor_shapes(getattr(model, "inputs", None)),
        output_shapes=_tensor_shapes(getattr(model, "outputs", None)),
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        layers=tuple(rows),
        random_weights=random_weights,
        dtype_policy=_policy_name(model),
        output_layers=_output_layers(model),
        output_keys=_output_keys(model),
        input_keys=_input_keys(model),
    )


def _output_layers(model: Any) -> tuple[str, ...]:
    """The names of the layers whose calls make the model's outputs, in output order (each
    output tensor's Keras history names the layer that made it)."""
    import keras

    graph = functional_graph(model)
    if graph is None:
        return ()
    members = {id(layer) for layer in model.layers}
    names = []
    for tensor in keras.tree.flatten(graph.outputs):
        operation = tensor_operation(tensor)
        if operation is None or id(operation) not in members:
            return ()
        names.append(str(operation.name))
    return tuple(dict.fromkeys(names))


def _output_keys(model: Any) -> tuple[tuple[str, str], ...]:
    """Each key of a model's dict of outputs and the name of the layer that makes it (``()``
    when the outputs are not a dict, or a key's tensor comes from no layer of the model)."""
    try:
        outputs = model.output
    except (AttributeError, ValueError):  # a subclassed model that was never called
        return ()
    if not isinstance(outputs, dict):
        return ()
    members = {id(layer) for layer in model.layers}
    keys = []
    for key, tensor in outputs.items():
        operation = tensor_operation(tensor)
        if operation is None or id(operation) not in members:
            return ()
        keys.append((str(key), str(operation.name)))
    return tuple(keys)


def _input_keys(model: Any) -> tuple[str, ...]:
    """The keys of a model's dict of inputs (``()`` when it takes a tensor or a list)."""
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a subclassed model that was never called
        return ()
    return tuple(str(key) for key in inputs) if isinstance(inputs, dict) else ()


def _activation_name(layer: Any) -> str:
    """The name of a layer's own activation function, or ``""``."""
    function = getattr(layer, "activation", None)
    if not callable(function):
        return ""
    return str(getattr(function, "__name__", type(function).__name__))


def lora_kernel_shape(layer: Any) -> Shape | None:
    """The shape of the weight ``layer.enable_lora`` would adapt, or None.

    Keras 3.15 gives ``enable_lora`` to Dense, EinsumDense, Embedding and Conv1D/2D/3D (and
    keras-hub's ReversibleEmbedding); A is ``shape[:-1] + (rank,)`` and B ``(rank, shape[-1])``.
    An int4-quantized EinsumDense adapts its ``original_kernel_shape`` (the packed kernel has
    lost its einsum shape); a Dense adapts ``(input_dim, units)`` the same way.
    """
    if not callable(getattr(type(layer), "enable_lora", None)):
        return None
    original = getattr(layer, "original_kernel_shape", None)
    if original is not None:
        return _shape(original)
    for attribute in ("embeddings", "kernel"):
        try:
            weight = getattr(layer, attribute, None)
        except (AttributeError, ValueError, TypeError):
            weight = None
        if weight is not None and hasattr(weight, "shape"):
            return _shape(weight.shape)
    return None


def _policy_name(model: Any) -> str:
    """The model's dtype policy name; a layer's policy when the model's is the default (a
    model built under ``mixed_float16`` keeps float32 for itself only if set so)."""
    policy = getattr(model, "dtype_policy", None)
    name = str(getattr(policy, "name", "float32"))
    if name == "float32":
        for layer in flatten_layers(model, include_self=False):
            inner = str(getattr(getattr(layer, "dtype_policy", None), "name", "float32"))
            if inner.startswith("mixed_"):
                return inner
    return name


def _trainable_kind_ids(model: Any) -> set[int]:
    """Ids of the variables created trainable (kernels, gamma), whatever the flags say now.

    ``layer.trainable = False`` flips ``variable.trainable`` too, so the variable's own flag
    cannot tell a frozen kernel from a moving mean; the list it was created in can.
    """
    ids: set[int] = set()
    for layer in flatten_layers(model, include_self=True):
        created = created_trainable_variables(layer)
        if created is None:
            return {id(v) for v in model.weights if getattr(v, "trainable", True)}
        ids.update(id(v) for v in created)
    return ids


def _unique(variables: Any) -> list[Any]:
    seen: set[int] = set()
    unique = []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


def _size(variable: Any) -> int:
    return math.prod(int(d) for d in variable.shape)


@dataclass(frozen=True)
class _Connection:
    """How one layer of a container is wired: its output shapes, the layers it reads, its
    direct sources with the plain ops between, and every call."""

    shapes: tuple[Shape, ...]
    inbound: tuple[str, ...]
    sources: tuple[str, ...]
    ops: tuple[OpDef, ...]
    calls: tuple[CallInfo, ...]


@dataclass(frozen=True)
class _WalkContext:
    """What the walk of every container of one model shares."""

    trainable_ids: set[int]
    can_train_ids: set[int]
    model_class: type
    rows: list[LayerInfo]
    subclassed: set[tuple[int, ...]] = field(default_factory=set)
    """Paths of the containers whose rows have no graph (subclassed layers, and models
    inside them)."""


def _walk_layers(
    container: Any,
    prefix: tuple[int, ...],
    depth: int,
    parents_trainable: bool,
    context: _WalkContext,
) -> None:
    """Append a row for each layer of ``container`` (and, depth first, of the models in it)."""
    layers = sublayers(container, isinstance(container, context.model_class))
    subclassed = not isinstance(container, context.model_class) or prefix in context.subclassed
    if subclassed:
        context.subclassed.add(prefix)
        wiring = [_unwired(layer) for layer in layers]
    else:
        wiring = _connections(container, layers)
    block_of, stages = _grouped(layers, wiring)
    for position, layer in enumerate(layers):
        path = (*prefix, position)
        flags_trainable = parents_trainable and bool(layer.trainable)
        is_model = isinstance(layer, context.model_class)
        inner = tree_sublayers(layer, is_model)
        container_here = bool(inner)
        weights, own_count = _weight_infos(layer, context, inner)
        params = sum(w.size for w in weights)
        trainable_params = sum(w.size for w in weights if w.trainable)
        connection = wiring[position]
        context.rows.append(
            LayerInfo(
                index=position,
                path=path,
                name=layer.name,
                class_name=type(layer).__name__,
                output_shapes=connection.shapes,
                params=params,
                trainable_params=trainable_params,
                non_trainable_params=params - trainable_params,
                trainable=trainable_params > 0 if weights else flags_trainable,
                has_weights=bool(weights),
                inbound=connection.inbound,
                sources=connection.sources,
                ops=connection.ops,
                depth=depth,
                stage=stages.of[position],
                stage_name=stages.names[stages.of[position]],
                block=block_of[position],
                is_container=container_here,
                child_count=len(inner),
                weights=weights,
                calls=connection.calls,
                activation=_activation_name(layer),
                lora_kernel=lora_kernel_shape(layer),
                lora_enabled=bool(getattr(layer, "lora_enabled", False)),
                subclassed=subclassed or (container_here and not is_model),
                own_weight_count=own_count,
            )
        )
        if container_here:
            if subclassed:
                context.subclassed.add(path)
            _walk_layers(layer, path, depth + 1, flags_trainable, context)


def _weight_infos(
    layer: Any, context: _WalkContext, inner: list[Any]
) -> tuple[tuple[WeightInfo, ...], int]:
    """Each variable of ``layer``, once, with whether it trains and whether it could; a
    container's own variables first. Returns them and how many are the container's own
    (0 for a layer without sublayers)."""
    variables = _unique(layer.weights)
    own_count = 0
    if inner:
        own = own_variables(layer, inner)
        own_ids = {id(v) for v in own}
        variables = own + [v for v in variables if id(v) not in own_ids]
        own_count = len(own)
    infos = tuple(
        WeightInfo(
            name=getattr(v, "path", None) or v.name,
            shape=_shape(v.shape),
            dtype=str(v.dtype),
            trainable=id(v) in context.trainable_ids,
            can_train=id(v) in context.can_train_ids,
        )
        for v in variables
    )
    return infos, own_count


def _unwired(layer: Any) -> _Connection:
    """A sublayer of a subclassed layer: no graph says what it reads, so nothing is
    invented. Its output shape is the one Keras gave it in a graph, else the one its own
    ``compute_output_shape`` gives for the shapes it was built with (unknown without)."""
    try:
        shapes = _tensor_shapes(layer.output)
    except (AttributeError, ValueError, RuntimeError):
        shapes = _built_output_shapes(layer)
    return _Connection(shapes, (), (), (), ())


def _built_output_shapes(layer: Any) -> tuple[Shape, ...]:
    """What ``layer.compute_output_shape`` says for the input shapes ``layer`` was built
    with: Keras's own rule, without running the layer. Empty (shown as ``?``) for a layer
    never built, built without recording its shapes, or whose rule cannot tell."""
    built = built_input_shapes(layer)
    if built is None:
        return ()
    try:
        if len(built) == 1:
            out = layer.compute_output_shape(next(iter(built.values())))
        else:
            out = layer.compute_output_shape(**built)
    except Exception:  # any layer's own rule: a shape it cannot give stays "?"
        return ()
    return _declared_shapes(out)


def _declared_shapes(value: Any) -> tuple[Shape, ...]:
    """The shapes in what a ``compute_output_shape`` returns: one shape (a tuple of
    dims), or a list, tuple or dict of them; empty for anything else."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, (list, tuple)):
        return ()
    if all(d is None or isinstance(d, int) for d in value):
        return (_shape(value),)
    shapes: list[Shape] = []
    for item in value:
        inner = _declared_shapes(item)
        if not inner:
            return ()
        shapes.extend(inner)
    return tuple(shapes)


def _connections(container: Any, layers: list[Any]) -> list[_Connection]:
    """How each layer of ``container`` is wired, from the container's graph (every call of a
    shared layer); a layer outside any graph (a Sequential's) reads the layer before it."""
    graph = functional_graph(container)
    nodes_of = [nodes_in_graph(graph, layer) if graph is not None else [] for layer in layers]
    calls_by_node = {
        id(node): (layer.name, call)
        for layer, nodes in zip(layers, nodes_of, strict=True)
        for call, node in enumerate(nodes)
    }
    wiring = []
    for position, layer in enumerate(layers):
        nodes = nodes_of[position]
        if nodes:
            wiring.append(_called_connection(nodes, calls_by_node))
            continue
        try:
            shapes = _tensor_shapes(layer.output)
        except (AttributeError, ValueError, RuntimeError):
            shapes = ()
        inbound = (layers[position - 1].name,) if position else ()
        wiring.append(_Connection(shapes, inbound, inbound, (), ()))
    return wiring


def _called_connection(nodes: list[Any], calls_by_node: dict[int, tuple[str, int]]) -> _Connection:
    """A layer's wiring from its nodes in the graph: one call each."""
    calls = []
    all_sources: dict[str, None] = {}
    all_ops: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        direct, ops = _inbound_sources(node, calls_by_node)
        all_sources.update(dict.fromkeys(direct))
        all_ops.update(ops)
        calls.append(
            CallInfo(
                sources=direct,
                input_shapes=_tensor_shapes(getattr(node, "input_tensors", None)),
                output_shapes=_tensor_shapes(node.outputs),
            )
        )
    sources = tuple(all_sources)
    return _Connection(
        shapes=calls[0].output_shapes,
        inbound=layers_behind(sources, all_ops),
        sources=sources,
        ops=tuple(all_ops.items()),
        calls=tuple(calls),
    )


def _grouped(layers: list[Any], wiring: list[_Connection]) -> tuple[list[int], grouping.Stages]:
    """The block and the stage of each layer of one container."""
    names = [layer.name for layer in layers]
    class_names = [type(layer).__name__ for layer in layers]
    position_of = {name: i for i, name in enumerate(names)}
    inbound_positions = [[position_of[n] for n in c.inbound if n in position_of] for c in wiring]
    # Blocks count every tensor: each call of a shared layer, each output of a layer.
    block_of = grouping.blocks(
        names,
        class_names,
        _tensor_reads(names, [c.calls for c in wiring], [(c.sources, c.ops) for c in wiring]),
        [bool(layer.weights) for layer in layers],
    )
    stages = grouping.stages(
        names,
        class_names,
        [c.shapes[0] if c.shapes else None for c in wiring],
        inbound_positions,
        block_of,
    )
    return block_of, stages


def _tensor_reads(
    names: list[str],
    calls_of: list[tuple[CallInfo, ...]],
    sources_of: list[tuple[tuple[str, ...], tuple[OpDef, ...]]],
) -> list[list[grouping.Source]]:
    """For each layer, the tensors it reads as :mod:`grouping` counts them: a layer's
    position for its first tensor, ``(position, k)`` for its others (later calls, outputs)."""
    key: dict[str, grouping.Source] = {}
    for position, (name, calls) in enumerate(zip(names, calls_of, strict=True)):
        labels = [
            call_label(name, call, output)
            for call, info in enumerate(calls)
            for output in range(max(1, len(info.output_shapes)))
        ]
        for k, label in enumerate(labels or [name]):
            key[label] = position if k == 0 else (position, k)
    return [
        [key[t] for t in tensors_behind(sources, dict(ops)) if t in key]
        for sources, ops in sources_of
    ]


def iter_group_starts(layers: tuple[LayerInfo, ...], attribute: str) -> Iterator[LayerInfo]:
    """The layers at which a new stage (``attribute="stage"``) or block (``"block"``) begins
    within their container; first layers excluded."""
    previous: dict[tuple[int, ...], object] = {}
    for layer in layers:
        parent = layer.parent_path
        value = getattr(layer, attribute)
        if parent in previous and previous[parent] != value:
            yield layer
        previous[parent] = value
