"""Applying a plan to a Keras model.

Keras's ``trainable`` setter on a container overwrites the flag of every layer inside it (a
subclassed layer's sublayers too), so containers are set first (outermost first) and their
layers after. A container is trainable when any layer inside it trains; otherwise Keras would
hide its trainable layers from ``trainable_weights``. A container's own weights (in none of
its layers) follow its flag; when the plan freezes them while some of its layers train, their
variables are set non-trainable one by one (``variable.trainable``), the only public way.
A frozen BatchNormalization layer runs in inference mode in Keras 3.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import PlanError, first_line
from kfreeze_tui.core.model.layers import own_variables
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import (
    HEAD_OUTPUT,
    Attachment,
    HeadSpec,
    attachment,
    kept_outputs,
    pooling_class,
    resolved_pooling,
    validate,
)
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.runtime.keras_private import flatten_layers, sublayers
from kfreeze_tui.core.runtime.process import deep_recursion


def layer_at(model: Any, path: tuple[int, ...]) -> Any:
    """The Keras layer at a walk path (``(0, 143)``: layer 143 of the model's layer 0;
    ``(3, 1)``: sublayer 1 of a subclassed layer 3), following
    :func:`~kfreeze_tui.core.runtime.keras_private.sublayers` as the walk does."""
    layer = model
    for index in path:
        layer = sublayers(layer)[index]
    return layer


def set_trainable(layer: Any, value: bool) -> None:
    """``layer.trainable = value``, recursing into its sublayers even when the flag is
    already ``value``.

    On the TensorFlow backend a layer is a ``tf`` ``AutoTrackable``, whose ``__setattr__``
    returns early when the attribute is already the very same object (``self.x = self.x``):
    ``trainable = False`` on a layer whose flag is False runs no setter, so it neither
    freezes sublayers built trainable since (a loaded MultiHeadAttention's projections) nor
    resets its own variables' flags. The flag is flipped first, then set.
    """
    if bool(layer.trainable) == value:
        layer.trainable = not value
    layer.trainable = value


def apply_freeze(model: Any, view: PlanView, plan: FreezePlan) -> None:
    """Set every layer's ``trainable`` flag of ``model`` as ``plan`` says.

    A layer that ``plan.lora`` targets is made trainable (and its containers), ready for
    :func:`apply_lora`, which this does not call: LoRA cannot be taken off a layer again.
    Recompile the model afterwards: ``compile()`` captures which weights are trainable.

    Args:
        model: the Keras model ``view`` was walked from (changed in place).
        view: the walked model's plan view.
        plan: the plan to apply.
    """
    model.trainable = True
    containers = sorted(
        (row for row in view.info.layers if row.is_container), key=lambda row: row.depth
    )
    for row in containers:
        start, end = view.span(row.path)
        set_trainable(
            layer_at(model, row.path),
            any(view.leaf_trainable(plan, view.leaves[i].path) for i in range(start, end)),
        )
    for leaf in view.leaves:
        layer = layer_at(model, leaf.path)
        trains = view.leaf_trainable(plan, leaf.path)
        if not leaf.is_container:
            layer.trainable = trains
        elif layer.trainable and not trains:  # its own weights only: the setter recurses
            for variable in own_variables(layer):
                variable.trainable = False


def restore_frozen(model: Any) -> None:
    """Freeze again, after ``keras.saving.load_model``, the sublayers of every frozen layer.

    Keras 3.15 saves a layer's ``trainable`` flag in its config, and on loading passes it to
    the constructor (``Layer.__init__`` sets ``_trainable``, with no sublayers yet); then
    ``build_from_config`` runs ``build()``, which creates a subclassed layer's sublayers
    (``MultiHeadAttention``'s EinsumDense projections, a keras-hub block's layers) with
    their default, ``trainable=True``, and nothing sets the flag again. ``trainable_weights``
    looks at each variable's flag, so a frozen MultiHeadAttention trains after loading.
    Setting the flag again (:func:`set_trainable`: a plain ``layer.trainable = False`` on
    a layer already False runs no setter on the TensorFlow backend) recurses into the
    sublayers, as it did before saving.

    A freeze that stops *inside* a subclassed layer (its ``query`` frozen, its ``key`` not)
    is not in the file at all (the layer's config does not hold its sublayers' flags): the
    script's ``load()`` sets those flags again after this step, by chain of names (see
    :func:`~kfreeze_tui.core.runtime.keras_private.set_sublayer_flags`), and the export
    verifies the file so loaded.

    Args:
        model: a loaded model (changed in place).
    """
    for layer in flatten_layers(model, include_self=False):
        if not layer.trainable and sublayers(layer):
            set_trainable(layer, False)


#: The last part of the path of the weight ``enable_lora`` adapts (and freezes).
ADAPTED_WEIGHTS = ("kernel", "embeddings")


def _refreeze_adapted(layer: Any) -> None:
    """Freeze the kernel (or embeddings) of a layer whose LoRA is on."""
    for variable in layer.trainable_weights:
        if str(variable.path).rsplit("/", 1)[-1] in ADAPTED_WEIGHTS:
            variable.trainable = False


def apply_lora(model: Any, view: PlanView, plan: FreezePlan) -> None:
    """Enable LoRA on the layers ``plan.lora`` targets: after :func:`apply_freeze`.

    Keras's ``enable_lora`` freezes the kernel and adds trainable A and B; the layer must be
    trainable first or A and B are created frozen (:func:`apply_freeze` makes every LoRA layer
    and its containers trainable). A layer whose LoRA is already on is left as it is. This
    cannot be undone: call it on a model that is yours to change.

    Raises:
        PlanError: when Keras refuses a layer (a kernel constraint, a quantization mode).
    """
    lora = plan.lora
    if lora is None:
        return
    for pos in sorted(view.lora_positions(lora)):
        row = view.leaves[pos]
        layer = layer_at(model, row.path)
        layer.trainable = True
        if getattr(layer, "lora_enabled", False):
            # Setting ``trainable`` makes every variable of the layer trainable again, the
            # kernel that enable_lora froze included (Keras 3.15): freeze it once more.
            _refreeze_adapted(layer)
            continue
        try:
            layer.enable_lora(lora.rank)
        except (ValueError, NotImplementedError) as exc:
            raise PlanError(f"LoRA cannot go on layer {row.name}: {first_line(exc)}") from exc


@dataclass(frozen=True)
class LossChoice:
    """The loss and metric that fit a head's activation and the label format."""

    loss_class: str
    from_logits: bool
    metric: str

    @property
    def loss_source(self) -> str:
        """The loss as Python source, for the generated script."""
        arg = "from_logits=True" if self.from_logits else ""
        return f"keras.losses.{self.loss_class}({arg})"


