"""``kfreeze check MODEL``: what is wrong with how a model (or the model a plan builds) is set
up to train, and one real training step that proves frozen weights stay frozen."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kfreeze_tui.cli.output import EXIT_FINDINGS, EXIT_OK, print_json, warn


def run(args: argparse.Namespace) -> int:
    """Print the findings and the one-step proof; exit 1 when there are errors."""
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.train.check import (
        one_step,
        recompile_findings,
        static_findings,
        step_findings,
    )

    if Path(args.model).suffix.lower() == ".toml":
        model, warnings, planned = _plan_model(args)
    else:
        model, warnings = _file_model(args)
        planned = []
    findings = planned + recompile_findings(model) + static_findings(model, walk(model))
    step = None
    if not args.no_step and model.trainable_weights:
        step = one_step(model)  # the model as loaded: the file is never written
        findings += step_findings(step)
    findings.sort(key=lambda finding: finding.severity != "error")
    if args.json:
        _print_document(model, findings, step)
    else:
        _print_text(model, findings, step, warnings)
    errors = sum(1 for finding in findings if finding.severity == "error")
    return EXIT_FINDINGS if errors else EXIT_OK


def _file_model(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The model file, compiled, as training code loads it: the optimizer's learning rate is
    read, and the step trains with the file's own optimizer and loss."""
    from kfreeze_tui.core.model.loading import LoadOptions, load

    options = LoadOptions(
        weights="none",
        custom_objects=args.custom_objects,
        unsafe=args.unsafe,
        gpu=args.gpu,
        compile=True,
    )
    loaded = load(args.model, options)
    return loaded.model, list(loaded.warnings)


def _plan_model(args: argparse.Namespace) -> tuple[Any, list[str], list[Any]]:
    """``kfreeze check PLAN.toml``: the model the plan builds (as ``kfreeze apply`` would,
    for phase 1), the notes on how the plan was matched, and a finding for each output of
    the model that the plan drops."""
    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.plan.head import placement, validate
    from kfreeze_tui.core.session import open_plan
    from kfreeze_tui.core.train.check import dropped_output_findings

    session, notes = open_plan(Path(args.model), gpu=args.gpu, use_cache=False)
    problems = validate(session.info, session.head)
    if problems:
        raise PlanError(problems[0].rstrip("."))
    model, _ = session.build(session.initial_plan(), session.head, session.compile_spec)
    found = placement(session.info, session.head)
    dropped = [row.name for row in found.dropped] if found is not None else []
    new = list(found.new_outputs) if found is not None else []
    return model, notes, dropped_output_findings(dropped, new)


def _print_document(model: Any, findings: list[Any], step: Any) -> None:
    from kfreeze_tui.core.train.check import model_outputs

    print_json(
        {
            "model": model.name,
            "outputs": [
                {"name": name, "shape": list(shape)} for name, shape in model_outputs(model)
            ],
            "findings": [finding.to_json() for finding in findings],
            "step": step.to_json() if step is not None else None,
        }
    )


def _print_text(model: Any, findings: list[Any], step: Any, warnings: list[str]) -> None:
    from kfreeze_tui.core.train.check import outputs_line

    for warning in warnings:
        warn(warning)
    for finding in findings:
        print(f"{finding.severity}: {finding.code}: {finding.message}")
    if step is not None:
        print(step.summary())
    print(outputs_line(model))
    if not findings:
        print("no findings: the model trains as it is set up to")
