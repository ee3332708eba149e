"""Whether a plan lets the frozen part's output be cached as features, and what they weigh.

When everything before the boundary is frozen in effect and nothing random runs there, the
frozen part is a pure function of the input: its output can be computed once and the trainable
part trained on it (the Keras transfer-learning guide's "a lot faster & cheaper" variant).
This module gives the verdict from the walked model alone (no Keras), cheaply enough for every
keypress.

The rules, in the order they are checked (the first that fails is the reason):

1. **Whole base frozen** (boundary None, the head only trains): the features are what the
   head reads, the head's attachment (``avg_pool`` of ResNet50 with its top), or the model's
   outputs when there is no head.
2. **Something is frozen before the boundary**: a boundary with no layer holding weights
   before it has nothing worth caching.
3. **Not inside a subclassed layer** (:attr:`Cut.inside`): a partial freeze of a layer whose
   sublayers have no graph between them has no tensor to cache.
4. **Every layer before the boundary is frozen in effect**: an exception that trains a layer
   there (a BatchNormalization included: its batch statistics would change every step) or
   LoRA on a layer there refuses, naming the first such layer. The BatchNormalization policy
   only concerns layers after the boundary: those before it are frozen, so run in inference
   mode.
5. **Nothing random before the boundary**: a random augmentation layer (``RandomFlip``,
   ``RandomRotation``, any ``Random*`` or ``Rand*`` layer, ``AugMix``, ``MixUp``, ``CutMix``,
   ``Solarization``, ``Pipeline`` of them, at any depth, in nested models too) changes its
   output every epoch, so caching it would train on one fixed draw. Dropout-like layers
   (``Dropout``, ``SpatialDropout*``, ``GaussianDropout``, ``GaussianNoise``,
   ``AlphaDropout``) are fine: the features are computed in inference mode, where they are
   off; the reason says so.
6. **The crossing tensors are known**: every tensor that crosses the cut
   (:attr:`Cut.crossing`: several when the boundary splits a block, each cached; a model
   input read after the boundary too) has a known shape per example, no None after the batch
   axis ("features of shape (None, None, 768) vary with the input").

Bytes are per example: the elements of every crossing tensor times the compute dtype's size
(float32: 4 bytes; a ``mixed_float16`` or ``mixed_bfloat16`` policy: 2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, Shape, call_label, format_shape
from kfreeze_tui.core.plan.freeze import FreezePlan, Path, PlanView
from kfreeze_tui.core.plan.head import HeadSpec, attachment, model_outputs
from kfreeze_tui.core.wording import human_bytes

#: Layers whose output changes from call to call in training: augmentation. Any class whose
#: name starts with ``Random`` or ``Rand`` (Keras's and KerasCV's) is one too.
RANDOM_CLASSES = frozenset(
    {
        "AugMix",
        "MixUp",
        "CutMix",
        "Solarization",
        "Pipeline",
        "RandomChoice",
        "RandomApply",
        "GridMask",
        "JitteredResize",
        "ChannelShuffle",
        "FourierMix",
        "Mosaic",
    }
)
#: Layers that are random in training only and off in inference, where features are computed.
DROPOUT_CLASSES = frozenset(
    {
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
    }
)
#: Bytes of one element in each compute dtype.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
#: Compute dtype of a Keras dtype policy.
POLICY_DTYPE = {
    "mixed_float16": "float16",
    "mixed_bfloat16": "bfloat16",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float64": "float64",
}

_HOLDER_CALL = re.compile(r" \(\S+ call \d+\)$")


def is_random(class_name: str) -> bool:
    """Whether a layer class changes its output every call in training (augmentation)."""
    return class_name in RANDOM_CLASSES or class_name.startswith(("Random", "Rand"))


def compute_dtype(info: ModelInfo) -> str:
    """The dtype activations have under the model's policy (float32 unless it says
    otherwise)."""
    return POLICY_DTYPE.get(info.dtype_policy, "float32")


@dataclass(frozen=True)
class FeatureCache:
    """The verdict on caching the frozen part's output.

    Attributes:
        cacheable: the frozen part is a pure function of the input.
        reason: why not (one sentence), or what is cached and notes.
        tensors: the crossing tensors' labels as :attr:`Cut.crossing` gives them (the
            head's features when the whole base is frozen); () when not cacheable.
        shapes: their shapes per example (no batch axis).
        dtype: the compute dtype they are stored in.
        bytes_per_example: what one example's features weigh (0 when not cacheable).
    """

    cacheable: bool
    reason: str
    tensors: tuple[str, ...] = ()
    shapes: tuple[tuple[int | None, ...], ...] = ()
    dtype: str = "float32"
    bytes_per_example: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``feature_cache`` object of ``kfreeze cost --json`` (without the pricing)."""
        return {
            "cacheable": self.cacheable,
            "reason": self.reason,
            "bytes_per_example": self.bytes_per_example,
            "tensors": list(self.tensors),
            "shapes": [list(shape) for shape in self.shapes],
            "dtype": self.dtype,
        }

    def size_text(self) -> str:
        """``14x14x1024, 784 KiB per example`` (several tensors: ``2 tensors, ...``)."""
        per = f"{human_bytes(self.bytes_per_example)} per example"
        if len(self.shapes) == 1:
            return f"{_dims(self.shapes[0])}, {per}"
        return f"{len(self.shapes)} tensors, {per}"

    def describe(self) -> str:
        """``features cacheable: 14x14x1024, 784 KiB per example``, or
        ``features not cacheable: <reason>``."""
        if self.cacheable:
            return f"features cacheable: {self.size_text()}"
        return f"features not cacheable: {self.reason}"

    def brief(self, short: bool = False) -> str:
        """The status bar's form: ``features cacheable 784 KiB/ex`` or ``features not
        cacheable`` (the reason is left to the side pane); ``short``: ``cache 784 KiB/ex``,
        ``no cache``."""
        if not self.cacheable:
            return "no cache" if short else "features not cacheable"
        size = f"{human_bytes(self.bytes_per_example)}/ex"
        return f"cache {size}" if short else f"features cacheable {size}"


