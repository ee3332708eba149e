"""Whether a plan's frozen part can be run once and its output cached as features.

A minimal verdict (the script slice's stand-in for the core slice's, same interface): the
boundary is None (the whole base frozen: its outputs are the features) or a cut whose crossing
tensors are layers' outputs; nothing before the cut trains (BatchNormalization included) and no
``Random*`` augmentation layer runs before it. Pure data: no Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.model.layers import LayerInfo
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class FeatureCache:
    """The verdict on caching the frozen part's output.

    Attributes:
        cacheable: the frozen part is a pure function of the input.
        reason: why not (one sentence), or what is cached.
        tensors: the crossing tensors' labels (the base's outputs when everything is frozen).
        shapes: each tensor's shape per example (no batch axis).
        dtype: the features' dtype.
        bytes_per_example: disk per example (0 when not cacheable or a shape is unknown).
    """

    cacheable: bool
    reason: str
    tensors: tuple[str, ...] = ()
    shapes: tuple[Shape, ...] = ()
    dtype: str = "float32"
    bytes_per_example: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``feature_cache`` object of ``kfreeze cost --json``."""
        return {
            "cacheable": self.cacheable,
            "reason": self.reason,
            "bytes_per_example": self.bytes_per_example,
            "tensors": list(self.tensors),
            "shapes": [list(shape) for shape in self.shapes],
            "dtype": self.dtype,
        }

    def describe(self) -> str:
        """``features cacheable: 14x14x1024, 784 KiB per example``, or why not."""
        if not self.cacheable:
            return f"features not cacheable: {self.reason}"
        shapes = ", ".join("x".join("?" if d is None else str(d) for d in s) for s in self.shapes)
        return f"features cacheable: {shapes}, {self.bytes_per_example / 1024:,.0f} KiB per example"


_ITEM_SIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _dtype(policy: str) -> str:
    return policy.removeprefix("mixed_") if policy.startswith("mixed_") else policy


def _is_random(row: LayerInfo) -> bool:
    return row.class_name.startswith("Random")


def feature_cache(view: PlanView, plan: FreezePlan, head: HeadSpec | None = None) -> FeatureCache:
    """Whether the frozen part of ``plan`` can be cached, and what it makes per example
    (``head``: as the core's verdict takes it; this minimal one reports the base's outputs)."""
    info = view.info
    cut = view.cut(plan)
    end = view.boundary_position(plan)
    if plan.boundary is None:
        rows = tuple(row for row in info.layers if row.name in info.output_layers) or tuple(
            view.leaves[-1:]
        )
        labels = tuple(row.name for row in rows)
    else:
        if cut.inside:
            return FeatureCache(False, f"the boundary is inside {cut.inside}")
        if not cut.crossing:
            return FeatureCache(False, "nothing is frozen before the boundary")
        if len(plan.boundary) != 1:
            return FeatureCache(False, "the boundary is inside a nested model")
        by_name = {row.name: row for row in info.layers if len(row.path) == 1}
        unknown = [label for label in cut.crossing if label not in by_name]
        if unknown:
            return FeatureCache(False, f"the tensor {unknown[0]} is not a layer's output")
        rows = tuple(by_name[label] for label in cut.crossing)
        labels = cut.crossing
    for pos in range(end):
        leaf = view.leaves[pos]
        if view.leaf_trainable(plan, leaf.path):
            return FeatureCache(False, f"{leaf.name} trains before the boundary")
        if _is_random(leaf):
            return FeatureCache(False, f"{leaf.name} ({leaf.class_name}) runs before the boundary")
    if any(len(row.output_shapes) != 1 for row in rows):
        return FeatureCache(False, "a crossing layer has several outputs")
    shapes = tuple(tuple(row.output_shapes[0][1:]) for row in rows)
    dtype = _dtype(info.dtype_policy)
    size = 0
    if all(d is not None for s in shapes for d in s):
        size = sum(math.prod(s) for s in shapes) * _ITEM_SIZE.get(dtype, 4)  # type: ignore[arg-type]
    return FeatureCache(True, f"cached: {', '.join(labels)}", labels, shapes, dtype, size)
