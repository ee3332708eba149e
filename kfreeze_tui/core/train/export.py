"""Writing the result: an atomic, verified ``.keras`` file, the plan, the script, a SavedModel.

Nothing is written over an existing file unless asked (``force``), and nothing is ever left
half-written: each file is written beside its target under a temporary name and renamed into
place only when complete (a rename within a folder is atomic). The model is loaded back from
its temporary file and compared with the model that was saved before it is renamed. The
temporary files of exports that were killed are removed by the next export into the same
folder (:mod:`kfreeze_tui.core.runtime.leftovers`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import ExportError
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.runtime.leftovers import (
    Leftover,
    disk_size,
    remove_leftovers,
    temp_dir_name,
    temp_file,
)
from kfreeze_tui.core.runtime.process import deep_recursion, import_keras, native_output_captured
from kfreeze_tui.core.train.build import restore_frozen

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportRequest:
    """What to write.

    Attributes:
        model_path: the ``.keras`` file.
        plan_path: the plan (``.toml``), or None.
        script_path: the Python script (``.py``), or None.
        savedmodel_path: an inference SavedModel folder (``model.export``), or None.
        force: replace files that exist.
        adapters_path: with LoRA, the adapters file (``out.lora.npz``), or None.
        cache_features: the script gets ``cache_features`` and trains from cached features
            (the plan's frozen part must be cacheable).
    """

    model_path: Path
    plan_path: Path | None = None
    script_path: Path | None = None
    savedmodel_path: Path | None = None
    force: bool = False
    adapters_path: Path | None = None
    cache_features: bool = False

    def targets(self) -> list[Path]:
        """Every path the export writes."""
        paths = [
            self.model_path,
            self.adapters_path,
            self.plan_path,
            self.script_path,
            self.savedmodel_path,
        ]
        return [p for p in paths if p is not None]


@dataclass(frozen=True)
class WrittenFile:
    """A file (or folder) the export wrote."""

    path: Path
    what: str
    size: int


@dataclass(frozen=True)
class Verification:
    """The model file, loaded back and compared with the model that was saved."""

    layers: int
    trainable_params: int
    non_trainable_params: int
    checks: tuple[str, ...]


@dataclass
class ExportResult:
    """What an export wrote and how the model file was verified."""

    files: list[WrittenFile] = field(default_factory=list)
    verification: Verification | None = None
    step: Any = None
    """What one training step on a copy changed (a
    :class:`~kfreeze_tui.core.train.check.StepResult`)."""
    removed: list[Leftover] = field(default_factory=list)
    """Temporary files that killed exports had left beside the targets, removed first."""
    notes: list[str] = field(default_factory=list)
    """What the user must know to use the files (one sentence each)."""


def existing_targets(request: ExportRequest) -> list[Path]:
    """Targets that exist already (the export refuses them unless forced)."""
    return [path for path in request.targets() if path.exists()]


def check_request(request: ExportRequest) -> None:
    """Refuse a request before anything is written.

    Raises:
        ExportError: for a wrong suffix, a missing folder, or a file that exists.
    """
    if request.model_path.suffix != ".keras":
        raise ExportError(f"the model file {request.model_path} must end in .keras")
    if request.plan_path is not None and request.plan_path.suffix != ".toml":
        raise ExportError(f"the plan file {request.plan_path} must end in .toml")
    if request.adapters_path is not None and request.adapters_path.suffix != ".npz":
        raise ExportError(f"the adapters file {request.adapters_path} must end in .npz")
    if request.script_path is not None and request.script_path.suffix != ".py":
        raise ExportError(f"the script {request.script_path} must end in .py")
    paths = request.targets()
    if len(set(paths)) != len(paths):
        raise ExportError("two of the files to write have the same path")
    for path in paths:
        if not path.parent.is_dir():
            raise ExportError(f"the folder {path.parent} does not exist")
        if path.is_dir() and path != request.savedmodel_path:
            raise ExportError(f"{path} is a folder")
    if not request.force:
        existing = existing_targets(request)
        if existing:
            raise ExportError(
                f"{existing[0]} exists already; pass --force to replace it (or choose another name)"
            )


def temp_beside(path: Path, suffix: str) -> Path:
    """A temporary file beside ``path``, named after this process (see ``leftovers``)."""
    return temp_file(path, suffix)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    temp = temp_beside(path, path.suffix)
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def verify(saved: Any, loaded: Any) -> Verification:
    """Compare a model with the one loaded back from its file.

    Raises:
        ExportError: naming the first difference.
    """
    before, after = walk(saved), walk(loaded)
    checks: list[str] = []
    # A subclassed layer's sublayers may have automatic names (``softmax_3``), which
    # depend on what the process built before: they are compared by position and class.
    if [_row_key(r) for r in before.layers] != [_row_key(r) for r in after.layers]:
        raise ExportError("the saved model has different layers from the model that was saved")
    checks.append(f"{len(after.top_level)} layers, same names and order")
    for a, b in zip(before.layers, after.layers, strict=True):
        if a.trainable_params != b.trainable_params:
            lost = (
                "; a .keras file keeps a subclassed layer's own trainable flag but not its "
                "sublayers', which the script's load() sets again"
                if a.subclassed and a.is_container
                else ""
            )
            raise ExportError(
                f"layer {a.name} has {b.trainable_params:,} trainable parameters after loading "
                f"but {a.trainable_params:,} before{lost}"
            )
    checks.append("every layer's trainable state is the same")
    if (before.trainable_params, before.total_params) != (
        after.trainable_params,
        after.total_params,
    ):
        raise ExportError("the saved model's parameter counts differ from the model's")
    for a, b in zip(saved.weights, loaded.weights, strict=True):
        if tuple(a.shape) != tuple(b.shape) or not _same_values(a, b):
            raise ExportError(f"the weight {a.path} changed in the saved file")
    checks.append(f"all {len(saved.weights)} weights equal")
    if getattr(saved, "optimizer", None) is not None and saved.compiled:
        if not getattr(loaded, "compiled", False):
            raise ExportError("the saved model lost its compile settings")
        checks.append("compiled (optimizer, loss and metrics restored)")
    return Verification(
        layers=len(after.top_level),
        trainable_params=after.trainable_params,
        non_trainable_params=after.non_trainable_params,
        checks=tuple(checks),
    )


def _row_key(row: Any) -> tuple[Any, ...]:
    inside = row.subclassed and not row.is_container
    return (row.path, row.class_name) if inside else (row.path, row.class_name, row.name)


def _same_values(a: Any, b: Any) -> bool:
    from kfreeze_tui.core.train.check import same_values

    return same_values(a, b)


def export(
    model: Any,
    request: ExportRequest,
    plan_text: str | None = None,
    script_text: str | None = None,
    progress: Progress | None = None,
    rebuild: Callable[[], Any] | None = None,
    sublayer_flags: dict[str, bool] | None = None,
) -> ExportResult:
    """Write the model (verified), and the plan, script and SavedModel if asked.

    Args:
        model: the new Keras model.
        request: what to write where.
        plan_text: the plan's TOML, when ``request.plan_path`` is set.
        script_text: the script, when ``request.script_path`` is set.
        progress: called with a short text before each step.
        rebuild: with LoRA (``request.adapters_path`` set), builds the model again as the
            script does (the base, freeze, LoRA and head, untrained): the verification loads
            the adapters file into it and trains it one step (see :mod:`.adapters`).
        sublayer_flags: the flags inside subclassed layers that the freeze stops inside, by
            chain of names (:func:`~kfreeze_tui.core.train.script.sublayer_flags`): a
            ``.keras`` file does not keep them, so the file is verified as the script's
            ``load()`` loads it, which sets them again.

    Returns:
        The files written and the verification.

    Raises:
        ExportError: when anything fails; files not yet renamed into place are removed, and
            no existing file has been touched unless the whole model file was verified.
    """
    check_request(request)
    removed = remove_leftovers(path.parent for path in request.targets())
    try:
        report = progress or (lambda _t: None)
        if request.adapters_path is not None:
            if rebuild is None:
                raise ValueError("an export with LoRA needs rebuild")
            result = _export_lora(model, request, plan_text, script_text, report, rebuild)
        else:
            result = _export(model, request, plan_text, script_text, report, sublayer_flags)
        result.removed = removed
        return result
    except OSError as exc:  # a full disk, a folder without write permission, ...
        reason = exc.strerror or str(exc)
        where = exc.filename or request.model_path.parent
        raise ExportError(f"could not write {where}: {reason}") from exc


@deep_recursion()
def _export(
    model: Any,
    request: ExportRequest,
    plan_text: str | None,
    script_text: str | None,
    report: Progress,
    sublayer_flags: dict[str, bool] | None = None,
) -> ExportResult:
    keras = import_keras()
    result = ExportResult()
    temp = temp_beside(request.model_path, ".keras")
    try:
        report(f"Saving {request.model_path.name}")
        with native_output_captured():
            _build_optimizer(model)
            model.save(temp)
            dropped = drop_rejected_keys(temp, model)
            report("Loading it back to verify")
            loaded = _load_back(keras, temp, sublayer_flags)
        result.verification = verify(model, loaded)
        if dropped:
            result.verification = replace(
                result.verification,
                checks=(
                    *result.verification.checks,
                    "left out of the file what the layers' constructors refuse on loading: "
                    + ", ".join(dropped),
                ),
            )
        if loaded.trainable_weights:
            result.step = _prove_one_step(loaded, model, report)
            result.verification = replace(
                result.verification,
                checks=(*result.verification.checks, result.step.summary()),
            )
        os.replace(temp, request.model_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    result.files.append(WrittenFile(request.model_path, "model", disk_size(request.model_path)))
    _write_others(model, request, plan_text, script_text, report, result)
    if sublayer_flags:
        result.notes.append(partial_note(request, sublayer_flags))
    return result


def partial_note(request: ExportRequest, flags: dict[str, bool]) -> str:
    """The one sentence that says a freeze inside subclassed layers needs the script's
    ``load()`` (the layers named by the first part of each chain in ``flags``)."""
    outer = sorted({name.split("/", 1)[0] for name in flags})
    names = ", ".join(outer[:3]) + (f" and {len(outer) - 3} more" if len(outer) > 3 else "")
    script = (
        f"from {request.script_path.name}"
        if request.script_path is not None
        else "of the script kfreeze writes"
    )
    return (
        f"{request.model_path.name} freezes part of {names}, which a .keras file cannot keep: "
        f"load it with load() {script}, which sets those flags again"
    )


def _load_back(keras: Any, path: Path, sublayer_flags: dict[str, bool] | None = None) -> Any:
    """The saved file, loaded as a user loads it, frozen layers' sublayers frozen again: Keras
    builds them trainable on loading, and the script's loader puts them back the same way
    (see :func:`~kfreeze_tui.core.train.build.restore_frozen`); then, as the script's
    ``load()`` does, the flags inside subclassed layers that the file cannot keep."""
    from kfreeze_tui.core.runtime.keras_private import set_sublayer_flags

    try:
        loaded = keras.saving.load_model(path)
    except Exception as exc:
        raise ExportError(f"the saved file does not load back: {exc}") from exc
    restore_frozen(loaded)
    if sublayer_flags:
        try:
            set_sublayer_flags(loaded, sublayer_flags)
        except ValueError as exc:
            raise ExportError(f"the saved model's sublayers cannot be set: {exc}") from exc
    return loaded


@deep_recursion()
def _export_lora(
    model: Any,
    request: ExportRequest,
    plan_text: str | None,
    script_text: str | None,
    report: Progress,
    rebuild: Callable[[], Any],
) -> ExportResult:
    """The LoRA export (see :mod:`.adapters`): the deployable file, LoRA merged and stripped,
    verified by loading it in bare Keras; the adapters file, verified by the loader step a
    user runs (the model rebuilt from the base, the adapters loaded), which is then trained
    one step: B matrices move, frozen kernels stay bitwise the same."""
    from kfreeze_tui.core.train.adapters import (
        load_adapters_checked,
        save_adapters_checked,
        strip_lora,
    )

    assert request.adapters_path is not None
    keras = import_keras()
    result = ExportResult()
    temp = temp_beside(request.model_path, ".keras")
    temp_adapters = temp_beside(request.adapters_path, ".npz")
    try:
        report(f"Saving {request.model_path.name} and {request.adapters_path.name}")
        with native_output_captured():
            model.save(temp)
            drop_rejected_keys(temp, model)
            strip_lora(temp)
            if getattr(model, "compiled", False):
                # The plain layers train their kernels where the LoRA model trained A and
                # B: the file's optimizer state is made for them (see _build_optimizer),
                # from the file loaded once and saved again.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    plain = keras.saving.load_model(temp)
                _build_optimizer(plain)
                plain.save(temp)
                drop_rejected_keys(temp, plain)
            save_adapters_checked(model, temp_adapters)
            report("Loading it back to verify")
            loaded = _load_back(keras, temp)
        checks = _verify_deployable(model, loaded)
        report("Rebuilding the LoRA model from the base and the adapters")
        with native_output_captured():
            rebuilt = rebuild()
            load_adapters_checked(rebuilt, temp_adapters)
        checks += _verify_rebuilt(model, rebuilt)
        step, moved = _prove_lora_step(rebuilt, report)
        result.step = step
        checks.append(moved)
        trainable, frozen = params(rebuilt)
        result.verification = Verification(
            layers=len(loaded.layers),
            trainable_params=trainable,
            non_trainable_params=frozen,
            checks=tuple(checks),
        )
        os.replace(temp, request.model_path)
        os.replace(temp_adapters, request.adapters_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        temp_adapters.unlink(missing_ok=True)
        raise
    result.files.append(WrittenFile(request.model_path, "model", disk_size(request.model_path)))
    result.files.append(
        WrittenFile(request.adapters_path, "LoRA adapters", disk_size(request.adapters_path))
    )
    _write_others(model, request, plan_text, script_text, report, result)
    return result


def _outputs(model: Any, x: Any) -> list[Any]:
    import numpy as np

    from kfreeze_tui.core.train.check import _flat

    return [np.asarray(out, dtype="float64") for out in _flat(model(x, training=False))]


def _largest_difference(model: Any, other: Any) -> float:
    """The largest difference between the two models' outputs on a synthetic batch."""
    import numpy as np

    from kfreeze_tui.core.train.check import synthetic_batch

    x, _ = synthetic_batch(model, 2)
    ours, theirs = _outputs(model, x), _outputs(other, x)
    if len(ours) != len(theirs) or any(
        a.shape != b.shape for a, b in zip(ours, theirs, strict=True)
    ):
        raise ExportError("the saved model's outputs have other shapes than the model's")
    return max(
        (float(np.max(np.abs(a - b))) if a.size else 0.0) for a, b in zip(ours, theirs, strict=True)
    )


def _tolerance(model: Any) -> float:
    """How far apart W.x + (x.A).B and (W + A.B).x may be in the model's float type."""
    dtype = str(getattr(model, "dtype", "float32") or "float32")
    return 1e-2 if "16" in dtype else 1e-4


def _verify_deployable(model: Any, loaded: Any) -> list[str]:
    """The deployable file, loaded in bare Keras: same layers, no LoRA left in it (nothing
    to resume as zero adapters), same outputs as the LoRA model.

    Raises:
        ExportError: naming the first difference.
    """
    from kfreeze_tui.core.train.adapters import lora_matrices

    if [layer.name for layer in model.layers] != [layer.name for layer in loaded.layers]:
        raise ExportError("the saved model has different layers from the model that was saved")
    left = lora_matrices(loaded)
    if left:
        raise ExportError(
            f"the saved model loads with LoRA on ({left[0].path}), with adapters of zeros "
            "that would train nothing"
        )
    merged = len(lora_matrices(model)) // 2
    difference = _largest_difference(model, loaded)
    if not difference <= _tolerance(model):
        raise ExportError(
            f"the saved model's outputs differ from the LoRA model's by up to {difference:.3g}"
        )
    return [
        f"{len(loaded.layers)} layers, same names and order",
        f"LoRA merged into the kernels of {merged} layers, which load as plain layers "
        "(no zero adapters to train)",
        f"same outputs as the LoRA model (largest difference {difference:.2g})",
    ]


def _verify_rebuilt(model: Any, rebuilt: Any) -> list[str]:
    """The loader step: the model rebuilt as the script builds it, the adapters loaded,
    must hold the LoRA model's every weight and trainable state.

    Raises:
        ExportError: naming the first difference.
    """
    if params(rebuilt) != params(model) or len(rebuilt.weights) != len(model.weights):
        raise ExportError(
            "the LoRA model rebuilt from the base and the adapters has other parameter "
            "counts than the model that was saved"
        )
    for a, b in zip(model.weights, rebuilt.weights, strict=True):
        if tuple(a.shape) != tuple(b.shape) or not _same_values(a, b):
            raise ExportError(f"the weight {a.path} differs after loading the adapters")
    return [
        f"the LoRA model rebuilt from the base and the adapters: all {len(model.weights)} "
        "weights equal, same trainable state"
    ]


def _prove_lora_step(rebuilt: Any, report: Progress) -> tuple[Any, str]:
    """One step on the rebuilt LoRA model: frozen weights (the adapted kernels among them)
    bitwise unchanged, and the LoRA B matrices moved.

    Raises:
        ExportError: a frozen weight changed, or no B matrix moved.
    """
    import numpy as np

    from kfreeze_tui.core.train.adapters import lora_matrices
    from kfreeze_tui.core.train.check import one_step, step_findings, values_of

    b_matrices = [v for v in lora_matrices(rebuilt) if str(v.path).endswith("_b")]
    before = [np.array(values_of(v), copy=True) for v in b_matrices]
    report("Training one step on the rebuilt LoRA model to prove the plan")
    step = one_step(rebuilt)
    errors = [f for f in step_findings(step) if f.severity == "error"]
    if errors:
        raise ExportError(f"the exported model does not train as planned: {errors[0].message}")
    moved = sum(
        not np.array_equal(values_of(v), old, equal_nan=True)
        for v, old in zip(b_matrices, before, strict=True)
    )
    if b_matrices and not moved:
        raise ExportError("no LoRA B matrix moved in one training step: LoRA does not learn")
    return step, (
        f"{step.summary()}; {moved} of {len(b_matrices)} LoRA B matrices moved (A matrices "
        "start moving once B is not zero)"
    )


def _write_others(
    model: Any,
    request: ExportRequest,
    plan_text: str | None,
    script_text: str | None,
    report: Progress,
    result: ExportResult,
) -> None:
    """The plan, the script and the SavedModel, after the model file."""
    if request.plan_path is not None and plan_text is not None:
        report(f"Writing {request.plan_path.name}")
        write_text_atomic(request.plan_path, plan_text)
        result.files.append(WrittenFile(request.plan_path, "plan", disk_size(request.plan_path)))
    if request.script_path is not None and script_text is not None:
        report(f"Writing {request.script_path.name}")
        write_text_atomic(request.script_path, script_text)
        result.files.append(
            WrittenFile(request.script_path, "script", disk_size(request.script_path))
        )
    if request.savedmodel_path is not None:
        report(f"Exporting the SavedModel {request.savedmodel_path.name}")
        _export_savedmodel(model, request.savedmodel_path)
        result.files.append(
            WrittenFile(request.savedmodel_path, "SavedModel", disk_size(request.savedmodel_path))
        )


#: Keyword arguments ``keras.layers.Layer.__init__`` takes through ``**kwargs`` (Keras 3.15).
_LAYER_KWARGS = frozenset(
    {"input_dim", "input_shape", "batch_input_shape", "batch_size", "input_dtype", "weights"}
)


def rejected_config_keys(layer: Any) -> set[str]:
    """Keys of ``layer.get_config()`` that its class's constructor refuses on loading.

    keras-hub 0.32's ``ViTPatchingAndEmbedding.get_config`` emits ``num_patches`` and
    ``num_positions``, which it computes from its other arguments and its ``__init__`` does
    not take: a ViT backbone saved whole loads (it rebuilds the layer from the backbone's own
    arguments), but the layer saved in a functional model does not. The rule: the keys that
    no ``__init__`` from the layer's class down to ``keras.layers.Layer`` names are suspects
    (a constructor may also take keys from ``**kwargs``, as LayerNormalization's
    ``rms_scaling``); they are left out of the file only when ``from_config`` refuses the
    whole config and takes it without them. The export's verification then proves the
    loaded model (same layers, same weights).
    """
    import inspect

    from kfreeze_tui.core.runtime.process import import_keras

    keras = import_keras()
    try:
        config = layer.get_config()
    except (NotImplementedError, TypeError, ValueError):  # Keras saves (or refuses) it itself
        return set()
    accepted = set(_LAYER_KWARGS)
    for cls in type(layer).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        accepted |= {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}
        if cls is keras.layers.Layer or not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    suspects = set(config) - accepted
    if not suspects or _rebuilds(layer, config):
        return set()
    return (
        suspects
        if _rebuilds(layer, {k: v for k, v in config.items() if k not in suspects})
        else set()
    )


def _rebuilds(layer: Any, config: dict[str, Any]) -> bool:
    """Whether the layer's class takes ``config`` back (``from_config``)."""
    try:
        type(layer).from_config(dict(config))
    except (TypeError, ValueError):
        return False
    return True


def drop_rejected_keys(keras_file: Path, model: Any) -> list[str]:
    """Leave out of a saved file's config the keys :func:`rejected_config_keys` finds
    (rewriting the file through a temporary one); returns ``layer.key`` for each."""
    from kfreeze_tui.core.runtime.keras_private import flatten_layers
    from kfreeze_tui.core.train.adapters import rewrite_config

    rejected = {
        (type(layer).__name__, layer.name): keys
        for layer in flatten_layers(model, include_self=False)
        if (keys := rejected_config_keys(layer))
    }
    if not rejected:
        return []

    def without_rejected(node: dict[str, Any]) -> list[str]:
        inner = node.get("config")
        if not isinstance(inner, dict):
            return []
        keys = rejected.get((node.get("class_name"), inner.get("name")), set())
        dropped = [f"{inner.get('name')}.{key}" for key in sorted(keys & set(inner))]
        for key in keys & set(inner):
            del inner[key]
        return dropped

    temp = lambda: temp_beside(keras_file, ".keras")  # noqa: E731
    return list(rewrite_config(keras_file, without_rejected, temp))


def _build_optimizer(model: Any) -> None:
    """Give a compiled model's optimizer its variables before it is saved.

    ``load_model`` builds the optimizer of a compiled model on its trainable weights and
    then loads the saved optimizer state into it. An optimizer saved before its first step
    has two variables (the step count and the learning rate), so every load warned
    "Skipping variable loading for optimizer 'adam', because it has 46 variables whereas the
    saved optimizer has 2". Built here, the file holds the same state as the optimizer a
    load makes (zero moments, step 0), and a load is silent.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(model, "compiled", False) and not optimizer.built:
        optimizer.build(model.trainable_variables)


def _prove_one_step(loaded: Any, model: Any, report: Progress) -> Any:
    """Train the loaded copy one step (the file is already written and is not touched):
    frozen weights must stay bitwise the same, trainable ones must move. The step is
    compared with ``model``'s weights, which :func:`verify` found equal to the copy's.

    Raises:
        ExportError: a frozen weight or a frozen BatchNormalization statistic changed, or no
            trainable weight did.
    """
    from kfreeze_tui.core.train.check import one_step, step_findings

    report("Training one step on a copy to prove the plan")
    step = one_step(loaded, reference=model)
    errors = [f for f in step_findings(step) if f.severity == "error"]
    if errors:
        raise ExportError(f"the exported model does not train as planned: {errors[0].message}")
    return step


def _export_savedmodel(model: Any, target: Path) -> None:
    temp = temp_dir_name(target)
    try:
        with native_output_captured():
            model.export(str(temp), verbose=False)
        if target.exists():
            old = temp.with_name(temp.name + ".old")
            os.replace(target, old)
            os.replace(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(temp)
        raise


def params(model: Any) -> tuple[int, int]:
    """Trainable and non-trainable parameters as Keras reports them."""
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    return trainable, model.count_params() - trainable