def _dims(shape: tuple[int | None, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


@dataclass(frozen=True)
class _Static:
    """What the verdict needs from the model alone, computed once per model."""

    randoms: tuple[tuple[int, LayerInfo], ...]
    """Leaf start position and row of each random layer, in order."""
    dropouts: tuple[int, ...]
    """Leaf positions of dropout-like layers."""
    weighted: tuple[int, ...]
    """Prefix counts of leaves with weights of their own."""
    shapes: dict[tuple[Path, str], Shape]
    """Every tensor's shape (batch axis included) by its container and label."""


def _static(view: PlanView) -> _Static:
    def compute() -> _Static:
        info = view.info
        randoms = []
        dropouts = []
        shapes: dict[tuple[Path, str], Shape] = {}
        for row in info.layers:
            start = view.span(row.path)[0]
            if is_random(row.class_name):
                randoms.append((start, row))
            elif row.class_name in DROPOUT_CLASSES:
                dropouts.append(start)
            for number, call in enumerate(row.calls):
                for output, shape in enumerate(call.output_shapes):
                    shapes.setdefault(
                        (row.parent_path, call_label(row.name, number, output)), shape
                    )
                for source, shape in zip(call.sources, call.input_shapes, strict=False):
                    shapes.setdefault((row.parent_path, source), shape)
            for output, shape in enumerate(row.output_shapes):
                shapes.setdefault((row.parent_path, call_label(row.name, 0, output)), shape)
        counts = [0]
        for leaf in view.leaves:
            counts.append(counts[-1] + (1 if leaf.own_has_weights else 0))
        return _Static(tuple(randoms), tuple(dropouts), tuple(counts), shapes)

    return view.info.memo("feature-cache-static", compute)


def _shape_of(static: _Static, path: Path, label: str) -> Shape | None:
    """The shape of a crossing tensor named as :class:`CutIndex` names it, looked up in the
    boundary's container and those around it."""
    names = [label, _HOLDER_CALL.sub("", label)]
    for name in list(names):
        if " after " in name:
            names.append("op:" + name.split(" after ", 1)[0])
    for depth in range(len(path) - 1, -1, -1):
        for name in names:
            shape = static.shapes.get((path[:depth], name))
            if shape is not None:
                return shape
    return None


def _not(reason: str, dtype: str) -> FeatureCache:
    return FeatureCache(False, reason, dtype=dtype)


def _first_training(view: PlanView, plan: FreezePlan, end: int) -> tuple[int, str] | None:
    """The first leaf before ``end`` that trains (an exception, LoRA) and why it refuses."""
    found: list[tuple[int, str]] = []
    for path in plan.exceptions:
        pos = view.leaf_position(path)
        if pos is None or pos >= end or not view.leaf_trainable(plan, path):
            continue
        leaf = view.leaves[pos]
        if not leaf.own_has_weights:
            continue
        if leaf.is_batch_norm:
            why = (
                f"{leaf.class_name} {leaf.name} before the boundary trains (an exception): "
                "its batch statistics change every step"
            )
        else:
            why = f"{leaf.class_name} {leaf.name} before the boundary trains (an exception)"
        found.append((pos, why))
    if plan.lora is not None:
        before = [pos for pos in view.lora_positions(plan.lora) if pos < end]
        if before:
            leaf = view.leaves[min(before)]
            found.append((min(before), f"{leaf.name} before the boundary takes LoRA (it trains)"))
    return min(found, key=lambda item: item[0]) if found else None


def _head_features(
    info: ModelInfo, head: HeadSpec | None
) -> tuple[tuple[str, ...], tuple[Shape, ...]]:
    """What the head reads when the whole base is frozen: the attachment, or the outputs."""
    spec = head if head is not None else HeadSpec()
    found = attachment(info, spec) if not spec.is_none else None
    if found is not None:
        label = f"input of {found.layer.name}" if found.of_input else found.layer.name
        return (label,), (found.shape,)
    labels: list[str] = []
    shapes: list[Shape] = []
    for row in model_outputs(info):
        for output, shape in enumerate(row.output_shapes):
            labels.append(call_label(row.name, 0, output))
            shapes.append(shape)
    return tuple(labels), tuple(shapes)


def feature_cache(view: PlanView, plan: FreezePlan, head: HeadSpec | None = None) -> FeatureCache:
    """Whether ``plan`` lets the frozen part's output be cached (see the module's rules).

    Args:
        view: the walked model's plan view.
        plan: the plan.
        head: the head the base gets, for a plan that freezes the whole base (its
            attachment is what is cached); None: the default head.

    Returns:
        The verdict, with the tensors, their shapes per example and bytes when cacheable.
    """
    info = view.info
    dtype = compute_dtype(info)
    static = _static(view)
    end = view.boundary_position(plan)
    cut = view.cut(plan)
    if plan.boundary is not None:
        if static.weighted[end] == 0:
            return _not("nothing is frozen before the boundary", dtype)
        if cut.inside:
            return _not(
                f"a partial freeze inside the subclassed layer {cut.inside}",
                dtype,
            )
    training = _first_training(view, plan, end)
    if training is not None:
        return _not(training[1], dtype)
    random = next(((pos, row) for pos, row in static.randoms if pos < end), None)
    if random is not None:
        row = random[1]
        return _not(
            f"{row.class_name} ({row.name}) before the boundary changes its output every epoch",
            dtype,
        )
    if plan.boundary is None:
        labels, full = _head_features(info, head)
    else:
        labels = cut.crossing
        full = tuple(_shape_of(static, plan.boundary, label) or () for label in labels)
    if not labels:
        return _not("no tensor crosses the boundary that the walk knows of", dtype)
    for label, shape in zip(labels, full, strict=True):
        if not shape:
            return _not(f"the shape of {label} is not known", dtype)
        if any(d is None for d in shape[1:]):
            return _not(f"features of shape {format_shape(shape)} vary with the input", dtype)
    shapes = tuple(tuple(shape[1:]) for shape in full)
    size = DTYPE_BYTES.get(dtype, 4) * sum(math.prod(s) for s in shapes)  # type: ignore[misc]
    notes = f"{len(labels)} tensors cached" if len(labels) > 1 else f"{labels[0]} cached"
    if any(pos < end for pos in static.dropouts):
        notes += "; dropout before the boundary is off when features are cached"
    return FeatureCache(True, notes, tuple(labels), shapes, dtype, size)
