"""``kfreeze export MODEL --freeze-before LAYER -o OUT.keras``: freeze, add a head, compile and
write a verified model (and plan, script, SavedModel) without the explorer. Also what
``kfreeze apply`` shares with it: writing a session's export and saying what was written."""

from __future__ import annotations

import argparse
from typing import Any

from kfreeze_tui.cli.arguments import (
    check_lora,
    export_request,
    hidden_layers,
    load_options_from,
    lora_spec_from,
)
from kfreeze_tui.cli.output import EXIT_OK, note, warn
from kfreeze_tui.core.errors import UsageError


def run(args: argparse.Namespace) -> int:
    """Freeze, add the head, compile and write what the output options ask for."""
    from kfreeze_tui.core.model.loading import load
    from kfreeze_tui.core.model.names import parse_layer_ref
    from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan
    from kfreeze_tui.core.plan.phases import parse_phase
    from kfreeze_tui.core.session import ModelSession
    from kfreeze_tui.core.train.export import check_request

    head, compile_spec = _head_and_compile(args)
    lora = lora_spec_from(args)
    if args.freeze_before is None and not args.phase:
        raise UsageError("pass --freeze-before LAYER (or --phase for staged training)")
    check_request(export_request(args))  # before the slow load
    options = load_options_from(args)
    loaded = load(args.model, options)
    for warning in loaded.warnings:
        warn(warning)
    session = ModelSession(loaded)
    check_lora(lora, session.view)
    notes: list[str] = []
    phase_notes: list[str] = []
    session.set_training_plan(
        [parse_phase(text, session.info, phase_notes) for text in args.phase], args.strategy
    )
    if args.freeze_before is None:
        boundary = session.phases[0].boundary  # phase 1 (checked before loading)
    elif args.freeze_before.strip().lower() == "all":
        boundary = None
    else:
        boundary = parse_layer_ref(session.info, args.freeze_before, notes)
    for text in notes:
        note(f"--freeze-before {text}")
    for text in phase_notes:
        note(f"--phase {text}")
    plan = FreezePlan(boundary=boundary, bn_policy=BNPolicy(args.bn), lora=lora)
    return export_session(session, options, plan, head, compile_spec, args)


def _head_and_compile(args: argparse.Namespace) -> tuple[Any, Any]:
    """The head options as the core's HeadSpec and CompileSpec."""
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec

    head = HeadSpec(
        feature_layer=args.feature_layer,
        pooling=args.pool,
        hidden=hidden_layers(args.hidden),
        dropout=args.dropout,
        classes=args.classes,
        activation=args.activation,
        replace=args.replace_output,
        keep=tuple(args.keep_output),
        kind=args.head,
    )
    compile_spec = CompileSpec(
        enabled=not args.no_compile, learning_rate=args.lr, labels=args.labels
    )
    return head, compile_spec


def export_session(
    session: Any,
    load: Any,
    plan: Any,
    head: Any,
    compile_spec: Any,
    args: argparse.Namespace,
    phase: int = 1,
) -> int:
    """Write what the output options ask for from ``session`` and say what was written."""
    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.model.names import find_layer
    from kfreeze_tui.core.plan.head import validate

    # The request was checked before the model was loaded, and session.export checks it
    # again before building (files may have appeared meanwhile).
    request = export_request(args)
    if head.feature_layer:
        _, found = find_layer(session.info, head.feature_layer, top_level=True)
        if found:
            note(f"feature layer {found}")
    problems = validate(session.info, head)
    if problems:
        raise PlanError(problems[0].rstrip("."))
    result = session.export(load, plan, head, compile_spec, request, phase=phase)
    _print_result(result)
    _print_placement(session.info, head)
    return EXIT_OK


def _print_result(result: Any) -> None:
    from kfreeze_tui.core.runtime.leftovers import describe, human_size

    if result.removed:
        note(describe(result.removed))
    for written in result.files:
        print(f"wrote {written.path} ({written.what}, {human_size(written.size)})")
    verification = result.verification
    if verification is not None:
        print(
            f"verified by loading it back: {verification.layers} layers, "
            f"{verification.trainable_params:,} trainable and "
            f"{verification.non_trainable_params:,} non-trainable parameters; "
            + "; ".join(verification.checks)
        )
    for text in result.notes:
        note(text)


def _print_placement(info: Any, head: Any) -> None:
    """What the head attaches to and replaces, and, for several outputs, which the new model
    has and which it dropped (never silently)."""
    from kfreeze_tui.core.plan.head import placement

    if head.is_none:
        print("head: none (the model as it is, its outputs unchanged, for your own task model)")
        return
    found = placement(info, head)
    if found is None:
        return
    print("head: " + "; ".join(found.lines()))
    if len(found.outputs) > 1:
        kept = "".join(f", {row.name} (kept)" for row in found.kept)
        text = f"outputs: {found.new_outputs[0]} (the new head){kept}"
        if found.dropped:
            text += "; dropped: " + ", ".join(row.name for row in found.dropped)
            text += " (--keep-output NAME keeps one)"
        print(text)
