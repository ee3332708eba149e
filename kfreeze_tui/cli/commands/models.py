"""``kfreeze models``: the keras.applications architectures kfreeze opens by name, and the
keras-hub presets already in the local caches (what opens offline)."""

from __future__ import annotations

import argparse

from kfreeze_tui.cli.output import EXIT_OK, print_json, stdout_console

#: The ``kind`` of a cached preset's entry in ``--json``.
CACHED_KIND = "keras-hub preset (cached)"


def run(args: argparse.Namespace) -> int:
    """Print the architectures kfreeze opens by name, then the cached keras-hub presets."""
    from rich.table import Table
    from rich.text import Text

    from kfreeze_tui.core.model import catalog, hub

    entries = catalog.architectures()
    cached = hub.cached_presets()
    if args.json:
        print_json(
            [
                {
                    "name": a.name,
                    "kind": "architecture",
                    "family": a.family,
                    "default_input_shape": list(a.default_input_shape),
                }
                for a in entries
            ]
            + [
                {
                    "name": c.name,
                    "kind": CACHED_KIND,
                    "family": c.family,
                    "default_input_shape": None,
                    "handle": c.handle,
                    "path": str(c.folder),
                }
                for c in cached
            ]
        )
        return EXIT_OK
    table = Table(title=f"{len(entries)} keras.applications architectures", title_justify="left")
    table.add_column("name")
    table.add_column("family")
    table.add_column("default input", justify="right")
    for arch in entries:
        table.add_row(arch.name, arch.family, "x".join(map(str, arch.default_input_shape)))
    console = stdout_console()
    console.print(table)
    if cached:
        noun = "preset" if len(cached) == 1 else "presets"
        presets = Table(
            title=f"{len(cached)} keras-hub {noun} in the local cache (opened offline)",
            title_justify="left",
        )
        presets.add_column("name")
        presets.add_column("open as")
        for preset in cached:  # Text: names on disk are not markup
            presets.add_row(Text(preset.name), Text(preset.handle))
        console.print(presets)
    return EXIT_OK