def loss_for(head: HeadSpec, compile_spec: CompileSpec) -> LossChoice:
    """Binary cross-entropy for sigmoid (or one logit), categorical for the rest."""
    logits = head.activation == "linear"
    if head.activation == "sigmoid" or (logits and head.classes == 1):
        return LossChoice("BinaryCrossentropy", logits, "binary_accuracy")
    if compile_spec.labels == "onehot":
        return LossChoice("CategoricalCrossentropy", logits, "categorical_accuracy")
    return LossChoice("SparseCategoricalCrossentropy", logits, "sparse_categorical_accuracy")


def compile_arguments(
    keras: Any, head: HeadSpec, compile_spec: CompileSpec, kept: int = 0
) -> tuple[Any, Any]:
    """The ``loss`` and ``metrics`` to compile a new model with.

    With ``kept`` outputs after the head's, one entry per output: the head's loss, and
    None for each kept output (kfreeze cannot know its loss). Keras 3 then takes the labels
    as they are for one output, ``fit(x, y)``, and saves and loads the settings; a dict of
    losses with None entries does neither.
    """
    choice = loss_for(head, compile_spec)
    loss = getattr(keras.losses, choice.loss_class)(from_logits=choice.from_logits)
    if not kept:
        return loss, [choice.metric]
    return [loss, *[None] * kept], [[choice.metric], *[None] * kept]


def output_tensors(model: Any, names: list[str]) -> list[Any]:
    """The outputs of ``model`` made by the layers ``names``, in the model's output order
    (Keras names an output after the layer or operation that makes it)."""
    order = list(getattr(model, "output_names", None) or [])
    found = [tensor for name, tensor in zip(order, model.outputs, strict=False) if name in names]
    found += [model.get_layer(name).output for name in names if name not in order]
    return found


def _check_compile(compile_spec: CompileSpec) -> None:
    if compile_spec.labels not in ("sparse", "onehot"):
        raise PlanError(f"labels {compile_spec.labels!r} must be sparse or onehot.")
    if not compile_spec.learning_rate > 0:
        raise PlanError(f"the learning rate must be positive, not {compile_spec.learning_rate:g}.")


