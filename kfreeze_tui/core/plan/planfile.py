"""The plan file (TOML): what to load, where to freeze, which head, how to compile.

The boundary and the exceptions are stored by name *and* by path, so that a plan survives a
renamed layer (the path still fits) and a changed layer order (the name still fits); when it
is applied, kfreeze says which of the two it used. Reading and writing are pure: no Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfreeze_tui._version import __version__
from kfreeze_tui.core import tomlfile
from kfreeze_tui.core.errors import PlanError, TomlError
from kfreeze_tui.core.model.layers import ModelInfo
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.model.names import find_layer
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView
from kfreeze_tui.core.plan.head import (
    ACTIVATIONS,
    HEAD_KINDS,
    HIDDEN_ACTIVATIONS,
    POOLINGS,
    DenseSpec,
    HeadSpec,
    attachment,
    model_outputs,
    replaced_output,
    resolved_pooling,
)
from kfreeze_tui.core.plan.lora import PRESETS, LoraSpec, target_pattern
from kfreeze_tui.core.plan.phases import HEAD, CompileSpec, Phase, check_phase_lora
from kfreeze_tui.core.tomlfile import KeyLines, KeyPath, describe, located
from kfreeze_tui.core.wording import did_you_mean, with_suggestion

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
    outputs: tuple[str, ...] = field(default=(), compare=False)
    """The model's outputs, for the comment that says which ones the plan drops."""
    lora: LoraRef | None = None
    """LoRA (the ``[lora]`` table), or None."""


@dataclass(frozen=True)
class LoraRef:
    """The ``[lora]`` table: rank, targets, and the toggled layers by name and path."""

    rank: int
    targets: str
    toggles: tuple[LayerRef, ...] = ()


@dataclass(frozen=True)
class PhaseRef:
    """A phase as the plan file stores it: the boundary by name and path (None: head)."""

    boundary: LayerRef | None
    epochs: int
    lr: float | None = None
    lr_range: tuple[float, float] | None = None
    bn_policy: BNPolicy | None = None
    lora: bool | None = None


