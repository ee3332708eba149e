"""``kfreeze apply PLAN.toml -o OUT.keras``: rebuild the model a plan file describes."""

from __future__ import annotations

import argparse
from typing import Any

from kfreeze_tui.cli.arguments import export_request
from kfreeze_tui.cli.commands.export import export_session
from kfreeze_tui.cli.output import note, warn


def run(args: argparse.Namespace) -> int:
    """Rebuild the model of ``args.plan_file`` and write it, as an export does."""
    from kfreeze_tui.core.plan import planfile
    from kfreeze_tui.core.plan.phases import check_phase_number
    from kfreeze_tui.core.session import open_plan
    from kfreeze_tui.core.train.export import check_request

    # Before the slow load: the targets, the plan file itself and the phase number.
    check_request(export_request(args))
    check_phase_number(len(planfile.read(args.plan_file).phases), args.phase)
    session, notes = open_plan(args.plan_file, gpu=args.gpu, use_cache=False)
    for text in notes:
        warn(text)
    _override_outputs(session, args)
    if session.phases:
        chosen = session.phases[args.phase - 1]
        note(
            f"the model is set up and compiled for phase {args.phase} of "
            f"{len(session.phases)}: {chosen.spec(session.info)}"
        )
    return export_session(
        session,
        session.load_options,
        session.initial_plan(),
        session.head,
        session.compile_spec,
        args,
        phase=args.phase,
    )


def _override_outputs(session: Any, args: argparse.Namespace) -> None:
    """``kfreeze apply --replace-output/--keep-output``: the outputs asked for instead of
    the plan's (a name that is not an output is refused later, by the head's validation).
    Another output replaced takes the head to that output's default place."""
    from dataclasses import replace

    from kfreeze_tui.core.plan.head import model_outputs

    head = session.head
    if args.replace_output and args.replace_output != head.replace:
        head = replace(head, replace=args.replace_output, feature_layer=None)
    names = [row.name for row in model_outputs(session.info)]
    if head is not session.head and args.replace_output in names:
        note(
            f"--replace-output {args.replace_output}: the head goes where that output's "
            "classifier takes its features, not on the plan's feature layer"
        )
    if args.keep_output:
        head = replace(head, keep=tuple(args.keep_output))
    session.set_head(head, session.compile_spec)
