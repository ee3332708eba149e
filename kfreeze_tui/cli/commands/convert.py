"""``kfreeze convert OLD -o NEW.keras``: a model file from an older Keras as a Keras 3 file."""

from __future__ import annotations

import argparse

from kfreeze_tui.cli.output import EXIT_OK, note, print_json, warn


def run(args: argparse.Namespace) -> int:
    """Convert ``args.model`` to ``args.output``, repaired and verified."""
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.train.convert import convert, summary_line

    options = LoadOptions(weights="none", custom_objects=args.custom_objects, unsafe=args.unsafe)
    result = convert(args.model, args.output, options, force=args.force)
    if args.json:
        print_json(
            {
                "source": args.model,
                "output": str(result.path),
                "bytes": result.size,
                "repairs": [repair.to_json() for repair in result.repairs],
                "checks": result.checks,
                "max_difference": result.max_difference,
                "removed_leftovers": [
                    {"path": str(item.path), "bytes": item.size} for item in result.removed
                ],
            },
            indent=2,
        )
        return EXIT_OK
    if result.removed:
        from kfreeze_tui.core.runtime.leftovers import describe

        note(describe(result.removed))
    for warning in result.warnings:
        warn(warning)
    for repair in result.repairs:
        note(f"repaired: {repair.message}")
    print(summary_line(result))
    return EXIT_OK