def document(
    source: str,
    load: LoadOptions,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    compile_spec: CompileSpec,
    phases: tuple[Phase, ...] = (),
) -> PlanDocument:
    """The plan document of a plan on a walked model (the feature layer and the replaced
    output made explicit; a feature that is the input of a layer, a plain operation's output,
    stays the default, which finds it again)."""
    info = view.info
    boundary_layer = view.boundary_layer(plan)
    found = attachment(info, head)
    output = replaced_output(info, head)
    several = len(model_outputs(info)) > 1
    feature = found.layer.name if found and not found.of_input else head.feature_layer
    resolved = (
        HeadSpec(kind="none")
        if head.is_none
        else HeadSpec(
            feature_layer=feature,
            pooling=resolved_pooling(info, head),
            hidden=head.hidden,
            dropout=head.dropout,
            classes=head.classes,
            activation=head.activation,
            float32_head=head.float32_head,
            # Named for a model with several outputs; with one there is nothing to choose.
            replace=output.name if output is not None and several else head.replace,
            keep=tuple(dict.fromkeys(head.keep)),
        )
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
                lora=p.lora,
            )
            for p in phases
        ),
        outputs=tuple(row.name for row in model_outputs(info)),
        lora=None
        if plan.lora is None
        else LoraRef(
            plan.lora.rank,
            plan.lora.targets,
            tuple(LayerRef(info.layer(path).name, path) for path in sorted(plan.lora.toggles)),
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
    lines = [
        f"# kfreeze plan (kfreeze {__version__}).",
        "# Reproduce the model: kfreeze apply THIS.toml -o OUT.keras",
        "# Open it in the explorer: kfreeze THIS.toml",
        f"version = {PLAN_VERSION}",
        "",
        *_source_table(doc),
        "",
        *_freeze_table(doc),
        "",
        *_head_table(doc),
        "",
        *_lora_table(doc),
        "[compile]",
        f"enabled = {_value(doc.compile.enabled)}",
        'optimizer = "adam"',
        f"learning_rate = {_value(float(doc.compile.learning_rate))}",
        f'labels = {_value(doc.compile.labels)}  # "sparse" (class ids) or "onehot"',
        "",
        *_phase_tables(doc),
    ]
    return "\n".join(lines)


def _source_table(doc: PlanDocument) -> list[str]:
    load = doc.load
    lines = [
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
    return lines


def _freeze_table(doc: PlanDocument) -> list[str]:
    lines = ["[freeze]"]
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
    return lines


def _lora_table(doc: PlanDocument) -> list[str]:
    """``[lora]`` (with a blank line after it), or nothing for a plan without LoRA."""
    lora = doc.lora
    if lora is None:
        return []
    return [
        "[lora]",
        "# LoRA layers: kernel frozen, adapters A and B and the bias train, whatever",
        "# [freeze] says.",
        f"rank = {lora.rank}",
        f"targets = {_value(lora.targets)}  # attention, linear, all, or a regex over layer names",
        "toggles = ["
        + ", ".join(_value({"name": t.name, "path": list(t.path)}) for t in lora.toggles)
        + "]",
        "",
    ]


def _valid_targets(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        target_pattern(value)
    except PlanError:
        return False
    return True


def _head_table(doc: PlanDocument) -> list[str]:
    head = doc.head
    if head.is_none:
        return ["[head]", f"kind = {_value(head.kind)}"]
    return [
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
        *_outputs_lines(doc),
    ]


def _phase_tables(doc: PlanDocument) -> list[str]:
    lines = []
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
        if phase.lora is not None:
            lines.append(f"lora = {_value(phase.lora)}  # with the plan's [lora], or without")
        lines.append("")
    return lines


def _outputs_lines(doc: PlanDocument) -> list[str]:
    """``replace`` and ``keep`` (for a model with several outputs), with a comment naming
    the outputs the plan drops."""
    head = doc.head
    lines = []
    if len(doc.outputs) > 1:
        dropped = [n for n in doc.outputs if n != head.replace and n not in head.keep]
        lines += [
            f"# The model's outputs: {', '.join(doc.outputs)}. The head replaces one; keep lists",
            "# the others the new model keeps after it; the rest are dropped"
            + (f" (here: {', '.join(dropped)})." if dropped else "."),
        ]
    if head.replace is not None:
        lines.append(f"replace = {_value(head.replace)}")
    if head.keep or len(doc.outputs) > 1:
        lines.append(f"keep = {_value(list(head.keep))}")
    return lines


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class _Kind:
    """What a key's value must be, and how a message says it."""

    expect: str
    ok: Callable[[Any], bool]
    choices: tuple[str, ...] = ()
    fields: dict[str, _Kind] | None = None
    """For a list of inline tables (``hidden``, ``exceptions``): each table's keys."""
    required: tuple[str, ...] = ()


def _choice(*values: str) -> _Kind:
    return _Kind(
        "one of " + ", ".join(f'"{v}"' for v in values if v),
        lambda value: isinstance(value, str) and value in values,
        choices=values,
    )


def _records(fields: dict[str, _Kind], required: tuple[str, ...], example: str) -> _Kind:
    return _Kind(
        f"a list of inline tables, as {example}",
        lambda value: isinstance(value, list) and all(isinstance(v, dict) for v in value),
        fields=fields,
        required=required,
    )


_TEXT = _Kind("a string", lambda value: isinstance(value, str))
_NAME = _Kind(
    "a layer name (a non-empty string)", lambda value: isinstance(value, str) and bool(value)
)
_NAME_OF_OUTPUT = _Kind(
    "an output's layer name (a non-empty string)",
    lambda value: isinstance(value, str) and bool(value),
)
_BOOL = _Kind("true or false", lambda value: isinstance(value, bool))
_POSITIVE = _Kind("an integer >= 1", lambda value: _is_int(value) and value >= 1)
_RATE = _Kind("a number > 0", lambda value: _is_number(value) and value > 0)
_DROPOUT = _Kind(
    "a number from 0 up to (not including) 1", lambda value: _is_number(value) and 0 <= value < 1
)
_INDEX = _Kind(
    "a list of integers >= 0 (the layer's index, as [143] or [0, 143])",
    lambda value: isinstance(value, list) and all(_is_int(i) and i >= 0 for i in value),
)
_SHAPE = _Kind(
    "three integers >= 1 (height, width, channels), as [224, 224, 3]",
    lambda value: (
        isinstance(value, list) and len(value) == 3 and all(_is_int(i) and i >= 1 for i in value)
    ),
)
_RANGE = _Kind(
    "[low, high]: two numbers > 0 with low <= high, as [1e-6, 1e-5]",
    lambda value: (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_number(v) and v > 0 for v in value)
        and value[0] <= value[1]
    ),
)
_BN = _choice(*(policy.value for policy in BNPolicy))

#: Every table of a plan file and every key it may hold (what :func:`to_toml` writes).
TABLES: dict[str, dict[str, _Kind]] = {
    "source": {
        "model": _Kind(
            "an architecture name or a model file (a non-empty string)",
            lambda value: isinstance(value, str) and bool(value.strip()),
        ),
        "weights": _TEXT,
        "include_top": _BOOL,
        "input_shape": _SHAPE,
        "custom_objects": _TEXT,
        "unsafe": _BOOL,
    },
    "freeze": {
        "freeze_all": _BOOL,
        "boundary": _NAME,
        "boundary_path": _INDEX,
        "bn_policy": _BN,
        "exceptions": _records(
            {"name": _NAME, "path": _INDEX}, ("name",), '[{ name = "conv1_conv", path = [2] }]'
        ),
    },
    "head": {
        "kind": _choice(*HEAD_KINDS),
        "feature_layer": _TEXT,
        "pooling": _choice(*POOLINGS, ""),
        "hidden": _records(
            {"units": _POSITIVE, "activation": _choice(*HIDDEN_ACTIVATIONS)},
            ("units",),
            '[{ units = 256, activation = "relu" }]',
        ),
        "dropout": _DROPOUT,
        "classes": _POSITIVE,
        "activation": _choice(*ACTIVATIONS),
        "float32_head": _BOOL,
        "replace": _NAME_OF_OUTPUT,
        "keep": _Kind(
            'a list of output names, as ["reg"]',
            lambda value: (
                isinstance(value, list) and all(isinstance(v, str) and bool(v) for v in value)
            ),
        ),
    },
    "lora": {
        "rank": _POSITIVE,
        "targets": _Kind(
            f"{', '.join(PRESETS)} or a valid regular expression over layer names",
            _valid_targets,
        ),
        "toggles": _records(
            {"name": _NAME, "path": _INDEX}, ("name",), '[{ name = "query", path = [3, 1, 0] }]'
        ),
    },
    "compile": {
        "enabled": _BOOL,
        "optimizer": _choice("adam"),
        "learning_rate": _RATE,
        "labels": _choice("sparse", "onehot"),
    },
}
#: The keys of each ``[[phase]]``.
PHASE_KEYS: dict[str, _Kind] = {
    "boundary": _NAME,
    "boundary_path": _INDEX,
    "epochs": _POSITIVE,
    "lr": _RATE,
    "lr_range": _RANGE,
    "bn_policy": _BN,
    "lora": _BOOL,
}
_TOP_LEVEL = ("version", *TABLES, "phase")


class _Problems:
    """Every problem found in a plan file, each with its line; the first one is raised."""

    def __init__(self, path: Path, lines: KeyLines) -> None:
        self.path = path
        self.lines = lines
        self.found: list[tuple[bool, int, int, str]] = []

    def add(self, key: KeyPath, text: str, missing: bool = False) -> None:
        """A problem at ``key``; a missing key is told after the others (a misspelt key is
        usually why it is missing, and says more)."""
        line = self.lines.line(key)
        self.found.append((missing, line or 0, len(self.found), located(self.path, line, text)))

    def raise_first(self) -> None:
        if not self.found:
            return
        self.found.sort(key=lambda item: (item[0], item[1] == 0, item[1], item[2]))
        first = self.found[0][3].rstrip(".")
        more = len(self.found) - 1
        if more:
            first += f" ({more} more problem{'s' if more > 1 else ''} after it)"
        raise PlanError(first)


def _check_value(
    problems: _Problems, key: KeyPath, where: str, name: str, kind: _Kind, value: Any
) -> None:
    if not kind.ok(value):
        text = f"{where} {name} must be {kind.expect}, not {describe(value)}"
        if kind.choices and isinstance(value, str):
            text = with_suggestion(text, did_you_mean(value, [c for c in kind.choices if c]))
        problems.add(key, text)
        return
    if kind.fields is None:
        return
    for number, record in enumerate(value, start=1):
        entry = f"{where} {name}, entry {number}:"
        record_key = (*key, number - 1)
        for field_name, field_value in record.items():
            field_kind = kind.fields.get(field_name)
            if field_kind is None:
                problems.add(
                    (*record_key, field_name),
                    with_suggestion(
                        f'{entry} unknown key "{field_name}"',
                        did_you_mean(field_name, kind.fields),
                    ),
                )
            else:
                _check_value(
                    problems, (*record_key, field_name), entry, field_name, field_kind, field_value
                )
        for needed in kind.required:
            if needed not in record:
                problems.add(record_key, f"{entry} {needed} is missing", missing=True)


def _check_table(
    problems: _Problems, key: KeyPath, where: str, table: dict[str, Any], keys: dict[str, _Kind]
) -> None:
    for name, value in table.items():
        kind = keys.get(name)
        if kind is None:
            homes = [f"[{t}]" for t, ks in TABLES.items() if name in ks]
            homes += ["[[phase]]"] if name in PHASE_KEYS else []
            hint = f"{name} belongs in {' or '.join(homes)}" if homes else did_you_mean(name, keys)
            problems.add((*key, name), with_suggestion(f'unknown key "{name}" in {where}', hint))
        else:
            _check_value(problems, (*key, name), where, name, kind, value)


def validate(data: dict[str, Any], path: Path, lines: KeyLines) -> None:
    """Check every table, key, type and range of a parsed plan file.

    Raises:
        PlanError: the first problem in the file (by line), as ``plan.toml line 12:
            unknown key "clases" in [head]: did you mean "classes"?``.
    """
    problems = _Problems(path, lines)
    _check_version(problems, data, path)
    _check_top_level(problems, data)
    for name, keys in TABLES.items():
        table = data.get(name)
        if table is None:
            continue
        if not isinstance(table, dict):
            problems.add((name,), f"{name} must be the table [{name}], not {describe(table)}")
            continue
        _check_table(problems, (name,), f"[{name}]", table, keys)
    _check_required(problems, data)
    lora = data.get("lora")
    if isinstance(lora, dict) and "rank" not in lora:
        problems.add(("lora",), "[lora] has no rank (an integer >= 1)", missing=True)
    _check_phases(problems, data)
    problems.raise_first()


def _check_version(problems: _Problems, data: dict[str, Any], path: Path) -> None:
    """``version = 1``; a file with neither it nor any plan table is not a plan at all."""
    version = data.get("version")
    if version is None and not any(name in data for name in _TOP_LEVEL):
        raise PlanError(
            f"{path} is not a kfreeze plan: it has no version = {PLAN_VERSION} and none of "
            f"{', '.join(f'[{name}]' for name in TABLES if name != 'lora')} "
            "(kfreeze export --plan writes one)"
        )
    if version is None:
        problems.add(
            (),
            f"version is missing: a kfreeze plan starts with version = {PLAN_VERSION} "
            "(kfreeze export --plan writes one)",
            missing=True,
        )
    elif version != PLAN_VERSION or not _is_int(version):
        problems.add(
            ("version",),
            f"version must be {PLAN_VERSION} (the plan format this kfreeze reads), "
            f"not {describe(version)}",
        )


def _check_top_level(problems: _Problems, data: dict[str, Any]) -> None:
    """Tables and keys at the top level that a plan does not have."""
    for name, value in data.items():
        if name in _TOP_LEVEL:
            continue
        if isinstance(value, dict):
            text = with_suggestion(
                f"unknown table [{name}]", did_you_mean(name, TABLES, brackets="[]")
            )
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            text = with_suggestion(
                f"unknown table [[{name}]]", did_you_mean(name, ["phase"], brackets="[[]]")
            )
        else:
            text = with_suggestion(f'unknown key "{name}"', did_you_mean(name, ["version"]))
        problems.add((name,) if not isinstance(value, list) else (name, 0), text)


def _check_required(problems: _Problems, data: dict[str, Any]) -> None:
    """The model to load, and where the freeze starts (or that everything is frozen)."""
    source = data.get("source")
    if source is None:
        problems.add((), "the plan has no [source] table (model = the model to load)")
    elif isinstance(source, dict) and "model" not in source:
        problems.add(
            ("source",),
            "[source] has no model (an architecture name or a model file)",
            missing=True,
        )
    freeze = data.get("freeze", {})
    if isinstance(freeze, dict):
        if freeze.get("freeze_all") is True and "boundary" in freeze:
            problems.add(
                ("freeze", "boundary"), "[freeze] has freeze_all = true and a boundary: keep one"
            )
        elif freeze.get("freeze_all") is not True and "boundary" not in freeze:
            problems.add(
                ("freeze",),
                "[freeze] has no boundary (the first layer that trains) and no freeze_all = true",
                missing=True,
            )


def _check_phases(problems: _Problems, data: dict[str, Any]) -> None:
    """Each ``[[phase]]``: its keys, a boundary and epochs, one learning rate."""
    phases = data.get("phase", [])
    if not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases):
        problems.add(("phase",), "phase must be [[phase]] tables, each with boundary and epochs")
        phases = []
    for index, phase in enumerate(phases):
        where = f"[[phase]] {index + 1}"
        _check_table(problems, ("phase", index), where, phase, PHASE_KEYS)
        for needed in ("boundary", "epochs"):
            if needed not in phase:
                problems.add(("phase", index), f"{where} has no {needed}", missing=True)
        if "lr" in phase and "lr_range" in phase:
            problems.add(
                ("phase", index, "lr_range"), f"{where} has both lr and lr_range: keep one"
            )


def read(path: Path) -> PlanDocument:
    """Read a plan file, validated (:func:`validate`) before anything is used.

    Raises:
        PlanError: when the file is missing, not TOML, or not a valid kfreeze plan (the
            message names the key, its line and the nearest valid name).
    """
    try:
        data, lines = tomlfile.read(path, "the plan")
    except TomlError as exc:
        raise PlanError(str(exc)) from None
    validate(data, path, lines)
    source = data["source"]
    freeze = data.get("freeze", {})
    head = data.get("head", {})
    compile_table = data.get("compile", {})
    input_shape = source.get("input_shape")
    load = LoadOptions(
        weights=source.get("weights", "imagenet"),
        input_shape=tuple(input_shape) if input_shape else None,  # type: ignore[arg-type]
        include_top=source.get("include_top", False),
        custom_objects=Path(source["custom_objects"]) if source.get("custom_objects") else None,
        unsafe=source.get("unsafe", False),
    )
    boundary = None
    if not freeze.get("freeze_all", False):
        boundary = LayerRef(freeze["boundary"], tuple(freeze.get("boundary_path", [])))
    exceptions = tuple(
        LayerRef(e["name"], tuple(e.get("path", []))) for e in freeze.get("exceptions", [])
    )
    hidden = tuple(
        DenseSpec(d["units"], d.get("activation", "relu")) for d in head.get("hidden", [])
    )
    spec = HeadSpec(
        feature_layer=head.get("feature_layer") or None,
        pooling=head.get("pooling") or None,
        hidden=hidden,
        dropout=float(head.get("dropout", 0.2)),
        classes=head.get("classes", 10),
        activation=head.get("activation", "softmax"),
        float32_head=head.get("float32_head", True),
        replace=head.get("replace") or None,
        keep=tuple(head.get("keep", [])),
        kind=head.get("kind", "classifier"),
    )
    compile_spec = CompileSpec(
        enabled=compile_table.get("enabled", True),
        learning_rate=float(compile_table.get("learning_rate", 1e-4)),
        labels=compile_table.get("labels", "sparse"),
    )
    return PlanDocument(
        source=source["model"],
        load=load,
        boundary=boundary,
        exceptions=exceptions,
        bn_policy=BNPolicy(freeze.get("bn_policy", "frozen")),
        head=spec,
        compile=compile_spec,
        phases=tuple(_read_phase(table) for table in data.get("phase", [])),
        lora=_read_lora(data.get("lora")),
    )


def _read_lora(table: dict[str, Any] | None) -> LoraRef | None:
    if table is None:
        return None
    return LoraRef(
        rank=table["rank"],
        targets=table.get("targets", "attention"),
        toggles=tuple(
            LayerRef(t["name"], tuple(t.get("path", []))) for t in table.get("toggles", [])
        ),
    )


def _read_phase(table: dict[str, Any]) -> PhaseRef:
    name = table["boundary"]
    boundary = None
    if name != HEAD:
        boundary = LayerRef(name, tuple(table.get("boundary_path", [])))
    lr = table.get("lr")
    lr_range = table.get("lr_range")
    return PhaseRef(
        boundary=boundary,
        epochs=table["epochs"],
        lr=float(lr) if lr is not None else None,
        lr_range=(float(lr_range[0]), float(lr_range[1])) if lr_range else None,
        bn_policy=BNPolicy(table["bn_policy"]) if "bn_policy" in table else None,
        lora=table.get("lora"),
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
    index = ".".join(map(str, ref.path))
    raise PlanError(
        with_suggestion(
            f"the plan's {what} {ref.name}{f' (index {index})' if index else ''} is not a layer "
            "of this model",
            did_you_mean(ref.name, [row.name for row in info.layers]),
            "; ",
        )
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
            row = info.layer(path)
            what = "a layer with sublayers" if row.subclassed else "a nested model"
            raise PlanError(f"the exception {row.name} is {what}, not a layer it holds")
    lora = None
    if doc.lora is not None:
        toggles = frozenset(_find(info, ref, "LoRA toggle", notes) for ref in doc.lora.toggles)
        lora = LoraSpec(rank=doc.lora.rank, targets=doc.lora.targets, toggles=toggles)
    plan = FreezePlan(boundary=boundary, exceptions=exceptions, bn_policy=doc.bn_policy, lora=lora)
    return plan, notes


def check_outputs(doc: PlanDocument, info: ModelInfo) -> None:
    """Refuse a plan whose head replaces or keeps an output the model does not have.

    Raises:
        PlanError: naming the output, the model's outputs and the nearest name.
    """
    names = [row.name for row in model_outputs(info)]
    asked = ([("replace", doc.head.replace)] if doc.head.replace else []) + [
        ("keep", name) for name in doc.head.keep
    ]
    for key, name in asked:
        if name not in names:
            raise PlanError(
                with_suggestion(
                    f"the plan's [head] {key} {name!r} is not an output of this model (its "
                    f"outputs: {', '.join(names) or 'none'})",
                    did_you_mean(name, names),
                    "; ",
                )
            )


def resolve_phases(doc: PlanDocument, info: ModelInfo, notes: list[str]) -> tuple[Phase, ...]:
    """The phases of a document on a walked model (by name, else by index, as the freeze).

    Raises:
        PlanError: a phase's boundary matches no layer, or its ``lora`` cannot be.
    """
    phases = tuple(
        Phase(
            boundary=(
                _find(info, ref.boundary, f"phase {i} boundary", notes) if ref.boundary else None
            ),
            epochs=ref.epochs,
            lr=ref.lr,
            lr_range=ref.lr_range,
            bn_policy=ref.bn_policy,
            lora=ref.lora,
        )
        for i, ref in enumerate(doc.phases, 1)
    )
    check_phase_lora(doc.lora is not None, phases)
    return phases
