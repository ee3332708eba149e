"""The new classification head: plain data, its defaults, and its validation.

A :class:`HeadSpec` says where the head attaches (the feature layer), how the feature map is
pooled, which hidden Dense layers follow, the dropout rate, the number of classes and the
output activation. Everything here works on the walked model (:class:`ModelInfo`): no Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from kfreeze_tui.core.layers import LayerInfo, ModelInfo, Shape
from kfreeze_tui.core.names import find_layer
from kfreeze_tui.core.plan import FreezePlan, PlanView
from kfreeze_tui.core.wording import closest

POOLINGS = ("avg", "max", "flatten", "none")
ACTIVATIONS = ("softmax", "sigmoid", "linear")
HIDDEN_ACTIVATIONS = ("relu", "gelu", "swish", "silu", "tanh", "elu", "selu", "linear")
POOLING_LAYERS = frozenset(
    {
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "GlobalAveragePooling1D",
        "GlobalMaxPooling1D",
        "Flatten",
    }
)


@dataclass(frozen=True)
class DenseSpec:
    """One hidden Dense layer of the head."""

    units: int
    activation: str = "relu"


@dataclass(frozen=True)
class HeadSpec:
    """The head to build on the feature layer.

    Attributes:
        feature_layer: name of the top-level layer the head attaches to; None means the
            default (see :func:`default_feature_layer`).
        pooling: ``avg``, ``max``, ``flatten`` or ``none`` (for features that are flat);
            None picks ``avg`` for a feature map and ``none`` for flat features.
        hidden: hidden Dense layers, in order.
        dropout: dropout rate before the classifier (0 for none).
        classes: number of output units.
        activation: ``softmax``, ``sigmoid`` or ``linear`` (logits).
        float32_head: keep the head in float32 when the model uses mixed precision.
    """

    feature_layer: str | None = None
    pooling: str | None = None
    hidden: tuple[DenseSpec, ...] = field(default_factory=tuple)
    dropout: float = 0.2
    classes: int = 10
    activation: str = "softmax"
    float32_head: bool = True

    def with_feature_layer(self, name: str | None) -> HeadSpec:
        """The spec attached to another layer."""
        return replace(self, feature_layer=name)


def parse_hidden(text: str) -> tuple[DenseSpec, ...] | None:
    """``256,128`` (or ``256:gelu,128``) into Dense specs; None when it does not parse."""
    layers = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        units, _, activation = part.partition(":")
        if not units.strip().isdigit():
            return None
        layers.append(DenseSpec(int(units), activation.strip() or "relu"))
    return tuple(layers)


def is_classifier_top(info: ModelInfo) -> bool:
    """Whether the model ends in a classifier: a Dense fed by global pooling or Flatten."""
    top = info.top_level
    if len(top) < 2 or top[-1].class_name != "Dense":
        return False
    feeding = next((row for row in top if row.name in top[-1].inbound), None)
    return feeding is not None and feeding.class_name in POOLING_LAYERS


def default_feature_layer(info: ModelInfo) -> LayerInfo:
    """Where the head attaches by default.

    The model's (first) output layer; but a model ending in a classifier (ResNet50 with its
    top: ``avg_pool`` then ``predictions``) attaches before that classifier.
    """
    return info.memo("default_feature_layer", lambda: _default_feature_layer(info))


def _default_feature_layer(info: ModelInfo) -> LayerInfo:
    top = info.top_level
    if is_classifier_top(info):
        classifier = top[-1]
        return next(row for row in top if row.name in classifier.inbound)
    output_shape = info.output_shapes[0] if info.output_shapes else None
    for row in reversed(top):
        if row.output_shape == output_shape and row.class_name != "InputLayer":
            return row
    return top[-1]


def feature_layer(info: ModelInfo, head: HeadSpec) -> LayerInfo | None:
    """The layer the head attaches to (None when the named layer does not exist)."""
    if head.feature_layer is None:
        return default_feature_layer(info)
    return find_layer(info, head.feature_layer, top_level=True)[0]


def resolved_pooling(info: ModelInfo, head: HeadSpec) -> str:
    """The pooling the head uses: the spec's, or the default for its feature layer."""
    if head.pooling is not None:
        return head.pooling
    layer = feature_layer(info, head)
    return default_pooling(layer.output_shape if layer else None)


