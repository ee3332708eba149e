"""The plan file (TOML): what to load, where to freeze, which head, how to compile.

The boundary and the exceptions are stored by name *and* by path, so that a plan survives a
renamed layer (the path still fits) and a changed layer order (the name still fits); when it
is applied, kfreeze says which of the two it used. Reading and writing are pure: no Keras.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfreeze_tui import __version__
from kfreeze_tui.core.build import CompileSpec, PlanError
from kfreeze_tui.core.head import DenseSpec, HeadSpec, feature_layer, resolved_pooling
from kfreeze_tui.core.layers import ModelInfo
from kfreeze_tui.core.loading import LoadOptions
from kfreeze_tui.core.names import find_layer
from kfreeze_tui.core.phases import HEAD, Phase
from kfreeze_tui.core.plan import BNPolicy, FreezePlan, PlanView

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PLAN_VERSION = 1


@dataclass(frozen=True)
class LayerRef:
    """A layer named by name and by path (the path as the walk gives it)."""

    name: str
    path: tuple[int, ...]


@dataclass(frozen=True)
class PlanDocument:
    """Everything a plan file holds."""

    source: str
    load: LoadOptions
    boundary: LayerRef | None  # None: every layer frozen
    exceptions: tuple[LayerRef, ...]
    bn_policy: BNPolicy
    head: HeadSpec
    compile: CompileSpec
    notes: list[str] = field(default_factory=list, compare=False)
    phases: tuple[PhaseRef, ...] = ()
    """Staged training; empty for a plan of one phase (the freeze above)."""


@dataclass(frozen=True)
class PhaseRef:
    """A phase as the plan file stores it: the boundary by name and path (None: head)."""

    boundary: LayerRef | None
    epochs: int
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    bn_policy: BNPolicy | None = None


def document(
    source: str,
    load: LoadOptions,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    compile_spec: CompileSpec,
    phases: tuple[Phase, ...] = (),
) -> PlanDocument:
    """The plan document of a plan on a walked model (the feature layer made explicit)."""
    info = view.info
    boundary_layer = view.boundary_layer(plan)
    layer = feature_layer(info, head)
    resolved = HeadSpec(
        feature_layer=layer.name if layer else head.feature_layer,
        pooling=resolved_pooling(info, head),
        hidden=head.hidden,
        dropout=head.dropout,
        classes=head.classes,
        activation=head.activation,
        float32_head=head.float32_head,
    )
    return PlanDocument(
        source=source,
        load=load,
        boundary=LayerRef(boundary_layer.name, boundary_layer.path) if boundary_layer else None,
        exceptions=tuple(LayerRef(info.layer(path).name, path) for path in sorted(plan.exceptions)),
        bn_policy=plan.bn_policy,
        head=resolved,
        compile=compile_spec,
        phases=tuple(
            PhaseRef(
                boundary=(
                    LayerRef(info.layer(p.boundary).name, p.boundary) if p.boundary else None
                ),
                epochs=p.epochs,
                lr=p.lr,
                lr_range=p.lr_range,
                bn_policy=p.bn_policy,
            )
            for p in phases
        ),
    )


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(doc: PlanDocument) -> str:
    """The plan as a commented TOML document."""
    load = doc.load
    lines = [
        f"# kfreeze plan (kfreeze {__version__}).",
        "# Reproduce the model: kfreeze apply THIS.toml -o OUT.keras",
        "# Open it in the explorer: kfreeze THIS.toml",
        f"version = {PLAN_VERSION}",
        "",
        "[source]",
        f"model = {_value(doc.source)}",
        f"weights = {_value(load.weights)}",
        f"include_top = {_value(load.include_top)}",
    ]
    if load.input_shape:
        lines.append(f"input_shape = {_value(list(load.input_shape))}")
    if load.custom_objects:
        lines.append(f"custom_objects = {_value(str(load.custom_objects))}")
    if load.unsafe:
        lines.append("unsafe = true")
    lines += ["", "[freeze]"]
    if doc.boundary is None:
        lines.append("# Every layer is frozen.")
        lines.append("freeze_all = true")
    else:
        lines.append("# The first layer that trains; every layer before it is frozen.")
        lines.append(f"boundary = {_value(doc.boundary.name)}")
        lines.append(f"boundary_path = {_value(list(doc.boundary.path))}")
    lines.append(f'bn_policy = {_value(doc.bn_policy.value)}  # "frozen" or "trainable"')
    lines.append(
        "exceptions = ["
        + ", ".join(_value({"name": e.name, "path": list(e.path)}) for e in doc.exceptions)
        + "]"
    )
    head = doc.head
    lines += [
        "",
        "[head]",
        f"feature_layer = {_value(head.feature_layer or '')}",
        f"pooling = {_value(head.pooling or 'avg')}",
        "hidden = ["
        + ", ".join(_value({"units": d.units, "activation": d.activation}) for d in head.hidden)
        + "]",
        f"dropout = {_value(float(head.dropout))}",
        f"classes = {_value(head.classes)}",
        f"activation = {_value(head.activation)}",
        f"float32_head = {_value(head.float32_head)}",
        "",
        "[compile]",
        f"enabled = {_value(doc.compile.enabled)}",
        'optimizer = "adam"',
        f"learning_rate = {_value(float(doc.compile.learning_rate))}",
        f'labels = {_value(doc.compile.labels)}  # "sparse" (class ids) or "onehot"',
        "",
    ]
    if doc.phases:
        lines.append("# Staged training: kfreeze_tui.fit_phases (or the script's train()) runs")
        lines.append("# the phases in order; [freeze] above is phase 1's.")
    for phase in doc.phases:
        lines.append("[[phase]]")
        if phase.boundary is None:
            lines.append('boundary = "head"  # the whole base frozen')
        else:
            lines.append(f"boundary = {_value(phase.boundary.name)}")
            lines.append(f"boundary_path = {_value(list(phase.boundary.path))}")
        lines.append(f"epochs = {phase.epochs}")
        if phase.lr_range is not None:
            lines.append(f"lr_range = {_value([float(v) for v in phase.lr_range])}")
        elif phase.lr is not None:
            lines.append(f"lr = {_value(float(phase.lr))}")
        if phase.bn_policy is not None:
            lines.append(f"bn_policy = {_value(phase.bn_policy.value)}")
        lines.append("")
    return "\n".join(lines)


def _need(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise PlanError(f"the plan has no {key} in [{where}]")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PlanError(f"{key} in [{where}] has the wrong type ({type(value).__name__})")
    return value


def _path(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(i, int) for i in value):
        raise PlanError(f"{what} must be a list of integers")
    return tuple(value)


def read(path: Path) -> PlanDocument:
    """Read a plan file.

    Raises:
        PlanError: when the file is missing, not TOML, or not a kfreeze plan.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"the plan {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"the plan {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"the plan {path} is not valid TOML ({exc})") from None
    if data.get("version") != PLAN_VERSION:
        raise PlanError(f"{path} is not a kfreeze plan of version {PLAN_VERSION}")
    source = data.get("source", {})
    freeze = data.get("freeze", {})
    head = data.get("head", {})
    compile_table = data.get("compile", {})
    input_shape = source.get("input_shape")
    load = LoadOptions(
        weights=str(source.get("weights", "imagenet")),
        input_shape=tuple(input_shape) if input_shape else None,  # type: ignore[arg-type]
        include_top=bool(source.get("include_top", False)),
        custom_objects=Path(source["custom_objects"]) if source.get("custom_objects") else None,
        unsafe=bool(source.get("unsafe", False)),
    )
    boundary = None
    if not freeze.get("freeze_all", False):
        boundary = LayerRef(
            _need(freeze, "boundary", str, "freeze"),
            _path(freeze.get("boundary_path", []), "boundary_path"),
        )
    exceptions = tuple(
        LayerRef(str(e.get("name", "")), _path(e.get("path", []), "an exception's path"))
        for e in freeze.get("exceptions", [])
    )
    try:
        policy = BNPolicy(freeze.get("bn_policy", "frozen"))
    except ValueError:
        raise PlanError("bn_policy in [freeze] must be frozen or trainable") from None
    hidden = tuple(
        DenseSpec(int(d.get("units", 0)), str(d.get("activation", "relu")))
        for d in head.get("hidden", [])
    )
    spec = HeadSpec(
        feature_layer=head.get("feature_layer") or None,
        pooling=head.get("pooling") or None,
        hidden=hidden,
        dropout=float(head.get("dropout", 0.2)),
        classes=int(head.get("classes", 10)),
        activation=str(head.get("activation", "softmax")),
        float32_head=bool(head.get("float32_head", True)),
    )
    compile_spec = CompileSpec(
        enabled=bool(compile_table.get("enabled", True)),
        learning_rate=float(compile_table.get("learning_rate", 1e-4)),
        labels=str(compile_table.get("labels", "sparse")),
    )
    return PlanDocument(
        source=_need(source, "model", str, "source"),
        load=load,
        boundary=boundary,
        exceptions=exceptions,
        bn_policy=policy,
        head=spec,
        compile=compile_spec,
        phases=tuple(_read_phase(table, i) for i, table in enumerate(data.get("phase", []), 1)),
    )


