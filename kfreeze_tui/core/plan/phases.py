"""Phases: staged unfreezing, each phase with its boundary, epochs and learning rates.

The Keras fine-tuning guide trains the new head first, then unfreezes part of the base with a
low learning rate. A plan's phases say that once: phase 1 ``head:3:1e-3`` (the whole base
frozen, 3 epochs at 1e-3), phase 2 ``conv5_block1_1_conv:5:1e-5``, phase 3
``conv4_block1_1_conv:5:1e-6..1e-5``: a range is spread geometrically over the stages after
the boundary (the first gets ``lo``) and the head gets ``hi`` (discriminative learning rates,
as fastai's ``slice(lo, hi)``), with ``keras.optimizers.MultiOptimizer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.layers import ModelInfo
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, Path

#: What a phase's boundary is called when the whole base is frozen.
HEAD = "head"


@dataclass(frozen=True)
class Phase:
    """One stage of training.

    Attributes:
        boundary: the first layer that trains (a path in the base), None for the head only.
        epochs: how many epochs the phase trains.
        lr: the learning rate (every trainable variable), when not a range.
        lr_range: ``(lo, hi)``: lo for the first stage after the boundary, rising
            geometrically stage by stage, hi for the head.
        bn_policy: the phase's own BatchNormalization policy (None: the plan's).
        lora: False trains the phase without the plan's LoRA (a head warm-up before it);
            None or True: with it. Keras cannot take LoRA off a layer, so once a phase has
            it every later phase does (:func:`check_phase_lora`).
    """

    boundary: Path | None
    epochs: int
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    bn_policy: BNPolicy | None = None
    lora: bool | None = None

    def plan(self, base: FreezePlan) -> FreezePlan:
        """The freeze plan of this phase: its boundary, and its BatchNormalization policy or
        the plan's (exceptions to a boundary are not carried into phases; the plan's LoRA
        is: Keras cannot take it off a layer again)."""
        return FreezePlan(
            boundary=self.boundary,
            bn_policy=self.bn_policy or base.bn_policy,
            lora=None if self.lora is False else base.lora,
        )

    def lr_text(self) -> str:
        if self.lr_range is not None:
            return f"{self.lr_range[0]:g}..{self.lr_range[1]:g}"
        return f"{self.lr:g}" if self.lr is not None else ""

    def spec(self, info: ModelInfo) -> str:
        """``BOUNDARY:EPOCHS[:LR|:LO..HI]``, as ``--phase`` takes it."""
        where = HEAD if self.boundary is None else info.layer(self.boundary).name
        text = f"{where}:{self.epochs}"
        lr = self.lr_text()
        return f"{text}:{lr}" if lr else text


def check_phase_lora(plan_has_lora: bool, phases: Sequence[Phase]) -> None:
    """Refuse phases whose LoRA cannot be: ``lora = true`` in a plan without LoRA, or a
    phase without LoRA after one with it (Keras cannot take LoRA off a layer).

    Raises:
        PlanError: naming the phase.
    """
    on_since = 0
    for number, phase in enumerate(phases, 1):
        if phase.lora and not plan_has_lora:
            raise PlanError(f"phase {number} has lora = true, but the plan has no [lora] table")
        with_lora = plan_has_lora and phase.lora is not False
        if with_lora and not on_since:
            on_since = number
        if not with_lora and on_since:
            raise PlanError(
                f"phase {number} has lora = false after phase {on_since} put LoRA on: Keras "
                "cannot take LoRA off a layer, so only the first phases can go without it"
            )


def check_phase_number(count: int, number: int) -> None:
    """Refuse a phase number (from 1) that a plan with ``count`` phases does not have.

    A plan without phases is one phase: number 1.

    Raises:
        PlanError: the number is out of range.
    """
    if count == 0 and number != 1:
        raise PlanError(f"the plan has no phases, so no phase {number} (only its [freeze], 1)")
    if count and not 1 <= number <= count:
        raise PlanError(f"the plan has phases 1 to {count}, not {number}")


def parse_rate(text: str, what: str) -> float | tuple[float, float]:
    """``1e-5`` or ``1e-6..1e-5``.

    Raises:
        PlanError: not positive numbers, or lo above hi.
    """
    parts = text.split("..")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise PlanError(
            f"{what}: {text!r} is not a learning rate (1e-5) or a range (1e-6..1e-5)"
        ) from None
    if len(values) not in (1, 2) or any(not v > 0 for v in values):
        raise PlanError(f"{what}: learning rates must be positive, as 1e-5 or 1e-6..1e-5")
    if len(values) == 1:
        return values[0]
    lo, hi = values
    if lo > hi:
        raise PlanError(f"{what}: the range {text} goes down; write it low..high")
    return lo, hi


def parse_phase(text: str, info: ModelInfo, notes: list[str] | None = None) -> Phase:
    """A phase from ``BOUNDARY:EPOCHS[:LR|:LO..HI]`` (``head:3:1e-3``).

    Raises:
        PlanError: a part is missing or wrong, or the boundary is not a layer.
    """
    from kfreeze_tui.core.model.names import parse_layer_ref

    what = f"--phase {text}"
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise PlanError(f"{what} must be BOUNDARY:EPOCHS or BOUNDARY:EPOCHS:LR (e.g. head:3:1e-3)")
    try:
        epochs = int(parts[1])
    except ValueError:
        raise PlanError(f"{what}: {parts[1]!r} is not a number of epochs") from None
    if epochs < 1:
        raise PlanError(f"{what}: a phase trains at least one epoch")
    boundary = None
    if parts[0].lower() != HEAD:
        try:
            boundary = parse_layer_ref(info, parts[0], notes)
        except Exception as exc:
            raise PlanError(f"{what}: {str(exc).rstrip('.')}") from None
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    if len(parts) == 3:
        rate = parse_rate(parts[2], what)
        if isinstance(rate, tuple):
            lr_range = rate
        else:
            lr = rate
    return Phase(boundary=boundary, epochs=epochs, lr=lr, lr_range=lr_range)


def stage_rates(info: ModelInfo, phase: Phase, default_lr: float) -> tuple[dict[str, float], float]:
    """The learning rate of each top-level layer that can train in ``phase``, and the head's.

    With a single rate (or none: ``default_lr``) every layer and the head get it. With a
    range ``lo..hi`` over the stages from the boundary's to the last (n of them), stage ``i``
    (0 for the boundary's) gets ``lo * (hi / lo) ** (i / n)`` and the head ``hi``.

    Returns:
        ``({layer name: rate}, head rate)`` for the top-level layers at or after the boundary.
    """
    from kfreeze_tui.core.plan.head import is_head_layer

    top = [row for row in info.top_level if not is_head_layer(row.name)]
    start = 0 if phase.boundary is None else phase.boundary[0]
    after = [row for row in top if row.index >= start] if phase.boundary is not None else []
    if phase.lr_range is None:
        rate = phase.lr if phase.lr is not None else default_lr
        return {row.name: rate for row in after}, rate
    lo, hi = phase.lr_range
    stages = sorted({row.stage for row in after})
    count = len(stages)
    rank = {stage: i for i, stage in enumerate(stages)}
    rates = {row.name: lo * (hi / lo) ** (rank[row.stage] / count) for row in after}
    return rates, hi


def variable_rates(
    model: Any, info: ModelInfo, phase: Phase, default_lr: float
) -> tuple[dict[str, float], float]:
    """The learning rate of every variable of ``model`` (by its path) that the phase's stage
    rates cover, and the rate of the rest (the head)."""
    rates, head_rate = stage_rates(info, phase, default_lr)
    by_path: dict[str, float] = {}
    for layer in model.layers:
        rate = rates.get(layer.name)
        if rate is not None:
            for variable in layer.weights:
                by_path[variable.path] = rate
    return by_path, head_rate


def phase_optimizer(
    keras: Any,
    model: Any,
    info: ModelInfo,
    phase: Phase,
    default_lr: float,
    optimizer: Callable[..., Any] | None = None,
) -> Any:
    """Adam at the phase's rate, or a ``MultiOptimizer`` (one Adam per rate) for a range.

    ``model`` is the new model (base and head); ``info`` is the base's walk. Variables are
    mapped by their exact paths. ``optimizer`` makes an optimizer from a learning rate
    (default ``keras.optimizers.Adam``).
    """
    make = optimizer or keras.optimizers.Adam
    by_path, head_rate = variable_rates(model, info, phase, default_lr)
    if phase.lr_range is None:
        return make(learning_rate=head_rate)
    optimizers: dict[float, Any] = {}

    def one_for(rate: float) -> Any:
        if rate not in optimizers:
            optimizers[rate] = make(learning_rate=rate)
        return optimizers[rate]

    mapping = {path: one_for(rate) for path, rate in by_path.items()}
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(default_optimizer=one_for(head_rate), optimizer_map=mapping)
    )


@dataclass(frozen=True)
class CompileSpec:
    """How the new model is compiled.

    Attributes:
        enabled: compile at all (``--no-compile`` turns it off).
        learning_rate: Adam's learning rate; 1e-4 is what the Keras guide suggests for
            fine-tuning.
        labels: ``sparse`` (integer class ids) or ``onehot`` (one-hot vectors).
    """

    enabled: bool = True
    learning_rate: float = 1e-4
    labels: str = "sparse"
