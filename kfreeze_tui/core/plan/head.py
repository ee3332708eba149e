"""The new classification head: plain data, its defaults, and its validation.

A :class:`HeadSpec` says where the head attaches (the feature layer), how the feature map is
pooled, which hidden Dense layers follow, the dropout rate, the number of classes and the
output activation, and, for a model with several outputs, which output the head replaces and
which others the new model keeps. Everything here works on the walked model
(:class:`ModelInfo`): no Keras.

The default place of the head comes from the model's outputs and the old classifier that
ends one of them (:func:`classifier_of`); :func:`placement` says, for the side pane, the
command line and ``kfreeze check``, what the head attaches to, what it replaces and which
outputs are kept or dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, Shape, format_shape
from kfreeze_tui.core.model.names import find_layer, output_layer_name
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.wording import closest, did_you_mean, sentence, with_suggestion

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
#: Layers that only drop or perturb values in training: before a classifier, its dropout.
DROPOUT_LAYERS = frozenset(
    {
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "AlphaDropout",
        "GaussianDropout",
        "GaussianNoise",
    }
)
#: Layers after a projection that keep its meaning (scores): its activation (when it is one of
#: :data:`SCORE_ACTIVATIONS`), and reshapes of its output (MobileNet's Reshape, MobileNetV3's
#: Flatten).
SCORE_LAYERS = frozenset({"Activation", "Softmax", "Flatten", "Reshape", *DROPOUT_LAYERS})
#: Activations that turn a projection into scores (probabilities or logits); any other
#: (``relu``, ``gelu``, ``tanh``) makes it a layer of features.
SCORE_ACTIVATIONS = frozenset({"", "linear", "softmax", "sigmoid", "log_softmax"})
#: Layers that project features to outputs with one kernel.
DENSE_LAYERS = frozenset({"Dense", "EinsumDense"})
CONV_LAYERS = frozenset({"Conv1D", "Conv2D", "Conv3D"})
#: The name build_model gives the new head's output.
HEAD_OUTPUT = "head_output"

#: What ``HeadSpec.kind`` may be: a classifier head, or none (the model as it is).
HEAD_KINDS = ("classifier", "none")


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
            default (see :func:`attachment`).
        pooling: ``avg``, ``max``, ``flatten`` or ``none`` (for features that are flat);
            None picks ``avg`` for a feature map and ``none`` for flat features.
        hidden: hidden Dense layers, in order.
        dropout: dropout rate before the classifier (0 for none).
        classes: number of output units.
        activation: ``softmax``, ``sigmoid`` or ``linear`` (logits).
        float32_head: keep the head in float32 when the model uses mixed precision.
        replace: the output layer the head takes the place of; None: the first output that
            ends in a classifier (the first output if none does). By default the head
            attaches where that output's classifier takes its features.
        kind: ``classifier`` (the head these fields describe) or ``none`` (no head: the
            model as it is, its outputs unchanged, for the user's own task model).
        keep: other outputs of the model that the new model keeps, after the head's output,
            in the model's output order. By default none: the new model is trained with one
            loss, the head's, and kfreeze cannot know the loss of another output, so an
            output it kept would be carried untrained while the layers it shares with the
            head change under it. A model whose other outputs matter names them here
            (``--keep-output``); every place that shows the head says which outputs are
            dropped, so none is lost silently. A kept output has no loss in the compiled
            model (its own layers get no gradient) until the user compiles with their own.
    """

    feature_layer: str | None = None
    pooling: str | None = None
    hidden: tuple[DenseSpec, ...] = field(default_factory=tuple)
    dropout: float = 0.2
    classes: int = 10
    activation: str = "softmax"
    float32_head: bool = True
    replace: str | None = None
    keep: tuple[str, ...] = ()
    kind: str = "classifier"

    @property
    def is_none(self) -> bool:
        """No head: the model is exported as it is (frozen as planned), for the user's own
        task model; the other fields do not apply."""
        return self.kind == "none"

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


# -- the model's outputs and their classifiers -----------------------------------------------


