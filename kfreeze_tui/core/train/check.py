"""Does a model train as planned? Static findings, and one real training step as proof.

Findings (``code``, ``severity``):

- ``no_trainable`` (error): no weight trains, so ``fit()`` changes nothing;
- ``recompile`` (error, live models): ``trainable`` changed after ``compile()``;
- ``bn_after_frozen`` (warning): BatchNormalization layers train after a frozen prefix, so
  batch statistics of the new data replace the pretrained moving statistics;
- ``float16_output`` (warning): under mixed precision the model's output is float16;
- ``split_block`` (warning): the first layer that trains is inside a block;
- ``high_lr`` (warning): a learning rate above 1e-3 with a frozen (pretrained) prefix;
- ``frozen_changed``, ``bn_stats_changed``, ``nothing_changed`` (errors from the step),
  ``trainable_unchanged`` (warning from the step: zero gradients, e.g. unused weights);
- ``dropped_output`` (warning, for a plan): the new model loses an output of the model.

:func:`model_outputs` names the outputs a model has, which ``kfreeze check`` prints.

The step runs on a copy (for a file: the model as loaded, never written back), eagerly, on a
synthetic batch; every weight is compared bitwise before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfreeze_tui.core.model.cut import CutIndex
from kfreeze_tui.core.model.layers import ModelInfo, walk
from kfreeze_tui.core.runtime.process import deep_recursion

#: A learning rate above this, with a frozen pretrained prefix, is flagged.
HIGH_LEARNING_RATE = 1e-3
#: Examples in the synthetic batch of the one-step proof.
STEP_BATCH = 2
#: Names listed in a finding's message before "and N more".
SHOWN = 4


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing) with how a model is set up to train."""

    code: str
    severity: str
    message: str
    layers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "layers": list(self.layers),
        }


@dataclass
class StepResult:
    """What one training step changed, weight by weight (names are variable paths)."""

    frozen_unchanged: int = 0
    frozen_changed: list[str] = field(default_factory=list)
    trainable_changed: int = 0
    trainable_unchanged: list[str] = field(default_factory=list)
    bn_stats_changed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "frozen_unchanged": self.frozen_unchanged,
            "frozen_changed": self.frozen_changed,
            "trainable_changed": self.trainable_changed,
            "trainable_unchanged": self.trainable_unchanged,
            "bn_stats_changed": self.bn_stats_changed,
        }

    @property
    def ok(self) -> bool:
        return (
            not self.frozen_changed
            and not self.bn_stats_changed
            and (self.trainable_changed > 0 or not self.trainable_unchanged)
        )

    def summary(self) -> str:
        """``one training step: 161 frozen weights unchanged, 52 trainable changed``."""
        text = (
            f"one training step: {self.frozen_unchanged} frozen weights bitwise unchanged, "
            f"{self.trainable_changed} trainable weights changed"
        )
        if self.trainable_unchanged:
            text += f", {len(self.trainable_unchanged)} trainable unchanged (zero gradient)"
        if self.frozen_changed:
            text += f", {len(self.frozen_changed)} FROZEN WEIGHTS CHANGED"
        if self.bn_stats_changed:
            text += f", {len(self.bn_stats_changed)} frozen BatchNorm statistics CHANGED"
        return text


