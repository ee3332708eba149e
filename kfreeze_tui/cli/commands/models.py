"""``kfreeze models``: the keras.applications architectures kfreeze opens by name."""

from __future__ import annotations

import argparse

from kfreeze_tui.cli.output import EXIT_OK, print_json, stdout_console


def run(args: argparse.Namespace) -> int:
    """Print the architectures kfreeze opens by name."""
    from rich.table import Table

    from kfreeze_tui.core.model import catalog

    entries = catalog.architectures()
    if args.json:
        print_json(
            [
                {
                    "name": a.name,
                    "family": a.family,
                    "default_input_shape": list(a.default_input_shape),
                }
                for a in entries
            ]
        )
        return EXIT_OK
    table = Table(title=f"{len(entries)} keras.applications architectures", title_justify="left")
    table.add_column("name")
    table.add_column("family")
    table.add_column("default input", justify="right")
    for arch in entries:
        table.add_row(arch.name, arch.family, "x".join(map(str, arch.default_input_shape)))
    stdout_console().print(table)
    return EXIT_OK
