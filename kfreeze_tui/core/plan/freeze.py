"""The freeze plan as plain data, and what it means for each layer and for the totals.

A :class:`FreezePlan` says where the freeze boundary is, which layers are exceptions to it,
and what happens to BatchNormalization layers after it. :class:`PlanView` evaluates a plan
against a walked model without Keras: every keypress in the app goes through it, so its
answers cost the same on VGG16 and on a 3,000-layer model (prefix sums, not loops).

Layers are counted in *leaf order*: the depth-first order of the walk with nested containers
left out (their weights are their layers' weights). "Before the boundary" means earlier in
that order, which for a single model is ``model.layers`` order.

A container with weights of its own (in none of its sublayers: ViT's class token in its
patching-and-embedding layer) is also a leaf, for those weights only (see
:attr:`LayerInfo.is_leaf`): it comes first in leaf order, before its layers, so a boundary at
the container trains its own weights and a boundary at its first layer freezes them. Every
parameter is then counted once: a container's own weights at the container, the rest at its
layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from itertools import accumulate

from kfreeze_tui.core.model.cut import Cut, CutIndex
from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo
from kfreeze_tui.core.plan import lora as lora_rules
from kfreeze_tui.core.plan.lora import LoraSpec

Path = tuple[int, ...]


class BNPolicy(str, Enum):
    """What happens to BatchNormalization layers after the boundary."""

    FROZEN = "frozen"
    """Kept frozen (inference mode), as the Keras fine-tuning guide recommends."""
    TRAINABLE = "trainable"
    """Trained like the layers around them."""

    def toggled(self) -> BNPolicy:
        """The other policy."""
        return BNPolicy.TRAINABLE if self is BNPolicy.FROZEN else BNPolicy.FROZEN


class Reason(str, Enum):
    """Why a layer is (or is not) trainable under a plan."""

    BEFORE_BOUNDARY = "before the freeze boundary"
    AFTER_BOUNDARY = "at or after the freeze boundary"
    BN_POLICY = "BatchNormalization policy: kept frozen after the boundary"
    EXCEPTION = "exception to the boundary (toggled with space)"
    CONTAINER = "nested model: trainable where its layers are"
    LORA = "LoRA: kernel frozen, adapters and bias train"


@dataclass(frozen=True)
class FreezePlan:
    """Where to freeze.

    Attributes:
        boundary: path of the first layer that trains; every layer before it (in leaf order)
            is frozen. None freezes every layer.
        exceptions: paths of layers whose state is the opposite of what the boundary and the
            BatchNormalization policy give them.
        bn_policy: what happens to BatchNormalization layers after the boundary.
        lora: where LoRA goes (None: nowhere). A LoRA layer is LoRA whatever the boundary and
            the exceptions say (keras-hub's ``backbone.enable_lora`` is boundary None plus
            the ``attention`` targets).
    """

    boundary: Path | None = (0,)
    exceptions: frozenset[Path] = field(default_factory=frozenset)
    bn_policy: BNPolicy = BNPolicy.FROZEN
    lora: LoraSpec | None = None

    def with_boundary(self, boundary: Path | None) -> FreezePlan:
        """The plan with a new boundary (exceptions kept)."""
        return replace(self, boundary=boundary)

    def toggled_exception(self, path: Path) -> FreezePlan:
        """The plan with ``path`` added to or removed from the exceptions."""
        return replace(self, exceptions=self.exceptions ^ {path})

    def with_bn_policy(self, policy: BNPolicy) -> FreezePlan:
        """The plan with another BatchNormalization policy."""
        return replace(self, bn_policy=policy)

    def with_lora(self, lora: LoraSpec | None) -> FreezePlan:
        """The plan with another LoRA spec (None switches LoRA off)."""
        return replace(self, lora=lora)


@dataclass(frozen=True)
class Totals:
    """Parameter counts of the model with a plan applied."""

    total: int
    trainable: int

    @property
    def non_trainable(self) -> int:
        """``total - trainable``."""
        return self.total - self.trainable

    @property
    def trainable_fraction(self) -> float:
        """Trainable share of all parameters (0 for a model without weights)."""
        return self.trainable / self.total if self.total else 0.0

    @property
    def headline(self) -> str:
        """``trainable 294,912 || all 110,123,456 || 0.27 %``: the count PEFT users look
        for, LoRA's adapters included (``kfreeze layers`` and the status bar print it)."""
        percent = 100 * self.trainable_fraction
        return f"trainable {self.trainable:,} || all {self.total:,} || {percent:.2f} %"