def model_outputs(info: ModelInfo) -> tuple[LayerInfo, ...]:
    """The top-level layers that make the model's outputs, in the model's output order.

    The walk records them from Keras's graph (:attr:`ModelInfo.output_layers`). A walk
    without them falls back on the graph's shape: Keras keeps in a functional model only the
    layers its outputs need, so a layer whose output no other layer takes is an output; an
    output that other layers also take (a model returning its features and its logits) is
    the last layer with the output's shape that is not already one.
    """
    return info.memo("model_outputs", lambda: _model_outputs(info))


def _model_outputs(info: ModelInfo) -> tuple[LayerInfo, ...]:
    if info.output_layers:  # as Keras's graph gives them
        by_name = {row.name: row for row in info.top_level}
        rows = [by_name.get(name) for name in info.output_layers]
        if all(row is not None for row in rows):
            return tuple(row for row in rows if row is not None)
    top = [row for row in info.top_level if row.class_name != "InputLayer"]
    taken = {name for row in info.top_level for name in row.inbound}
    found = [row for row in top if row.name not in taken]
    missing = list(info.output_shapes)
    for row in found:
        for shape in row.output_shapes:
            if shape in missing:
                missing.remove(shape)
    for shape in missing:
        extra = next(
            (row for row in reversed(top) if shape in row.output_shapes and row not in found),
            None,
        )
        if extra is not None:
            found.append(extra)
    ordered: list[LayerInfo] = []
    for shape in info.output_shapes:  # the model's order, where shapes tell it
        row = next((r for r in found if shape in r.output_shapes and r not in ordered), None)
        if row is not None:
            ordered.append(row)
    position = {row.path: i for i, row in enumerate(info.top_level)}
    rest = sorted((r for r in found if r not in ordered), key=lambda r: position[r.path])
    return (*ordered, *rest)


@dataclass(frozen=True)
class Attachment:
    """Where the head takes its features.

    Attributes:
        layer: the layer whose output the head takes; with ``of_input``, the layer whose
            input it takes (a classifier fed by a plain operation, ``keras.ops.abs(a - b)``,
            has no layer whose output is its features).
        of_input: the head takes ``layer.input`` rather than ``layer.output``.
        shape: the features' shape.
    """

    layer: LayerInfo
    of_input: bool
    shape: Shape

    @property
    def where(self) -> str:
        """``gap``, or ``the input of same``."""
        return f"the input of {self.layer.name}" if self.of_input else self.layer.name

    @property
    def text(self) -> str:
        """``gap (None, 32)``, or ``the input of same (None, 8)``."""
        return f"{self.where} {format_shape(self.shape)}"


@dataclass(frozen=True)
class Classifier:
    """The old classifier at the end of an output: what the default head replaces.

    Attributes:
        output: the output layer it ends in.
        projection: its Dense (EinsumDense, or 1x1 convolution on a 1x1 map).
        layers: its layers in model order: the dropout before the projection, the
            projection, and the activation and reshapes after it.
        attach: the features the projection takes, where the head attaches instead.
    """

    output: LayerInfo
    projection: LayerInfo
    layers: tuple[LayerInfo, ...]
    attach: Attachment


def _kernel_shape(row: LayerInfo) -> Shape | None:
    kernel = next((w for w in row.weights if w.name.rsplit("/", 1)[-1] == "kernel"), None)
    return kernel.shape if kernel is not None else None


def is_projection(row: LayerInfo) -> bool:
    """A layer that maps a feature vector to outputs with one kernel: a Dense or EinsumDense,
    or a convolution with a 1x1 kernel whose output map is 1x1 (MobileNet's top)."""
    if row.class_name in DENSE_LAYERS:
        return _kernel_shape(row) is not None
    if row.class_name not in CONV_LAYERS or len(row.output_shapes) != 1:
        return False
    kernel = _kernel_shape(row)
    spatial = row.output_shapes[0][1:-1]
    return (
        kernel is not None
        and all(k == 1 for k in kernel[:-2])
        and bool(spatial)
        and all(d == 1 for d in spatial)
    )


