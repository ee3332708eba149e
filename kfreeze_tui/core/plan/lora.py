"""LoRA as a third layer state: which layers take it, and what it adds and trains.

Keras 3.15's ``layer.enable_lora(rank)`` (Dense, EinsumDense, Embedding, Conv1D/2D/3D) freezes
the adapted kernel, keeps the layer's other weights (bias) trainable and adds two trainable
weights: A of shape ``kernel.shape[:-1] + (rank,)`` and B of shape ``(rank, kernel.shape[-1])``.
A :class:`LoraSpec` names the layers (a preset or a regex over layer names, plus the paths the
user flipped) and the rank; this module turns it into leaf positions and counts, without Keras.

The ``attention`` preset is keras-hub 0.32's rule (``Backbone.enable_lora``): every layer *with
weights* whose name is one of ``default_lora_layer_names()`` - ``query_dense``, ``value_dense``,
``query``, ``value``, and for Gemma 3 / PaliGemma vision towers ``query_proj``, ``value_proj`` -
and that has ``enable_lora``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.layers import LayerInfo

Path = tuple[int, ...]

#: keras-hub 0.32's ``Backbone.default_lora_layer_names()``, with Gemma 3's additions.
ATTENTION_NAMES = ("query_dense", "value_dense", "query", "value", "query_proj", "value_proj")
#: The classes the ``linear`` preset takes.
LINEAR_CLASSES = frozenset({"Dense", "EinsumDense"})
#: The target presets; anything else is a regex over whole layer names.
PRESETS = ("attention", "linear", "all")
#: The rank kfreeze proposes when LoRA is switched on without one.
DEFAULT_RANK = 8


@dataclass(frozen=True)
class LoraSpec:
    """Where LoRA goes, and its rank.

    Attributes:
        rank: the rank of the adapters (at least 1).
        targets: a preset (``attention``, ``linear``, ``all``) or a regular expression that
            must match a whole layer name.
        toggles: paths of layers whose LoRA state is the opposite of what ``targets`` gives
            (a layer that cannot take LoRA stays without it).
    """

    rank: int = DEFAULT_RANK
    targets: str = "attention"
    toggles: frozenset[Path] = field(default_factory=frozenset)

    def toggled(self, path: Path) -> LoraSpec:
        """The spec with ``path`` added to or removed from the toggles."""
        return replace(self, toggles=self.toggles ^ {path})

    def with_rank(self, rank: int) -> LoraSpec:
        """The spec with another rank (checked)."""
        check_rank(rank)
        return replace(self, rank=rank)


def check_rank(rank: int) -> int:
    """``rank`` if it is a usable LoRA rank; PlanError otherwise."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise PlanError(f"the LoRA rank must be a whole number of at least 1, not {rank!r}.")
    return rank


def target_pattern(targets: str) -> re.Pattern[str] | None:
    """The compiled regex of a non-preset ``targets`` (None for a preset).

    Raises:
        PlanError: when the regex does not compile.
    """
    if targets in PRESETS:
        return None
    try:
        return re.compile(targets)
    except re.error as exc:
        raise PlanError(
            f"LoRA target {targets!r} is neither attention, linear nor all, and not a "
            f"valid regular expression ({exc})."
        ) from exc


def named_by(row: LayerInfo, targets: str, pattern: re.Pattern[str] | None) -> bool:
    """Whether ``targets`` names ``row`` (supported or not; weightless layers never)."""
    if not row.has_weights or row.is_container:
        return False
    if targets == "attention":
        return row.name in ATTENTION_NAMES
    if targets == "linear":
        return row.class_name in LINEAR_CLASSES
    if targets == "all":
        return any(w.can_train for w in row.weights)
    assert pattern is not None
    return pattern.fullmatch(row.name) is not None


def kernel_size(row: LayerInfo) -> int:
    """Scalars of the weight LoRA adapts (0 for a layer that cannot take LoRA)."""
    return math.prod(d or 0 for d in row.lora_kernel) if row.lora_kernel else 0