@dataclass(frozen=True)
class _LoraTable:
    """One targets' layers (leaf positions) and prefix sums over them: their sizes when
    trainable, what they train with LoRA but the adapters, and adapter scalars per rank."""

    positions: frozenset[int]
    size: list[int]
    base: list[int]
    coefficient: list[int]


class PlanView:
    """A walked model's leaves and prefix sums, to evaluate plans in O(exceptions).

    Args:
        info: the walked model.
    """

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.cuts = CutIndex(info)
        self.leaves: tuple[LayerInfo, ...] = tuple(row for row in info.layers if row.is_leaf)
        self._leaf_pos: dict[Path, int] = {leaf.path: i for i, leaf in enumerate(self.leaves)}
        self._is_bn = [leaf.is_batch_norm for leaf in self.leaves]
        sizes = [leaf.own_trainable_size for leaf in self.leaves]
        self._size = sizes
        self._prefix = [0, *accumulate(sizes)]
        self._prefix_bn = [
            0,
            *accumulate(s if bn else 0 for s, bn in zip(sizes, self._is_bn, strict=True)),
        ]
        self._prefix_bn_count = [0, *accumulate(1 if bn else 0 for bn in self._is_bn)]
        self._lora_tables: dict[str, _LoraTable] = {}
        self._lora_positions: dict[tuple[str, frozenset[Path]], frozenset[int]] = {}
        # Each row's leaves are the contiguous range [start, end) of leaf positions.
        self._span: dict[Path, tuple[int, int]] = {}
        positions = [self._leaf_pos.get(row.path) for row in info.layers]
        next_leaf = len(self.leaves)
        firsts: list[int] = [0] * len(info.layers)
        for i in range(len(info.layers) - 1, -1, -1):
            if positions[i] is not None:
                next_leaf = positions[i]  # type: ignore[assignment]
            firsts[i] = next_leaf
        for i, row in enumerate(info.layers):
            start = firsts[i]
            if row.is_container:
                end = start + 1 if positions[i] is not None else start
                prefix_len = len(row.path)
                j = i + 1
                while j < len(info.layers) and info.layers[j].path[:prefix_len] == row.path:
                    if positions[j] is not None:
                        end = positions[j] + 1  # type: ignore[operator]
                    j += 1
                self._span[row.path] = (start, max(start, end))
            else:
                self._span[row.path] = (start, start + 1)

    # -- positions -------------------------------------------------------------------------

    def boundary_position(self, plan: FreezePlan) -> int:
        """Leaf position of the boundary (``len(leaves)`` when everything is frozen)."""
        if plan.boundary is None:
            return len(self.leaves)
        span = self._span.get(plan.boundary)
        return span[0] if span else 0

    def span(self, path: Path) -> tuple[int, int]:
        """The leaf positions ``[start, end)`` a row covers (one leaf, or a container's)."""
        return self._span[path]

    def leaf_position(self, path: Path) -> int | None:
        """Leaf position of a layer (a container's, for its own weights, when it has some)."""
        return self._leaf_pos.get(path)

    # -- states ----------------------------------------------------------------------------

    def _default(self, pos: int, boundary: int, policy: BNPolicy) -> bool:
        if pos < boundary:
            return False
        return not (policy is BNPolicy.FROZEN and self._is_bn[pos])

    def leaf_trainable(self, plan: FreezePlan, path: Path) -> bool:
        """Whether the leaf at ``path`` trains under ``plan`` (a container: its own weights)."""
        pos = self._leaf_pos[path]
        if plan.lora is not None and pos in self.lora_positions(plan.lora):
            return True
        state = self._default(pos, self.boundary_position(plan), plan.bn_policy)
        return state != (path in plan.exceptions)

    def reason(self, plan: FreezePlan, path: Path) -> Reason:
        """Why the layer at ``path`` is in the state :meth:`leaf_trainable` gives."""
        if path not in self._leaf_pos:
            return Reason.CONTAINER
        if self.lora_on(plan, path):
            return Reason.LORA
        if path in plan.exceptions:
            return Reason.EXCEPTION
        pos = self._leaf_pos[path]
        if pos < self.boundary_position(plan):
            return Reason.BEFORE_BOUNDARY
        if plan.bn_policy is BNPolicy.FROZEN and self._is_bn[pos]:
            return Reason.BN_POLICY
        return Reason.AFTER_BOUNDARY

    def trainable_in(self, plan: FreezePlan, path: Path) -> int:
        """Trainable parameters of a row (a layer, or all layers of a container)."""
        start, end = self._span[path]
        return self.trainable_between(plan, start, end)

    def trainable_between(self, plan: FreezePlan, start: int, end: int) -> int:
        """Trainable parameters of the leaves at positions ``[start, end)`` under ``plan``
        (LoRA layers count their adapters and bias, not their kernel)."""
        boundary = self.boundary_position(plan)
        lo = max(start, boundary)
        count = 0
        if lo < end:
            count = self._prefix[end] - self._prefix[lo]
            if plan.bn_policy is BNPolicy.FROZEN:
                count -= self._prefix_bn[end] - self._prefix_bn[lo]
        lora = plan.lora
        on: frozenset[int] = frozenset()
        if lora is not None:
            on = self.lora_positions(lora)
            table = self._lora_table(lora.targets)
            # The base targets' default counts out, their LoRA counts in (prefix sums) ...
            if lo < end:
                count -= table.size[end] - table.size[lo]
            count += table.base[end] - table.base[start]
            count += lora.rank * (table.coefficient[end] - table.coefficient[start])
            # ... then the toggled layers, one by one.
            for path in lora.toggles:
                pos = self._leaf_pos.get(path)
                if pos is None or not start <= pos < end or not self.leaves[pos].lora_supported:
                    continue
                # The exceptions loop below handles a toggled-off layer's exception.
                default = self._default(pos, boundary, plan.bn_policy) * self._size[pos]
                lora_count = lora_rules.lora_trainable(self.leaves[pos], lora.rank)
                count += lora_count - default if pos in on else default - lora_count
        for path in plan.exceptions:
            pos = self._leaf_pos.get(path)
            if pos is None or not start <= pos < end or pos in on:
                continue
            size = self._size[pos]
            count += -size if self._default(pos, boundary, plan.bn_policy) else size
        return count

    # -- LoRA ------------------------------------------------------------------------------

    def _lora_table(self, targets: str) -> _LoraTable:
        """Prefix sums over the layers ``targets`` names, computed once per targets."""
        if targets not in self._lora_tables:
            base = lora_rules.base_targets(self.leaves, targets)
            rows = [(i in base, leaf) for i, leaf in enumerate(self.leaves)]
            self._lora_tables[targets] = _LoraTable(
                positions=base,
                size=[
                    0,
                    *accumulate(
                        s if on else 0 for s, (on, _) in zip(self._size, rows, strict=True)
                    ),
                ],
                base=[
                    0,
                    *accumulate(
                        leaf.trainable_size - lora_rules.kernel_size(leaf) if on else 0
                        for on, leaf in rows
                    ),
                ],
                coefficient=[
                    0,
                    *accumulate(
                        lora_rules.adapter_coefficient(leaf) if on else 0 for on, leaf in rows
                    ),
                ],
            )
        return self._lora_tables[targets]

    def lora_positions(self, lora: LoraSpec) -> frozenset[int]:
        """Leaf positions of the layers that get LoRA under ``lora`` (toggles applied)."""
        key = (lora.targets, lora.toggles)
        if key not in self._lora_positions:
            base = self._lora_table(lora.targets).positions
            flipped = {
                pos
                for path in lora.toggles
                if (pos := self._leaf_pos.get(path)) is not None and self.leaves[pos].lora_supported
            }
            self._lora_positions = {key: base ^ flipped}  # the last one only: toggles change
        return self._lora_positions[key]

    def lora_on(self, plan: FreezePlan, path: Path) -> bool:
        """Whether the layer at ``path`` gets LoRA under ``plan``."""
        pos = self._leaf_pos.get(path)
        return plan.lora is not None and pos is not None and pos in self.lora_positions(plan.lora)

    def lora_state(self, plan: FreezePlan, path: Path) -> str:
        """``on``, ``off`` or ``unsupported`` (a layer without ``enable_lora``)."""
        pos = self._leaf_pos.get(path)
        if pos is None or not self.leaves[pos].lora_supported:
            return "unsupported"
        return "on" if self.lora_on(plan, path) else "off"

    def adapters(self, plan: FreezePlan) -> int:
        """Parameters the plan's LoRA adds to the model (A and B of every LoRA layer)."""
        lora = plan.lora
        if lora is None:
            return 0
        return lora.rank * sum(
            lora_rules.adapter_coefficient(self.leaves[pos]) for pos in self.lora_positions(lora)
        )

    def coverage(self) -> lora_rules.Coverage:
        """The share of parameters LoRA can reach in this model."""
        return self.info.memo("lora_coverage", lambda: lora_rules.coverage(self.leaves))

    def trainable_size_between(self, start: int, end: int) -> int:
        """Parameters the leaves at ``[start, end)`` would train if all were trainable."""
        return self._prefix[end] - self._prefix[start]

    def totals(self, plan: FreezePlan) -> Totals:
        """The model's parameter counts with ``plan`` applied."""
        return Totals(
            total=self.info.total_params + self.adapters(plan),
            trainable=self.trainable_between(plan, 0, len(self.leaves)),
        )

    def batch_norms_after_boundary(self, plan: FreezePlan) -> int:
        """How many BatchNormalization layers sit at or after the boundary."""
        boundary = self.boundary_position(plan)
        return self._prefix_bn_count[-1] - self._prefix_bn_count[boundary]

    def cut(self, plan: FreezePlan) -> Cut:
        """The cut the plan's boundary makes (exceptions aside): which tensors cross it."""
        return self.cuts.at(plan.boundary)

    def boundary_layer(self, plan: FreezePlan) -> LayerInfo | None:
        """The first layer that trains by the boundary (None when everything is frozen)."""
        pos = self.boundary_position(plan)
        return self.leaves[pos] if pos < len(self.leaves) else None

    # -- building plans --------------------------------------------------------------------

    def plan_from_model(self) -> FreezePlan:
        """The plan that reproduces the trainable state of the model as loaded.

        A model with nothing frozen gets the default plan (boundary at the first layer,
        BatchNormalization kept frozen). Otherwise the boundary goes after the last frozen layer
        before the first that trains; the BatchNormalization layers after it decide the policy
        by majority; every layer that still differs is an exception.
        """
        weighted = [i for i, leaf in enumerate(self.leaves) if leaf.own_has_weights]
        trains = [leaf.own_trainable for leaf in self.leaves]
        if all(trains[i] for i in weighted):
            return FreezePlan(boundary=self.first_path())
        first = next((i for i in weighted if trains[i]), len(self.leaves))
        # The boundary goes right after the last frozen layer before the first trainable one,
        # so weightless layers in between (padding, activations) count as trainable.
        frozen_before = [i for i in weighted if i < first]
        start = frozen_before[-1] + 1 if frozen_before else 0
        boundary = self.leaves[start].path if start < len(self.leaves) else None
        bns = [i for i in weighted if i >= start and self._is_bn[i]]
        frozen_bns = sum(1 for i in bns if not trains[i])
        policy = BNPolicy.FROZEN if not bns or frozen_bns * 2 >= len(bns) else BNPolicy.TRAINABLE
        plan = FreezePlan(boundary=boundary, bn_policy=policy)
        b = self.boundary_position(plan)
        exceptions = frozenset(
            self.leaves[i].path for i in weighted if self._default(i, b, policy) != trains[i]
        )
        return replace(plan, exceptions=exceptions)

    def plan_as_loaded(self) -> FreezePlan:
        """The plan under which exactly the layers that train in the model as loaded train.

        :meth:`plan_from_model` with every layer that still differs as an exception, under
        the BatchNormalization policy that needs fewer of them (a model with nothing frozen
        trains its BatchNormalization layers, which the default plan keeps frozen).
        """
        suggested = self.plan_from_model()
        candidates = []
        for policy in (suggested.bn_policy, suggested.bn_policy.toggled()):
            plan = replace(suggested, bn_policy=policy, exceptions=frozenset())
            b = self.boundary_position(plan)
            exceptions = frozenset(
                leaf.path
                for i, leaf in enumerate(self.leaves)
                if leaf.own_has_weights and self._default(i, b, policy) != leaf.own_trainable
            )
            candidates.append(replace(plan, exceptions=exceptions))
        return min(candidates, key=lambda plan: len(plan.exceptions))

    def first_path(self) -> Path | None:
        """Path of the first leaf (the boundary that freezes nothing)."""
        return self.leaves[0].path if self.leaves else None
