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


def document(
    source: str,
    load: LoadOptions,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    compile_spec: CompileSpec,
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