def adapter_coefficient(row: LayerInfo) -> int:
    """Adapter scalars per unit of rank: ``prod(kernel[:-1]) + kernel[-1]`` (0 when the layer
    cannot take LoRA or already has it: its adapters are already among its weights)."""
    shape = row.lora_kernel
    if not shape or row.lora_enabled:
        return 0
    return math.prod(d or 0 for d in shape[:-1]) + (shape[-1] or 0)


def adapter_size(row: LayerInfo, rank: int) -> int:
    """Scalars LoRA of ``rank`` adds to ``row`` (A and B)."""
    return rank * adapter_coefficient(row)


def lora_trainable(row: LayerInfo, rank: int) -> int:
    """Parameters that train in ``row`` with LoRA on: its trainable-kind weights but the
    kernel (bias, an existing adapter pair), and the new adapters."""
    return row.trainable_size - kernel_size(row) + adapter_size(row, rank)


def base_targets(leaves: Sequence[LayerInfo], targets: str) -> frozenset[int]:
    """Leaf positions that ``targets`` puts LoRA on (toggles aside), supported layers only."""
    pattern = target_pattern(targets)
    return frozenset(
        i for i, row in enumerate(leaves) if row.lora_supported and named_by(row, targets, pattern)
    )


@dataclass(frozen=True)
class Coverage:
    """What LoRA can reach in a model.

    Attributes:
        reachable: trainable-kind parameters in layers that can take LoRA.
        total: all trainable-kind parameters.
    """

    reachable: int
    total: int

    @property
    def fraction(self) -> float:
        """``reachable / total`` (0 for a model without weights)."""
        return self.reachable / self.total if self.total else 0.0


def coverage(leaves: Sequence[LayerInfo]) -> Coverage:
    """The share of parameters LoRA can reach: trainable-kind weights of layers that have
    ``enable_lora``, out of all trainable-kind weights (the issue's "LoRA share")."""
    return Coverage(
        reachable=sum(row.trainable_size for row in leaves if row.lora_supported),
        total=sum(row.trainable_size for row in leaves),
    )


def unsupported(leaves: Sequence[LayerInfo], spec: LoraSpec) -> tuple[LayerInfo, ...]:
    """Layers that ``spec`` names (by its targets or a toggle) but that cannot take LoRA:
    skipped, and reported."""
    pattern = target_pattern(spec.targets)
    return tuple(
        row
        for row in leaves
        if not row.lora_supported
        and (named_by(row, spec.targets, pattern) or row.path in spec.toggles)
    )


def check_targets(leaves: Sequence[LayerInfo], spec: LoraSpec, model_name: str = "") -> None:
    """Refuse a spec that puts LoRA nowhere: a regex that matches no layer, or targets that
    match only layers which cannot take it (keras-hub's ``attention`` on a ResNet silently
    trains nothing; kfreeze says so).

    Raises:
        PlanError: with one sentence.
    """
    check_rank(spec.rank)
    pattern = target_pattern(spec.targets)
    of = f" of {model_name}" if model_name else ""
    named = [row for row in leaves if named_by(row, spec.targets, pattern)]
    if pattern is not None and not any(pattern.fullmatch(row.name) for row in leaves):
        raise PlanError(f"LoRA target {spec.targets!r} matches no layer name{of}.")
    if not any(row.lora_supported for row in named) and not any(
        row.lora_supported and row.path in spec.toggles for row in leaves
    ):
        if pattern is not None:
            what = (
                f"only layers that cannot take LoRA ({named[0].class_name})"
                if named
                else "only layers without weights"
            )
        else:
            what = {
                "attention": "no layer named " + ", ".join(ATTENTION_NAMES),
                "linear": "no Dense or EinsumDense layer",
                "all": "no layer with enable_lora",
            }[spec.targets]
        raise PlanError(f"LoRA target {spec.targets!r} finds {what}{of}.")
