"""Real training steps on synthetic data: the check of the cost estimate on the box itself.

``kfreeze cost --measure`` builds the model for a plan (the default head on top), compiles it
with the chosen optimizer, runs one step to trace it and then a few timed steps on a random
batch, on the CPU unless ``--gpu``. On a GPU, TensorFlow's own memory counters give the peak.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.runtime.process import deep_recursion, import_keras, native_output_captured
from kfreeze_tui.core.train.build import build_model, flags_restored
from kfreeze_tui.core.train.check import synthetic_batch
from kfreeze_tui.core.train.cost import Optimizer, TrainingSetup

#: Timed steps after the first (which traces the step function and is not timed).
STEPS = 3
#: Classes of the head the measured model gets (its size hardly matters).
CLASSES = 10


@dataclass(frozen=True)
class Measured:
    """What real steps took: seconds per step (median) and the peak memory (GPU only)."""

    step_seconds: float
    peak_bytes: int | None
    #: ``step_seconds`` over the same for full fine-tuning (None: not compared).
    relative_step: float | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "step_seconds": self.step_seconds,
            "peak_bytes": self.peak_bytes,
        }
        if self.relative_step is not None:
            document["relative_step"] = self.relative_step
        return document


def optimizer_for(keras: Any, optimizer: Optimizer, learning_rate: float = 1e-4) -> Any:
    """The Keras optimizer an :class:`Optimizer` names."""
    if optimizer is Optimizer.ADAM:
        return keras.optimizers.Adam(learning_rate)
    if optimizer is Optimizer.ADAMW:
        return keras.optimizers.AdamW(learning_rate)
    momentum = 0.9 if optimizer is Optimizer.SGDM else 0.0
    return keras.optimizers.SGD(learning_rate, momentum=momentum)


@deep_recursion()
def measure(
    base: Any, view: PlanView, plan: FreezePlan, setup: TrainingSetup, gpu: bool = False
) -> Measured:
    """Time real training steps of ``plan`` on ``base`` (flags are restored afterwards; a
    plan with LoRA is built on a copy of ``base``, since LoRA cannot be taken off a layer)."""
    from kfreeze_tui.core.train.adapters import copy_model

    keras = import_keras()
    if plan.lora is not None:
        base = copy_model(base)
    with flags_restored(base), native_output_captured():
        model = build_model(
            base, view, plan, HeadSpec(classes=CLASSES, dropout=0.0), CompileSpec(enabled=False)
        )
        model.compile(
            optimizer=optimizer_for(keras, setup.optimizer),
            loss=keras.losses.SparseCategoricalCrossentropy(),
        )
        x, y = synthetic_batch(model, setup.batch)
        model.train_on_batch(x, y)  # traces the step function
        _reset_gpu_peak(gpu)
        times = []
        for _ in range(STEPS):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        peak = _gpu_peak(gpu)
    return Measured(statistics.median(times), peak)


def measure_plans(
    base: Any, view: PlanView, plans: list[FreezePlan], setup: TrainingSetup, gpu: bool = False
) -> list[Measured | None]:
    """Real steps for each plan, each compared with full fine-tuning (measured once, even
    when it is not among ``plans``); None for a plan that trains the head only, where the
    base is never trained and there is nothing to check."""
    everything = FreezePlan(boundary=view.first_path(), bn_policy=plans[-1].bn_policy)
    found: dict[FreezePlan, Measured] = {}
    for plan in plans:
        if plan.boundary is not None and plan not in found:
            found[plan] = measure(base, view, plan, setup, gpu=gpu)
    full = found.get(everything) or measure(base, view, everything, setup, gpu=gpu)
    return [
        replace(found[plan], relative_step=round(found[plan].step_seconds / full.step_seconds, 4))
        if plan.boundary is not None
        else None
        for plan in plans
    ]


def _reset_gpu_peak(gpu: bool) -> None:
    if not gpu:
        return
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def _gpu_peak(gpu: bool) -> int | None:
    if not gpu:
        return None
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