@deep_recursion()
def build_model(
    model: Any,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    compile_spec: CompileSpec | None = None,
    optimizer_for: Callable[[Any], Any] | None = None,
) -> Any:
    """Apply a whole plan to a loaded model: freeze, LoRA, add the head, compile. With no
    head (``head.kind == "none"``) the model itself comes back, frozen (and LoRA'd) as
    planned, uncompiled (kfreeze cannot know the loss of the user's task model).

    The layers of ``model`` are shared with the new model (their flags change in place), as
    when a user writes ``keras.Model(base.inputs, head(base.output))``. The new model's
    outputs are the head's (``head_output``) and, after it, the outputs ``head.keep``
    names, in the model's order; a kept output has no loss (see :func:`compile_arguments`).

    Args:
        model: the loaded Keras model ``view`` was walked from.
        view: its plan view.
        plan: where to freeze.
        head: the head to add.
        compile_spec: how to compile; None compiles with the defaults.
        optimizer_for: makes the optimizer for the new model (a phase's learning rates);
            None: Adam at ``compile_spec.learning_rate``.

    Returns:
        The new ``keras.Model``, ready to train.

    Raises:
        PlanError: when the head does not fit the model.
    """
    from kfreeze_tui.core.runtime.process import import_keras

    keras = import_keras()
    compile_spec = compile_spec or CompileSpec()
    problems = validate(view.info, head)
    if problems:
        raise PlanError(problems[0].rstrip("."))
    _check_compile(compile_spec)
    if head.is_none:
        # The model as it is, for the user's own task model: no loss to compile with.
        apply_freeze(model, view, plan)
        apply_lora(model, view, plan)
        return model
    found = attachment(view.info, head)
    assert found is not None
    apply_freeze(model, view, plan)
    apply_lora(model, view, plan)
    outputs = _head_output(keras, model, view, head, found)
    kept = output_tensors(model, [row.name for row in kept_outputs(view.info, head)])
    if kept:  # the head's output first, then the kept ones in the model's order
        outputs = [outputs, *kept]
    try:
        # A model that takes a dict (keras-hub's token_ids, padding_mask) keeps taking one.
        inputs = model.input if view.info.input_keys else model.inputs
        new = keras.Model(inputs, outputs, name=f"{model.name}_finetune")
    except ValueError as exc:  # e.g. an input of the model that the feature layer ignores
        raise PlanError(
            f"a model with the head on {found.where} cannot be built from the model's "
            f"inputs ({first_line(exc)})"
        ) from exc
    if compile_spec.enabled:
        loss, metrics = compile_arguments(keras, head, compile_spec, len(kept))
        # Compiled after the flags are set: compile() captures what is trainable.
        optimizer = (
            optimizer_for(new)
            if optimizer_for is not None
            else keras.optimizers.Adam(learning_rate=compile_spec.learning_rate)
        )
        new.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return new


def _head_output(
    keras: ModuleType, model: Any, view: PlanView, head: HeadSpec, found: Attachment
) -> Any:
    """The head's layers called on the features at ``found``: pooling, hidden layers,
    dropout, and the classifier (in float32 under mixed precision, unless told otherwise)."""
    layer = model.get_layer(found.layer.name)
    x = layer.input if found.of_input else layer.output
    pooling = resolved_pooling(view.info, head)
    if pooling != "none":
        pool_class = pooling_class(pooling, found.shape)
        x = getattr(keras.layers, pool_class)(name="head_pool")(x)
    for i, dense in enumerate(head.hidden, start=1):
        x = keras.layers.Dense(dense.units, activation=dense.activation, name=f"head_dense_{i}")(x)
    if head.dropout > 0:
        x = keras.layers.Dropout(head.dropout, name="head_dropout")(x)
    mixed = uses_mixed_precision(model)
    return keras.layers.Dense(
        head.classes,
        activation=head.activation,
        dtype="float32" if mixed and head.float32_head else None,
        name=HEAD_OUTPUT,
    )(x)


@contextlib.contextmanager
def flags_restored(model: Any) -> Iterator[None]:
    """Put every ``trainable`` flag of ``model`` (its layers, nested ones too) back as it was
    on leaving: :func:`build_model` sets them in place on layers the new model shares.

    Containers come before their layers, both when the flags are read and when they are set
    back, because setting a container's flag overwrites its layers' flags.
    """
    saved: list[tuple[Any, bool]] = []

    def visit(layer: Any) -> None:
        saved.append((layer, bool(layer.trainable)))
        for inner in sublayers(layer):
            visit(inner)

    visit(model)
    try:
        yield
    finally:
        for layer, trainable in saved:
            if sublayers(layer):
                set_trainable(layer, trainable)  # its own variables' flags too
            else:
                layer.trainable = trainable


def uses_mixed_precision(model: Any) -> bool:
    for layer in model.layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and str(getattr(policy, "name", "")).startswith("mixed"):
            return True
    return False
