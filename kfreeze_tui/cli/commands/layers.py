"""``kfreeze layers MODEL``: every layer with its index, shape, params and trainable state."""

from __future__ import annotations

import argparse
import re

import kfreeze_tui.cli.report as report
from kfreeze_tui.cli.arguments import check_lora, load_options_from, lora_spec_from
from kfreeze_tui.cli.output import EXIT_OK, note, print_json, stdout_console, warn
from kfreeze_tui.core.errors import UsageError


def _pattern(text: str | None) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise UsageError(f"--filter {text!r} is not a valid regular expression ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Print the layer table (or its JSON) of ``args.model``."""
    from kfreeze_tui.core.model.names import find_layer
    from kfreeze_tui.core.session import open_session

    pattern = _pattern(args.filter)
    lora = lora_spec_from(args)
    session = open_session(args.model, load_options_from(args), use_cache=not args.no_cache)
    for warning in session.warnings:
        warn(warning)
    if not args.json:
        for repair in session.repairs:
            note(f"repaired: {repair.message}")
    info = session.info
    view = plan = None
    if lora is not None:
        # As keras-hub's backbone.enable_lora and PEFT count: every other weight frozen.
        from kfreeze_tui.core.plan.freeze import FreezePlan

        view = session.view
        check_lora(lora, view)
        plan = FreezePlan(boundary=None, lora=lora)
    notes: list[str] = []
    cut = None
    if args.boundary is not None:
        from kfreeze_tui.core.model.cut import CutIndex
        from kfreeze_tui.core.model.names import parse_layer_ref

        cut = CutIndex(info).at(parse_layer_ref(info, args.boundary, notes))
    if pattern is not None:
        row, found = find_layer(info, args.filter)
        if row is not None and found:
            notes.append(found)
            pattern = re.compile(re.escape(row.name))
    for text in notes:
        note(text)
    rows = report.select(info, pattern, args.expand_nested)
    if args.json:
        document = report.layers_document(info, rows, view, plan)
        document["repairs"] = [repair.to_json() for repair in session.repairs]
        if cut is not None:
            document["cut"] = cut.to_json()
        print_json(document)
        return EXIT_OK
    console = stdout_console()
    console.print(
        report.layer_table(
            info, rows, args.expand_nested, width=console.width, view=view, plan=plan
        )
    )
    if view is not None and plan is not None and plan.lora is not None:
        from kfreeze_tui.core.plan.lora import unsupported

        skipped = unsupported(view.leaves, plan.lora)
        coverage = view.coverage()
        print(
            f"LoRA rank {plan.lora.rank} on {len(view.lora_positions(plan.lora))} layers "
            f"({plan.lora.targets}); {view.adapters(plan):,} adapter parameters; LoRA can "
            f"reach {coverage.fraction:.0%} of the parameters"
            + (f"; skipped (no enable_lora): {len(skipped)} layers" if skipped else "")
        )
    if cut is not None:
        print(f"Boundary {cut.boundary}: {cut.describe()}")
    return EXIT_OK