def _input_shape(row: LayerInfo) -> Shape | None:
    """The shape of what feeds ``row`` when it is a Dense, a 1x1 projection or a dropout."""
    out = row.output_shape
    if out is None:
        return None
    if row.class_name in DROPOUT_LAYERS:
        return out
    kernel = _kernel_shape(row)
    if row.class_name == "EinsumDense" or kernel is None or len(kernel) < 2:
        return None
    return (*out[:-1], kernel[-2])


def classifier_of(info: ModelInfo, output: LayerInfo) -> Classifier | None:
    """The classifier that ends ``output``, or None when the output is features.

    The rule: walking back from the output through its activation and reshapes
    (:data:`SCORE_LAYERS`), the first other layer must be a projection
    (:func:`is_projection`); the dropout before it goes with it. Any other layer there
    (ReLU, a normalization, a pooling, a Lambda, ...) means the output is features, not
    scores, and the head builds on it. The projection's own activation and any activation
    after it must make scores (:data:`SCORE_ACTIVATIONS`): a model ending in
    ``Dense(512, relu)`` ends in features, which the head builds on. A projection fed by
    the model's input has no features before it to keep, and one fed by several tensors is
    not a classifier.
    """
    by_name = {row.name: row for row in info.top_level}
    chain: list[LayerInfo] = []
    row = output
    while row.class_name in SCORE_LAYERS:
        if len(row.sources) != 1 or row.sources[0] not in by_name:
            return None
        if row.activation not in SCORE_ACTIVATIONS:
            return None  # a final ReLU: the output is features
        chain.append(row)
        row = by_name[row.sources[0]]
    if not is_projection(row) or row.activation not in SCORE_ACTIVATIONS:
        return None
    projection = row
    chain.append(projection)
    taker = projection
    while True:
        if len(taker.sources) != 1:
            return None
        source = by_name.get(taker.sources[0])
        if source is not None and source.class_name in DROPOUT_LAYERS:
            chain.append(source)
            taker = source
            continue
        if source is not None and source.class_name == "InputLayer":
            return None
        if source is not None and len(source.output_shapes) == 1:
            attach = Attachment(source, False, source.output_shapes[0])
        else:  # a plain operation's output, or one of a layer's several outputs
            shape = _input_shape(taker)
            if shape is None:
                return None
            attach = Attachment(taker, True, shape)
        break
    position = {r.path: i for i, r in enumerate(info.top_level)}
    layers = tuple(sorted(chain, key=lambda r: position[r.path]))
    return Classifier(output, projection, layers, attach)


def is_classifier_top(info: ModelInfo) -> bool:
    """Whether the model's first output ends in a classifier (see :func:`classifier_of`)."""
    outputs = model_outputs(info)
    return bool(outputs) and classifier_of(info, outputs[0]) is not None


def default_replaced_output(info: ModelInfo) -> LayerInfo | None:
    """The output the head replaces by default: the first that ends in a classifier, or the
    first output when none does (None for a model without layers)."""

    def compute() -> LayerInfo | None:
        outputs = model_outputs(info)
        with_classifier = [row for row in outputs if classifier_of(info, row) is not None]
        return (with_classifier or list(outputs) or [None])[0]

    return info.memo("default_replaced_output", compute)


def replaced_output(info: ModelInfo, head: HeadSpec) -> LayerInfo | None:
    """The output the head replaces (None when ``head.replace`` is not an output)."""
    if head.replace is None:
        return default_replaced_output(info)
    name = output_layer_name(info, head.replace)
    return next((row for row in model_outputs(info) if row.name == name), None)


def kept_outputs(info: ModelInfo, head: HeadSpec) -> tuple[LayerInfo, ...]:
    """The other outputs the new model keeps, in the model's output order (names that are
    not outputs are left out: :func:`validate` reports them)."""
    wanted = {output_layer_name(info, name) for name in head.keep}
    return tuple(row for row in model_outputs(info) if row.name in wanted)