def default_pooling(shape: Shape | None) -> str:
    """``avg`` for a feature map, ``none`` for features that are already flat."""
    return "none" if shape is not None and len(shape) <= 2 else "avg"


def pooled_shape(shape: Shape, pooling: str) -> Shape:
    """The shape after pooling (``flatten`` needs known dims)."""
    if pooling in ("avg", "max"):
        return (shape[0], shape[-1])
    if pooling == "flatten":
        dims = shape[1:]
        size = math.prod(d for d in dims if d is not None) if None not in dims else None
        return (shape[0], size)
    return shape


@dataclass(frozen=True)
class HeadLayer:
    """One layer of the head as it will be built: for the head pane's preview."""

    name: str
    class_name: str
    output_shape: Shape
    params: int


def validate(info: ModelInfo, head: HeadSpec) -> list[str]:
    """Every problem with ``head`` on this model, one sentence each (empty when fine).

    Args:
        info: the walked model.
        head: the head spec.

    Returns:
        Problems in a stable order.
    """
    problems: list[str] = []
    layer = feature_layer(info, head)
    if layer is None:
        names = [row.name for row in info.top_level]
        close = closest(str(head.feature_layer), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        problems.append(
            f"The feature layer {head.feature_layer!r} is not a layer of the model{hint}."
        )
    elif len(layer.output_shapes) != 1:
        problems.append(
            f"The feature layer {layer.name} has {len(layer.output_shapes)} "
            "outputs; choose a layer with one output."
        )
    pooling = resolved_pooling(info, head)
    if pooling not in POOLINGS:
        problems.append(f"Pooling {pooling!r} is not one of {', '.join(POOLINGS)}.")
    elif layer is not None and len(layer.output_shapes) == 1:
        shape = layer.output_shapes[0]
        rank = len(shape)
        if pooling == "none" and rank > 2:
            problems.append(
                f"Pooling 'none' leaves the {rank}-D feature map {_shape(shape)} of {layer.name}, "
                "but a classifier needs flat features: choose avg, max or flatten."
            )
        elif pooling in ("avg", "max") and rank not in (3, 4):
            problems.append(
                f"Pooling {pooling!r} needs a 3-D or 4-D feature map, but {layer.name} "
                f"outputs {_shape(shape)}: choose pooling none."
            )
        elif pooling == "flatten" and rank <= 2:
            problems.append(
                f"{layer.name} outputs flat features {_shape(shape)}: choose pooling none."
            )
        elif pooling == "flatten" and None in shape[1:]:
            problems.append(
                f"Flatten needs known dimensions, but {layer.name} outputs {_shape(shape)}: "
                "choose avg or max."
            )
    for i, dense in enumerate(head.hidden, start=1):
        if dense.units < 1:
            problems.append(f"Hidden layer {i} has {dense.units} units; it needs at least 1.")
        if dense.activation not in HIDDEN_ACTIVATIONS:
            problems.append(
                f"Hidden layer {i} has an unknown activation {dense.activation!r} "
                f"(one of {', '.join(HIDDEN_ACTIVATIONS)})."
            )
    if not 0 <= head.dropout < 1:
        problems.append(
            f"Dropout {head.dropout:g} is outside [0, 1): 0 means none, 0.2 to 0.5 is usual."
        )
    if head.classes < 1:
        problems.append(f"Classes must be at least 1, not {head.classes}.")
    if head.activation not in ACTIVATIONS:
        problems.append(f"Activation {head.activation!r} is not one of {', '.join(ACTIVATIONS)}.")
    elif head.activation == "softmax" and head.classes == 1:
        problems.append(
            "Softmax over 1 class always outputs 1.0: use sigmoid for a binary "
            "label, or 2 classes with softmax."
        )
    return problems


def head_layers(info: ModelInfo, head: HeadSpec) -> list[HeadLayer]:
    """The layers the head adds, with shapes and parameters (for a valid spec)."""
    layer = feature_layer(info, head)
    if layer is None or validate(info, head):
        return []
    shape = layer.output_shapes[0]
    layers: list[HeadLayer] = []
    pooling = resolved_pooling(info, head)
    if pooling != "none":
        shape_before = shape
        shape = pooled_shape(shape, pooling)
        class_name = pooling_class(pooling, shape_before)
        layers.append(HeadLayer("head_pool", class_name, shape, 0))
    width = shape[-1] or 0
    for i, dense in enumerate(head.hidden, start=1):
        layers.append(
            HeadLayer(
                f"head_dense_{i}",
                "Dense",
                (shape[0], dense.units),
                width * dense.units + dense.units,
            )
        )
        width = dense.units
    if head.dropout > 0:
        layers.append(HeadLayer("head_dropout", "Dropout", (shape[0], width), 0))
    layers.append(
        HeadLayer(
            "head_output", "Dense", (shape[0], head.classes), width * head.classes + head.classes
        )
    )
    return layers


def pooling_class(pooling: str, shape: Shape) -> str:
    """The Keras layer class of a pooling on a feature map of ``shape``."""
    if pooling == "flatten":
        return "Flatten"
    prefix = "GlobalAveragePooling" if pooling == "avg" else "GlobalMaxPooling"
    return prefix + ("2D" if len(shape) == 4 else "1D")


def _shape(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def kept_layers(info: ModelInfo, feature: LayerInfo) -> list[LayerInfo]:
    """The top-level layers the new model keeps: the feature layer and all that feeds it."""
    return info.memo(("kept_layers", feature.path), lambda: _kept_layers(info, feature))


def _kept_layers(info: ModelInfo, feature: LayerInfo) -> list[LayerInfo]:
    by_name = {row.name: row for row in info.top_level}
    kept: dict[str, LayerInfo] = {}
    stack = [feature]
    while stack:
        row = stack.pop()
        if row.name in kept:
            continue
        kept[row.name] = row
        stack.extend(by_name[name] for name in row.inbound if name in by_name)
    return [row for row in info.top_level if row.name in kept]


@dataclass(frozen=True)
class NewTotals:
    """Parameter counts of the model the export builds (base as planned, plus the head)."""

    total: int
    trainable: int
    head: int

    @property
    def non_trainable(self) -> int:
        """``total - trainable``."""
        return self.total - self.trainable


def new_totals(view: PlanView, plan: FreezePlan, head: HeadSpec) -> NewTotals | None:
    """The new model's counts; None while the head is not valid.

    Layers after the feature layer that do not feed it (an old classifier) are left out, as
    the export leaves them out; the head's layers all train.
    """
    info = view.info
    layer = feature_layer(info, head)
    if layer is None or validate(info, head):
        return None
    kept = kept_layers(info, layer)

    # What the new model leaves out (an old classifier) is usually a few layers: count the
    # whole model with prefix sums and take those away, so a keypress costs the same on any
    # model.
    def left_out() -> list[LayerInfo]:
        kept_paths = {row.path for row in kept}
        return [row for row in info.top_level if row.path not in kept_paths]

    dropped = info.memo(("dropped_layers", layer.path), left_out)
    head_params = sum(h.params for h in head_layers(info, head))
    base_total = info.memo(("kept_params", layer.path), lambda: sum(row.params for row in kept))
    base_trainable = view.totals(plan).trainable - sum(
        view.trainable_in(plan, row.path) for row in dropped
    )
    return NewTotals(base_total + head_params, base_trainable + head_params, head_params)
