"""Training code's side of a plan: set a model up for a phase, apply a plan file, train it.

A model is set up for a phase the same way wherever it is built: the phase's freeze plan
(its boundary, and its BatchNormalization policy or the plan's), compiled with the phase's
learning rates (Adam, or a ``MultiOptimizer`` for a range). :func:`phase_setup` says what that
is, once; the session's export, :func:`apply_plan` and the generated script (which writes it
as text) all start from it. The public functions here are re-exported by ``kfreeze_tui``:
``from kfreeze_tui import apply_plan, check_model, fit_phases``.

Keras is imported inside the functions that need it, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec, Phase, check_phase_number
from kfreeze_tui.core.runtime.process import deep_recursion


@dataclass(frozen=True)
class PhaseSetup:
    """What a new model is built and compiled for.

    Attributes:
        plan: the freeze plan the model is built with.
        phase: the phase whose learning rates its optimizer has; None without phases (Adam
            at the compile settings' rate).
        number: the phase's number, from 1 (1 without phases).
    """

    plan: FreezePlan
    phase: Phase | None
    number: int = 1


def phase_setup(plan: FreezePlan, phases: Sequence[Phase], number: int = 1) -> PhaseSetup:
    """How a model is set up for phase ``number`` of a plan.

    Args:
        plan: the plan's freeze plan (its ``[freeze]``).
        phases: its phases; empty: one phase, the plan as it is (its exceptions too).
        number: the phase, from 1.

    Raises:
        PlanError: the plan has no such phase.
    """
    check_phase_number(len(phases), number)
    if not phases:
        return PhaseSetup(plan, None)
    chosen = phases[number - 1]
    return PhaseSetup(chosen.plan(plan), chosen, number)


def build_for_phase(
    base: Any,
    view: PlanView,
    plan: FreezePlan,
    phases: Sequence[Phase],
    head: HeadSpec,
    compile_spec: CompileSpec,
    number: int = 1,
) -> Any:
    """The new model of a plan (base and head), set up and compiled for phase ``number``.

    The base's flags change in place (its layers are shared with the new model): wrap the
    call in :func:`~kfreeze_tui.core.train.build.flags_restored` to keep it as it was.

    Args:
        base: the Keras model ``view`` was walked from.
        view: its plan view.
        plan: the freeze plan.
        phases: the plan's phases (empty: none).
        head: the head to add.
        compile_spec: how to compile.
        number: the phase to set up for, from 1.

    Raises:
        PlanError: the head does not fit, or there is no such phase.
    """
    from kfreeze_tui.core.train.build import build_model

    if head.is_none and phases:
        raise PlanError(
            "phases train the model with its head's loss, and there is no head "
            "(--head none): build your task model on the exported one and train it in phases "
            "there"
        )
    setup = phase_setup(plan, phases, number)
    return build_model(
        base,
        view,
        setup.plan,
        head,
        compile_spec,
        _phase_optimizer(view, setup.phase, compile_spec) if setup.phase else None,
    )


def _phase_optimizer(
    view: PlanView, phase: Phase, compile_spec: CompileSpec
) -> Callable[[Any], Any]:
    """Makes the optimizer of ``phase`` for a new model (see ``build_model``)."""
    from kfreeze_tui.core.plan.phases import phase_optimizer
    from kfreeze_tui.core.runtime.process import import_keras

    keras = import_keras()

    def optimizer_for(new: Any) -> Any:
        return phase_optimizer(keras, new, view.info, phase, compile_spec.learning_rate)

    return optimizer_for


@deep_recursion()
def check_model(model: Any) -> list[Any]:
    """What is wrong with how a live model is set up to train (nothing is trained).

    Findings have a ``code``, a ``severity`` (``error`` or ``warning``), a one-sentence
    ``message`` and the ``layers`` concerned: ``recompile`` (``trainable`` changed after
    ``compile()``), ``no_trainable``, ``bn_after_frozen``, ``float16_output``,
    ``split_block``, ``high_lr``. ``kfreeze check MODEL.keras`` gives the same for a file, with
    one real training step as proof.

    Args:
        model: a ``keras.Model``.

    Returns:
        A list of :class:`kfreeze_tui.core.train.check.Finding`, errors first.
    """
    from kfreeze_tui.core.train.check import check_model as check

    findings = check(model)
    return sorted(findings, key=lambda finding: finding.severity != "error")


@deep_recursion()
def apply_plan(model: Any, plan: str | Path, phase: int | None = None) -> Any:
    """Apply a kfreeze plan file to a loaded model, for training code.

    The model's layers are frozen as the plan says (by layer name, or by index where a name is
    not found), the plan's head is added and, unless the plan says otherwise, the new model is
    compiled. The layers are shared with ``model``.

    Args:
        model: a ``keras.Model`` (the same architecture the plan was made on).
        plan: the path of a ``.toml`` plan written by kfreeze.
        phase: for a plan with phases, the phase (from 1) to set up and compile for: its
            boundary, and its learning rate (a ``MultiOptimizer`` for a range). None: phase 1.

    Returns:
        The new ``keras.Model``.

    Raises:
        kfreeze_tui.core.errors.PlanError: when the plan does not fit the model.
    """
    import warnings

    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.plan import planfile

    doc = planfile.read(Path(plan))
    view = PlanView(walk(model))
    planfile.check_outputs(doc, view.info)
    freeze, notes = planfile.resolve(doc, view.info)
    phases = planfile.resolve_phases(doc, view.info, notes)
    for note in notes:
        warnings.warn(f"kfreeze: {note}", stacklevel=2)
    number = 1 if phase is None else phase
    return build_for_phase(model, view, freeze, phases, doc.head, doc.compile, number)


@deep_recursion()
def fit_phases(
    model_or_base: Any,
    plan: str | Path,
    train: Any,
    validation_data: Any = None,
    callbacks: Any = None,
    **fit_kwargs: Any,
) -> Any:
    """Train through every phase of a plan: set the flags, compile again, continue the epochs.

    Each phase freezes the base before its boundary (the head only for ``head``), compiles
    with its learning rate (a ``MultiOptimizer`` for a range ``lo..hi``) and calls ``fit``
    with ``initial_epoch`` where the last phase stopped, the same ``callbacks`` and
    ``fit_kwargs``. A plan without phases is one phase of ``fit_kwargs["epochs"]`` (1 if
    not given).

    Args:
        model_or_base: the base the plan was made on, or the model ``apply_plan`` built
            from it (with the head).
        plan: the path of a ``.toml`` plan written by kfreeze.
        train: what ``fit`` takes as ``x`` (a ``tf.data.Dataset``, arrays with ``y`` in
            ``fit_kwargs`` ...).
        validation_data: passed to every ``fit``.
        callbacks: passed to every ``fit`` (the same objects, so they see every epoch).

    Returns:
        One ``keras.callbacks.History`` with every epoch of every phase.
    """
    import warnings

    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.plan import planfile
    from kfreeze_tui.core.plan.head import is_head_layer
    from kfreeze_tui.core.runtime.process import import_keras

    keras = import_keras()
    has_head = any(is_head_layer(layer.name) for layer in model_or_base.layers)
    model = model_or_base if has_head else apply_plan(model_or_base, plan, phase=1)
    doc = planfile.read(Path(plan))
    view = PlanView(walk(model))
    freeze, notes = planfile.resolve(doc, view.info)
    phases = planfile.resolve_phases(doc, view.info, notes) or (
        Phase(boundary=freeze.boundary, epochs=int(fit_kwargs.pop("epochs", 1))),
    )
    for note in notes if has_head else []:  # otherwise apply_plan has said them already
        warnings.warn(f"kfreeze: {note}", stacklevel=2)
    fit_kwargs.pop("epochs", None)
    fit_kwargs.pop("initial_epoch", None)
    first_head = next(row.path for row in view.info.top_level if is_head_layer(row.name))
    merged = keras.callbacks.History()
    merged.history, merged.epoch = {}, []
    epoch = 0
    for phase in phases:
        # A plan without phases trains as it is (its exceptions too).
        phase_plan = phase.plan(freeze) if doc.phases else freeze
        if phase_plan.boundary is None:  # the head only: the first head layer trains
            phase_plan = phase_plan.with_boundary(first_head)
        phase_plan = _lora_off_the_head(view, phase_plan, is_head_layer)
        _set_up_phase(keras, model, view, phase_plan, phase, doc.head, doc.compile)
        result = model.fit(
            train,
            validation_data=validation_data,
            initial_epoch=epoch,
            epochs=epoch + phase.epochs,
            callbacks=callbacks,
            **fit_kwargs,
        )
        for key, values in result.history.items():
            merged.history.setdefault(key, []).extend(values)
        merged.epoch.extend(result.epoch)
        epoch += phase.epochs
    merged.set_model(model)
    return merged


def _lora_off_the_head(view: PlanView, plan: FreezePlan, is_head: Any) -> FreezePlan:
    """The plan with LoRA kept off the head's layers (they train whole, as when
    :func:`apply_plan` built them after putting LoRA on the base): the walk of a model with
    its head sees them among the layers ``linear`` or ``all`` name."""
    lora = plan.lora
    if lora is None:
        return plan
    on = view.lora_positions(lora)
    head = {leaf.path for i, leaf in enumerate(view.leaves) if i in on and is_head(leaf.name)}
    return plan.with_lora(replace(lora, toggles=lora.toggles ^ head)) if head else plan


def _set_up_phase(
    keras: Any,
    model: Any,
    view: PlanView,
    plan: FreezePlan,
    phase: Phase,
    head: HeadSpec,
    compile_spec: CompileSpec,
) -> None:
    """Set an already built model (base and head, walked as ``view``) up for a phase:
    its flags as ``plan`` says, compiled again with the phase's learning rates."""
    from kfreeze_tui.core.plan.phases import phase_optimizer
    from kfreeze_tui.core.train.build import apply_freeze, apply_lora, compile_arguments

    apply_freeze(model, view, plan)
    apply_lora(model, view, plan)
    # The head's loss; the outputs kept after it (the plan's keep) get none.
    loss, metrics = compile_arguments(keras, head, compile_spec, len(model.outputs) - 1)
    model.compile(
        optimizer=phase_optimizer(keras, model, view.info, phase, compile_spec.learning_rate),
        loss=loss,
        metrics=metrics,
    )