def dropped_outputs(info: ModelInfo, head: HeadSpec) -> tuple[LayerInfo, ...]:
    """The model's outputs that the new model loses: neither replaced nor kept."""
    replaced = replaced_output(info, head)
    kept = {row.name for row in kept_outputs(info, head)}
    return tuple(
        row
        for row in model_outputs(info)
        if row.name not in kept and (replaced is None or row.name != replaced.name)
    )


def attachment(info: ModelInfo, head: HeadSpec) -> Attachment | None:
    """Where the head takes its features (None when the named layer or output does not exist).

    The named feature layer's output; by default, where the classifier of the replaced
    output takes its features (ResNet50 with its top: ``avg_pool``), or the replaced output
    itself when it ends in no classifier (ResNet50 without its top: ``conv5_block3_out``).
    None for ``kind = "none"``: no head attaches.
    """
    if head.is_none:
        return None
    if head.feature_layer is not None:
        layer = find_layer(info, head.feature_layer, top_level=True)[0]
        if layer is None:
            return None
        return Attachment(layer, False, layer.output_shape or ())

    def compute() -> Attachment | None:
        output = replaced_output(info, head)
        if output is None:
            return None
        classifier = classifier_of(info, output)
        if classifier is not None:
            return classifier.attach
        return Attachment(output, False, output.output_shape or ())

    return info.memo(("attachment", head.replace), compute)


def default_feature_layer(info: ModelInfo) -> LayerInfo:
    """Where the head attaches by default (see :func:`attachment`): the layer named."""
    found = attachment(info, HeadSpec())
    return found.layer if found is not None else info.top_level[-1]


def feature_layer(info: ModelInfo, head: HeadSpec) -> LayerInfo | None:
    """The layer the head attaches to (None when the named layer does not exist); with
    :attr:`Attachment.of_input`, the layer whose input it takes."""
    found = attachment(info, head)
    return found.layer if found is not None else None


def resolved_pooling(info: ModelInfo, head: HeadSpec) -> str:
    """The pooling the head uses: the spec's, or the default for its feature layer."""
    if head.pooling is not None:
        return head.pooling
    found = attachment(info, head)
    return default_pooling(found.shape if found else None)


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


def _output_problems(info: ModelInfo, head: HeadSpec) -> list[str]:
    """Output names in ``replace`` and ``keep`` that are not outputs, with the nearest."""
    names = [row.name for row in model_outputs(info)]
    keys = [key for key, _ in info.output_keys]
    listed = ", ".join(_output_labels(info)) or "none"
    problems: list[str] = []

    def unknown(name: str, what: str) -> str:
        text = (
            f"The output {name!r} to {what} is not an output of the model (its outputs: {listed})"
        )
        return sentence(with_suggestion(text, did_you_mean(name, [*keys, *names]), "; "))

    if head.replace is not None and output_layer_name(info, head.replace) not in names:
        problems.append(unknown(head.replace, "replace"))
    for name in dict.fromkeys(head.keep):
        if output_layer_name(info, name) not in names:
            problems.append(unknown(name, "keep"))
    replaced = replaced_output(info, head)
    kept = {output_layer_name(info, name) for name in head.keep}
    if replaced is not None and replaced.name in kept:
        problems.append(
            f"The head replaces the output {replaced.name}, so it cannot keep it too: "
            "keep another output, or replace another."
        )
    return problems


def _output_labels(info: ModelInfo) -> list[str]:
    """Each output as messages name it: its layer, with its key when the model returns a
    dict (``pooled_dense (pooled_output)``)."""
    key_of = {layer: key for key, layer in info.output_keys}
    return [
        f"{row.name} ({key_of[row.name]})" if row.name in key_of else row.name
        for row in model_outputs(info)
    ]


def validate(info: ModelInfo, head: HeadSpec) -> list[str]:
    """Every problem with ``head`` on this model, one sentence each (empty when fine).

    Args:
        info: the walked model.
        head: the head spec.

    Returns:
        Problems in a stable order.
    """
    if head.kind not in HEAD_KINDS:
        return [f"The head {head.kind!r} is not one of {', '.join(HEAD_KINDS)}."]
    if head.is_none:
        return []
    found = attachment(info, head)
    return [
        *_output_problems(info, head),
        *_feature_problems(info, head, found),
        *_pooling_problems(info, head, found),
        *_layer_problems(head),
    ]