def _read_phase(table: Any, number: int) -> PhaseRef:
    where = f"phase {number}"
    if not isinstance(table, dict):
        raise PlanError(f"[[phase]] {number} is not a table")
    name = _need(table, "boundary", str, where)
    boundary = None
    if name != HEAD:
        boundary = LayerRef(name, _path(table.get("boundary_path", []), f"{where}'s boundary_path"))
    epochs = _need(table, "epochs", int, where)
    if epochs < 1:
        raise PlanError(f"{where} must train at least one epoch")
    lr = table.get("lr")
    lr_range = table.get("lr_range")
    if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0):
        raise PlanError(f"lr in {where} must be a positive number")
    if lr_range is not None:
        valid = (
            isinstance(lr_range, list)
            and len(lr_range) == 2
            and all(isinstance(v, (int, float)) and v > 0 for v in lr_range)
            and lr_range[0] <= lr_range[1]
        )
        if not valid:
            raise PlanError(f"lr_range in {where} must be [low, high], two positive numbers")
    try:
        policy = BNPolicy(table["bn_policy"]) if "bn_policy" in table else None
    except ValueError:
        raise PlanError(f"bn_policy in {where} must be frozen or trainable") from None
    return PhaseRef(
        boundary=boundary,
        epochs=epochs,
        lr=float(lr) if lr is not None else None,
        lr_range=(float(lr_range[0]), float(lr_range[1])) if lr_range else None,
        bn_policy=policy,
    )