def _names(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


# -- static findings -------------------------------------------------------------------------


def static_findings(model: Any, info: ModelInfo | None = None) -> list[Finding]:
    """What can be seen without training: flags, policies, the cut, the learning rate."""
    info = info or walk(model)
    leaves = [row for row in info.layers if not row.is_container and row.has_weights]
    findings: list[Finding] = []
    trains = [row for row in leaves if row.trainable_params > 0]
    if not model.trainable_weights:
        findings.append(
            Finding("no_trainable", "error", "no weight trains, so fit() would change nothing")
        )
        return findings + _float16_findings(model)
    order = {row.path: i for i, row in enumerate(info.layers)}
    first = min(trains, key=lambda row: order[row.path])
    prefix = [row for row in leaves if order[row.path] < order[first.path]]
    frozen_prefix = bool(prefix) and all(row.trainable_params == 0 for row in prefix)
    if frozen_prefix:
        batch_norms = [
            row.name for row in trains if row.is_batch_norm and order[row.path] >= order[first.path]
        ]
        if batch_norms:
            findings.append(
                Finding(
                    "bn_after_frozen",
                    "warning",
                    f"{len(batch_norms)} BatchNormalization layers train after a frozen prefix "
                    f"({_names(batch_norms)}): in training they normalize with each batch's "
                    "statistics and replace the pretrained moving statistics; keep them frozen "
                    "(layer.trainable = False) unless the new data differs a lot",
                    tuple(batch_norms),
                )
            )
        cut = CutIndex(info).at(first.path)
        if cut.splits_block:
            findings.append(
                Finding(
                    "split_block",
                    "warning",
                    f"the first layer that trains, {first.name}, is inside block "
                    f"{cut.splits_block}: {len(cut.crossing)} tensors cross the boundary "
                    f"({_names(list(cut.crossing))}); unfreezing whole blocks is what Keras's "
                    "guides do",
                    (first.name,),
                )
            )
        rate = learning_rate(model)
        # Compared with room for float32 rounding (Keras stores 1e-3 as 0.0010000000475).
        if rate is not None and rate > HIGH_LEARNING_RATE * (1 + 1e-6):
            findings.append(
                Finding(
                    "high_lr",
                    "warning",
                    f"the learning rate {rate:g} is high for a model with a frozen pretrained "
                    "prefix: large updates to the new layers wreck the features they start "
                    "from; the Keras fine-tuning guide uses 1e-3 for a new head and 1e-5 when "
                    "unfreezing",
                )
            )
    return findings + _float16_findings(model)


def _float16_findings(model: Any) -> list[Finding]:
    outputs = [t for t in (getattr(model, "outputs", None) or []) if str(t.dtype) == "float16"]
    if not outputs:
        return []
    last = model.layers[-1].name if model.layers else ""
    return [
        Finding(
            "float16_output",
            "warning",
            "the model's output is float16 under mixed precision: the loss and softmax lose "
            "precision and can overflow; give the last layer dtype='float32' (kfreeze's head "
            "does)",
            (last,),
        )
    ]


def learning_rate(model: Any) -> float | None:
    """The compiled optimizer's learning rate, when it is a number (not a schedule)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", False):
        return None
    try:
        value = optimizer.get_config().get("learning_rate")
    except (AttributeError, TypeError, ValueError, NotImplementedError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def recompile_findings(model: Any) -> list[Finding]:
    """``trainable`` changed after ``compile()``: Keras only takes it into account when
    compile() runs again (and says so, if at all, on the first fit())."""
    from kfreeze_tui.core.runtime.keras_private import compiled_trainable_state

    state = compiled_trainable_state(model)
    if not state:
        return []
    changed = [
        layer.name
        for layer, was in state.items()
        if layer is not model and bool(layer.trainable) != bool(was)
    ]
    if not changed:
        return []
    return [
        Finding(
            "recompile",
            "error",
            f"trainable was changed after compile() on {len(changed)} "
            f"layer{'s' if len(changed) > 1 else ''} "
            f"({_names(changed)}): the change has no effect until compile() is called again",
            tuple(changed),
        )
    ]


def check_model(model: Any) -> list[Finding]:
    """The findings for a live model in training code (nothing is trained or changed).

    Example::

        from kfreeze_tui import check_model
        for finding in check_model(model):
            print(finding.severity, finding.message)
    """
    return recompile_findings(model) + static_findings(model)


def model_outputs(model: Any) -> list[tuple[str, tuple[int | None, ...]]]:
    """The model's outputs in order: the name Keras gives each (its layer's) and its shape."""
    names = list(getattr(model, "output_names", None) or [])
    outputs = list(getattr(model, "outputs", None) or [])
    names += [f"output_{i}" for i in range(len(names), len(outputs))]
    return [
        (name, tuple(None if d is None else int(d) for d in tensor.shape))
        for name, tensor in zip(names, outputs, strict=False)
    ]


def outputs_line(model: Any) -> str:
    """``outputs: head_output (None, 10), reg (None, 1)``."""
    from kfreeze_tui.core.model.layers import format_shape

    found = model_outputs(model)
    word = "output" if len(found) == 1 else f"{len(found)} outputs"
    return f"{word}: " + ", ".join(f"{name} {format_shape(shape)}" for name, shape in found)


def dropped_output_findings(dropped: list[str], new_outputs: list[str]) -> list[Finding]:
    """A plan whose new model loses outputs of the model: one warning naming them."""
    if not dropped:
        return []
    them = "it" if len(dropped) == 1 else "them"
    plural = "s" if len(dropped) > 1 else ""
    keep = ", ".join(f'"{name}"' for name in dropped)
    return [
        Finding(
            "dropped_output",
            "warning",
            f"the plan drops the model's output{plural} {', '.join(dropped)}: the new model "
            f"outputs only {', '.join(new_outputs)}; to keep {them}, add {keep} to keep under "
            "[head] (kfreeze export --keep-output NAME)",
            tuple(dropped),
        )
    ]


# -- one training step -----------------------------------------------------------------------


def _is_bn_statistic(layer: Any, variable: Any) -> bool:
    name = str(variable.path).rsplit("/", 1)[-1]
    return type(layer).__name__ == "BatchNormalization" and name in (
        "moving_mean",
        "moving_variance",
    )


def _leaf_layers(model: Any) -> list[Any]:
    found: list[Any] = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if inner and hasattr(layer, "inputs"):
            found += _leaf_layers(layer)
        else:
            found.append(layer)
    return found


@deep_recursion()
def one_step(model: Any, batch: int = STEP_BATCH, reference: Any = None) -> StepResult:
    """Train ``model`` for one step on a synthetic batch and compare every weight.

    The model is changed: pass a copy. An uncompiled model is compiled with SGD first.

    Args:
        model: the model to train one step.
        batch: examples in the synthetic batch.
        reference: a model whose ``weights``, in order, hold the same values as
            ``model``'s before the step (the model a file was saved from, compared with the
            file's by the export's verification): the step is compared with them instead of
            with a copy, which saves copying every weight.
    """
    import numpy as np

    from kfreeze_tui.core.runtime.process import import_keras, native_output_captured

    keras = import_keras()
    kinds = _weight_kinds(model)
    reference_of: dict[int, Any] = {}
    if reference is not None:
        reference_of = {
            id(ours): theirs for ours, theirs in zip(model.weights, reference.weights, strict=True)
        }
    before = [
        reference_of[id(v)] if id(v) in reference_of else np.array(values_of(v), copy=True)
        for v, _ in kinds
    ]
    with native_output_captured():
        if not getattr(model, "compiled", False) and not _classifier_like(model):
            # No loss to read and none to guess (a backbone exported without a head, its
            # outputs a dict or sequences): a step of SGD on every output's distance from 1.
            _free_step(keras, model, synthetic_batch(model, batch)[0])
            return _compare(kinds, before)
        if not getattr(model, "compiled", False):
            model.compile(optimizer=keras.optimizers.SGD(1e-2), loss=_loss_for(keras, model))
        model.run_eagerly = True  # one step costs one step: no tracing
        x, y = synthetic_batch(model, batch)
        model.train_on_batch(x, y)
        result = _compare(kinds, before)
        if result.trainable_unchanged and not result.trainable_changed:
            # A saturated softmax that predicts the random labels exactly has a loss
            # gradient of exactly zero: the model fits this batch, which is not "does not
            # learn". The step again on labels it gets wrong tells the two apart.
            wrong = _labels_unlike(model, x, y)
            if wrong is not None:
                model.train_on_batch(x, wrong)
                result = _compare(kinds, before)
    return result


def _classifier_like(model: Any) -> bool:
    """Whether a loss for the model can be guessed from its outputs (see :func:`_loss_for`):
    a tensor or a list of them, each one row of units per example."""
    try:
        structure = model.output
    except (AttributeError, ValueError):
        return False
    return not isinstance(structure, dict) and all(len(t.shape) == 2 for t in model.outputs)


def _free_step(keras: Any, model: Any, x: Any) -> None:
    """One step of SGD on the mean squared distance of every output from 1, in training
    mode: it reaches every weight that any output depends on."""
    import tensorflow as tf

    variables = list(model.trainable_variables)
    with tf.GradientTape() as tape:
        outputs = keras.tree.flatten(model(x, training=True))
        loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(o, "float32") - 1.0)) for o in outputs])
    gradients = tape.gradient(loss, variables)
    pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
    if pairs:
        keras.optimizers.SGD(1e-2).apply(*zip(*pairs, strict=True))


def _weight_kinds(model: Any) -> list[tuple[Any, str]]:
    """Each weight of the model with what the step may do to it: ``trainable``, ``frozen``,
    or a BatchNormalization statistic of a frozen (``bn_frozen``) or training layer."""
    trainable_ids = {id(v) for v in model.trainable_weights}
    kinds: list[tuple[Any, str]] = []
    for layer in _leaf_layers(model):
        # Frozen in effect: none of its weights trains (a layer set trainable inside a frozen
        # container is frozen all the same; its statistics must not move either).
        own = [v for v in layer.weights if not _is_bn_statistic(layer, v)]
        layer_frozen = not any(id(v) in trainable_ids for v in own) if own else not layer.trainable
        for variable in layer.weights:
            if "seed_generator" in str(variable.path):
                continue  # random state: it moves on every call, by design
            if id(variable) in trainable_ids:
                kinds.append((variable, "trainable"))
            elif _is_bn_statistic(layer, variable):
                kinds.append((variable, "bn_frozen" if layer_frozen else "bn_training"))
            else:
                kinds.append((variable, "frozen"))
    return kinds


def _labels_unlike(model: Any, x: Any, labels: Any) -> Any:
    """Labels of the same form as ``labels`` that the model's predictions on ``x`` get
    wrong: each class moved on by one, each binary label flipped (regression targets, which
    a model never predicts exactly, are kept). None when ``labels`` has a form not read here.
    """
    import numpy as np

    predictions = [np.asarray(p) for p in _flat(model.predict_on_batch(x))]
    if isinstance(labels, dict):
        names = list(getattr(model, "output_names", None) or [])
        by_name = dict(zip(names, predictions, strict=False))
        if not set(labels) <= set(by_name):
            return None
        return {name: _unlike(by_name[name], each) for name, each in labels.items()}
    if isinstance(labels, list):
        if len(labels) != len(predictions):
            return None
        return [
            None if each is None else _unlike(p, each)
            for p, each in zip(predictions, labels, strict=True)
        ]
    return _unlike(predictions[0], labels)


def _flat(outputs: Any) -> list[Any]:
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _unlike(prediction: Any, labels: Any) -> Any:
    import numpy as np

    units = prediction.shape[-1]
    wrong_class = (prediction.argmax(-1) + 1) % units
    if labels.shape == prediction.shape[:-1]:  # sparse: class indices
        return wrong_class.astype(labels.dtype)
    if labels.shape != prediction.shape or not np.isin(labels, (0, 1)).all():
        return labels  # regression targets
    if units > 1 and (labels.sum(-1) == 1).all():  # one-hot
        return np.eye(units, dtype=labels.dtype)[wrong_class]
    return (prediction <= 0.5).astype(labels.dtype)  # binary: flipped


def _compare(kinds: list[tuple[Any, str]], before: list[Any]) -> StepResult:
    """What the step changed, against the values (or reference variables) from before."""
    import numpy as np

    result = StepResult()
    for (variable, kind), old in zip(kinds, before, strict=True):
        old_values = old if isinstance(old, np.ndarray) else values_of(old)
        same = np.array_equal(old_values, values_of(variable), equal_nan=True)
        path = str(variable.path)
        if kind == "trainable":
            if same:
                result.trainable_unchanged.append(path)
            else:
                result.trainable_changed += 1
        elif kind == "bn_frozen":
            if same:
                result.frozen_unchanged += 1
            else:
                result.bn_stats_changed.append(path)
        elif kind == "frozen":
            if same:
                result.frozen_unchanged += 1
            else:
                result.frozen_changed.append(path)
    return result


def values_of(variable: Any) -> Any:
    """A variable's values as a numpy array, for comparing: ``Variable.numpy()`` avoids a
    copy where the backend can (comparing ResNet50's weights this way takes about half the
    time of ``keras.ops.convert_to_numpy`` or of ``keras.ops.equal``)."""
    return variable.numpy()


def same_values(a: Any, b: Any) -> bool:
    """Two variables hold the same values, bit for bit (NaN equals NaN)."""
    import numpy as np

    return bool(np.array_equal(values_of(a), values_of(b), equal_nan=True))


def _loss_for(keras: Any, model: Any) -> Any:
    """A loss for the first output (None for the others: one output's loss is a step).

    Cross-entropy on probabilities when a softmax or sigmoid makes the output, else on
    logits: Keras's cross-entropy on probabilities divides the outputs by their sum and
    clips them to (0, 1), so on raw outputs (a model exported without a head ending in a
    plain Dense) the gradient can be exactly zero and the step would move nothing.
    """
    units = int(model.outputs[0].shape[-1] or 1)
    logits = not _emits_probabilities(model.outputs[0])
    loss = (
        keras.losses.BinaryCrossentropy(from_logits=logits)
        if units == 1
        else keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    )
    extra = len(model.outputs) - 1
    return [loss, *[None] * extra] if extra else loss


def _emits_probabilities(tensor: Any) -> bool:
    """Whether a softmax or sigmoid makes ``tensor``: a Softmax layer, or a layer whose
    activation is one (Dense(..., activation="softmax"), Activation("sigmoid"))."""
    history = getattr(tensor, "_keras_history", None)
    layer = history[0] if history else None
    if type(layer).__name__ == "Softmax":
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") in {"softmax", "sigmoid"}


#: The size given to input dimensions a model leaves open (an image's side).
OPEN_DIMENSION = 32
#: The length given to an integer input's open dimension (a sequence of token ids, shorter
#: than the positions a small transformer has).
OPEN_SEQUENCE = 8


def synthetic_inputs(model: Any, batch: int, seed: int = 0) -> list[Any]:
    """One random array per input of ``model``, in ``model.inputs`` order. Integer inputs
    are token ids (small integers) of :data:`OPEN_SEQUENCE` where their length is open; an
    input named as a mask (``padding_mask``) is all ones, one named as segments
    (``segment_ids``) all zeros, as a single sentence gives them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        dtype = str(getattr(tensor, "dtype", "float32"))
        integer = "int" in dtype or "bool" in dtype
        open_size = OPEN_SEQUENCE if integer else OPEN_DIMENSION
        shape = [batch] + [open_size if d is None else int(d) for d in tensor.shape[1:]]
        name = str(getattr(tensor, "name", ""))
        if "mask" in name:
            arrays.append(np.ones(shape, dtype=dtype))
        elif "segment" in name:
            arrays.append(np.zeros(shape, dtype=dtype))
        elif integer:
            arrays.append(rng.integers(0, 10, size=shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype("float32"))
    return arrays


def synthetic_batch(model: Any, batch: int, seed: int = 0) -> tuple[Any, Any]:
    """Inputs of the model's shape, and labels of the form its loss takes: for a model with
    several outputs and a list of losses, one label array per output that has a loss (None
    for an output without one, as a model kfreeze built with kept outputs has)."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    inputs = synthetic_inputs(model, batch, seed)
    loss = getattr(model, "loss", None)
    outputs = list(model.outputs)
    if isinstance(loss, (list, tuple)) and len(outputs) > 1:
        labels: Any = [
            None if entry is None else _labels(rng, tensor, entry, batch)
            for tensor, entry in zip(outputs, loss, strict=False)
        ]
    elif isinstance(loss, dict) and len(outputs) > 1:
        names = list(getattr(model, "output_names", None) or [])
        labels = {
            name: _labels(rng, tensor, loss[name], batch)
            for name, tensor in zip(names, outputs, strict=False)
            if loss.get(name) is not None
        }
    else:
        labels = _labels(rng, outputs[0], loss, batch)
    return _as_model_takes(model, inputs), labels


def _labels(rng: Any, output: Any, loss: Any, batch: int) -> Any:
    """Labels for one output, of the form ``loss`` (an object or a name) takes."""
    import numpy as np

    out_shape = [batch] + [1 if d is None else int(d) for d in output.shape[1:]]
    units = out_shape[-1]
    # A loss object (SparseCategoricalCrossentropy) or its name (sparse_categorical_...).
    name = type(loss).__name__ if loss is not None and not isinstance(loss, str) else str(loss)
    if name == "LossFunctionWrapper":  # a loaded loss: its function's name says which
        name = getattr(getattr(loss, "fn", None), "__name__", name)
    loss_name = name.lower().replace("_", "")
    if "sparse" in loss_name:
        return rng.integers(0, units, size=out_shape[:-1])
    if "categorical" in loss_name:
        return np.eye(units, dtype="float32")[rng.integers(0, units, size=out_shape[:-1])]
    if "binary" in loss_name or "hinge" in loss_name:
        return rng.integers(0, 2, size=out_shape).astype("float32")
    if "crossentropy" in loss_name:
        return rng.integers(0, units, size=out_shape[:-1])
    # a regression loss (mse, mae, huber ...): targets of the output's shape
    return rng.standard_normal(out_shape).astype("float32")


def _as_model_takes(model: Any, inputs: list[Any]) -> Any:
    """``inputs`` in the structure the model was built with: a model made with
    ``Model([x], y)`` takes a list of one (a bare array makes Keras warn that the structure
    does not match), one made with ``Model(x, y)`` the array itself."""
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a model that was never called
        structure = None
    if isinstance(structure, dict):  # keras-hub: {"token_ids": ..., "padding_mask": ...}
        by_tensor = {id(t): array for t, array in zip(model.inputs, inputs, strict=True)}
        return {key: by_tensor[id(tensor)] for key, tensor in structure.items()}
    if len(inputs) == 1 and not isinstance(structure, (list, tuple)):
        return inputs[0]
    return inputs


def step_findings(step: StepResult) -> list[Finding]:
    """What the step says, as findings."""
    findings = []
    if step.frozen_changed:
        findings.append(
            Finding(
                "frozen_changed",
                "error",
                f"{len(step.frozen_changed)} frozen weights changed in one training step "
                f"({_names(step.frozen_changed)}): they are not frozen as planned",
                tuple(step.frozen_changed),
            )
        )
    if step.bn_stats_changed:
        findings.append(
            Finding(
                "bn_stats_changed",
                "error",
                f"the moving statistics of {len(step.bn_stats_changed)} frozen "
                f"BatchNormalization weights changed in one step ({_names(step.bn_stats_changed)})",
                tuple(step.bn_stats_changed),
            )
        )
    if step.trainable_unchanged and not step.trainable_changed:
        findings.append(
            Finding(
                "nothing_changed",
                "error",
                "no trainable weight changed in one training step: the model does not learn",
                tuple(step.trainable_unchanged),
            )
        )
    elif step.trainable_unchanged:
        findings.append(
            Finding(
                "trainable_unchanged",
                "warning",
                f"{len(step.trainable_unchanged)} trainable weights did not change in one "
                f"step ({_names(step.trainable_unchanged)}): their gradient was zero on the "
                "batch (unused weights, units that output nothing, or layers that only feed an "
                "output without a loss)",
                tuple(step.trainable_unchanged),
            )
        )
    return findings