def _feature_problems(info: ModelInfo, head: HeadSpec, found: Attachment | None) -> list[str]:
    """The feature layer: one the model has, with one output."""
    problems: list[str] = []
    if found is None and head.feature_layer is not None:
        names = [row.name for row in info.top_level]
        close = closest(str(head.feature_layer), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        problems.append(
            f"The feature layer {head.feature_layer!r} is not a layer of the model{hint}."
        )
    elif found is not None and not found.of_input and len(found.layer.output_shapes) != 1:
        problems.append(
            f"The feature layer {found.layer.name} has {len(found.layer.output_shapes)} "
            "outputs; choose a layer with one output."
        )
    return problems


def _pooling_problems(info: ModelInfo, head: HeadSpec, found: Attachment | None) -> list[str]:
    """The pooling: a known one, that fits the rank of the features it pools."""
    problems: list[str] = []
    pooling = resolved_pooling(info, head)
    if pooling not in POOLINGS:
        problems.append(f"Pooling {pooling!r} is not one of {', '.join(POOLINGS)}.")
    elif found is not None and (found.of_input or len(found.layer.output_shapes) == 1):
        shape = found.shape
        name = found.where
        rank = len(shape)
        if pooling == "none" and rank > 2:
            problems.append(
                f"Pooling 'none' leaves the {rank}-D feature map {_shape(shape)} of {name}, "
                "but a classifier needs flat features: choose avg, max or flatten."
            )
        elif pooling in ("avg", "max") and rank not in (3, 4):
            problems.append(
                f"Pooling {pooling!r} needs a 3-D or 4-D feature map, but {name} "
                f"outputs {_shape(shape)}: choose pooling none."
            )
        elif pooling == "flatten" and rank <= 2:
            problems.append(f"{name} outputs flat features {_shape(shape)}: choose pooling none.")
        elif pooling == "flatten" and None in shape[1:]:
            problems.append(
                f"Flatten needs known dimensions, but {name} outputs {_shape(shape)}: "
                "choose avg or max."
            )
    return problems


def _layer_problems(head: HeadSpec) -> list[str]:
    """The head's own layers: hidden units and activations, dropout, classes, activation."""
    problems: list[str] = []
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
    found = attachment(info, head)
    if found is None or validate(info, head):
        return []
    shape = found.shape
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
            HEAD_OUTPUT, "Dense", (shape[0], head.classes), width * head.classes + head.classes
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


def _roots(info: ModelInfo, found: Attachment) -> list[LayerInfo]:
    """The layers the features need directly (for ``of_input``: those feeding the layer)."""
    if not found.of_input:
        return [found.layer]
    by_name = {row.name: row for row in info.top_level}
    return [by_name[name] for name in found.layer.inbound if name in by_name]


def kept_layers(
    info: ModelInfo, found: Attachment, outputs: tuple[LayerInfo, ...] = ()
) -> list[LayerInfo]:
    """The top-level layers the new model keeps: those the features need, and those the
    kept ``outputs`` need."""
    roots = (*_roots(info, found), *outputs)
    key = ("kept_layers", tuple(row.path for row in roots))
    return info.memo(key, lambda: _ancestors(info, roots))


def _ancestors(info: ModelInfo, roots: tuple[LayerInfo, ...]) -> list[LayerInfo]:
    by_name = {row.name: row for row in info.top_level}
    kept: dict[str, LayerInfo] = {}
    stack = list(roots)
    while stack:
        row = stack.pop()
        if row.name in kept:
            continue
        kept[row.name] = row
        stack.extend(by_name[name] for name in row.inbound if name in by_name)
    return [row for row in info.top_level if row.name in kept]


@dataclass(frozen=True)
class Placement:
    """What the head attaches to, what it replaces, and which outputs stay.

    Attributes:
        attach: where the head takes its features.
        replaced_output: the output the head takes the place of (None: not an output).
        replaced: the layers the new model leaves out on the way to that output (the old
            classifier, by default), in model order.
        outputs: every output of the model, in order.
        kept: the outputs kept after the head's.
        dropped: the outputs the new model loses.
    """

    attach: Attachment
    replaced_output: LayerInfo | None
    replaced: tuple[LayerInfo, ...]
    outputs: tuple[LayerInfo, ...]
    kept: tuple[LayerInfo, ...]
    dropped: tuple[LayerInfo, ...]

    def lines(self, keys: str = "") -> list[str]:
        """``attaches to gap (None, 32)``, ``replaces dropout, classifier``, and for several
        outputs ``keeps: reg`` and ``drops outputs: mask_out`` (with how to keep them,
        ``keys``, when given)."""
        lines = [f"attaches to {self.attach.text}"]
        if self.replaced:
            lines.append(f"replaces {names_text([row.name for row in self.replaced])}")
        if len(self.outputs) > 1:
            if self.kept:
                lines.append(f"keeps: {', '.join(row.name for row in self.kept)}")
            if self.dropped:
                text = f"drops outputs: {', '.join(row.name for row in self.dropped)}"
                lines.append(text + (f" ({keys})" if keys else ""))
        return lines

    @property
    def new_outputs(self) -> tuple[str, ...]:
        """The new model's outputs, in order: the head's, then the kept ones."""
        return (HEAD_OUTPUT, *(row.name for row in self.kept))


def names_text(names: list[str], shown: int = 4) -> str:
    """``a, b, c``; a long list as ``52 layers, conv5_block1_1_conv to predictions``."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{len(names)} layers, {names[0]} to {names[-1]}"


def placement(info: ModelInfo, head: HeadSpec) -> Placement | None:
    """Where the head goes and what it replaces and drops; None when the feature layer or
    an output named does not exist, and for no head (``kind = "none"``)."""
    found = attachment(info, head)
    if found is None or _output_problems(info, head):
        return None
    kept = kept_outputs(info, head)
    remaining = {row.path for row in kept_layers(info, found, kept)}
    output = replaced_output(info, head)
    replaced: tuple[LayerInfo, ...] = ()
    if output is not None and output.path not in remaining:
        replaced = tuple(row for row in _ancestors(info, (output,)) if row.path not in remaining)
    return Placement(
        found, output, replaced, model_outputs(info), kept, dropped_outputs(info, head)
    )


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

    Layers that neither the features nor a kept output need (an old classifier, a dropped
    output's branch) are left out, as the export leaves them out; the head's layers all train.
    """
    info = view.info
    if head.is_none:  # the model as it is
        totals = view.totals(plan)
        return NewTotals(totals.total, totals.trainable, 0)
    found = attachment(info, head)
    if found is None or validate(info, head):
        return None
    kept = kept_layers(info, found, kept_outputs(info, head))
    key = tuple(row.path for row in kept)

    # What the new model leaves out (an old classifier) is usually a few layers: count the
    # whole model with prefix sums and take those away, so a keypress costs the same on any
    # model.
    def left_out() -> list[LayerInfo]:
        kept_paths = set(key)
        return [row for row in info.top_level if row.path not in kept_paths]

    dropped = info.memo(("dropped_layers", key), left_out)
    head_params = sum(h.params for h in head_layers(info, head))
    base_total = info.memo(("kept_params", key), lambda: sum(row.params for row in kept))
    base_trainable = view.totals(plan).trainable - sum(
        view.trainable_in(plan, row.path) for row in dropped
    )
    return NewTotals(base_total + head_params, base_trainable + head_params, head_params)


#: The names build_model gives the layers of the new head.
HEAD_LAYER = re.compile(r"head_(pool|dropout|output|dense_\d+)")


def is_head_layer(name: str) -> bool:
    """Whether a layer of a built model is one of the head's."""
    return HEAD_LAYER.fullmatch(name) is not None