def _find(info: ModelInfo, ref: LayerRef, what: str, notes: list[str]) -> tuple[int, ...]:
    by_name = [row for row in info.layers if row.name == ref.name]
    if not by_name:
        old, note = find_layer(info, ref.name)
        if old is not None and note:
            notes.append(f"{what} {note}")
            return old.path
    if by_name:
        if len(by_name) == 1 or any(row.path == ref.path for row in by_name):
            chosen = next((r for r in by_name if r.path == ref.path), by_name[0])
            if chosen.path != ref.path:
                notes.append(
                    f"{what} {ref.name} found by name at {chosen.path_text} "
                    f"(the plan said {'.'.join(map(str, ref.path))})"
                )
            return chosen.path
    if ref.path:
        try:
            row = info.layer(ref.path)
        except KeyError:
            row = None
        if row is not None:
            notes.append(
                f"{what} {ref.name} not found by name: used index {row.path_text} ({row.name})"
            )
            return row.path
    raise PlanError(
        f"the plan's {what} {ref.name} (index {'.'.join(map(str, ref.path)) or '?'}) is not a "
        "layer of this model"
    )


def resolve(doc: PlanDocument, info: ModelInfo) -> tuple[FreezePlan, list[str]]:
    """The freeze plan of a document on a walked model, and notes on how it was matched.

    Raises:
        PlanError: when the boundary or an exception matches no layer.
    """
    notes: list[str] = []
    boundary = _find(info, doc.boundary, "boundary", notes) if doc.boundary else None
    exceptions = frozenset(_find(info, ref, "exception", notes) for ref in doc.exceptions)
    for path in exceptions:
        if info.layer(path).is_container:
            raise PlanError(f"the exception {info.layer(path).name} is a nested model, not a layer")
    return FreezePlan(boundary=boundary, exceptions=exceptions, bn_policy=doc.bn_policy), notes


def resolve_phases(doc: PlanDocument, info: ModelInfo, notes: list[str]) -> tuple[Phase, ...]:
    """The phases of a document on a walked model (by name, else by index, as the freeze).

    Raises:
        PlanError: a phase's boundary matches no layer.
    """
    return tuple(
        Phase(
            boundary=(
                _find(info, ref.boundary, f"phase {i} boundary", notes) if ref.boundary else None
            ),
            epochs=ref.epochs,
            lr=ref.lr,
            lr_range=ref.lr_range,
            bn_policy=ref.bn_policy,
        )
        for i, ref in enumerate(doc.phases, 1)
    )
