"""``kfreeze cache [clear]``: where the layer-table cache is and how big; clear empties it."""

from __future__ import annotations

import argparse

from kfreeze_tui.cli.output import EXIT_OK, note


def run(args: argparse.Namespace) -> int:
    """Say where the cache is and how big, or clear it."""
    from kfreeze_tui.core.model import cache
    from kfreeze_tui.core.runtime.leftovers import describe

    removed = cache.remove_leftover_entries()
    if removed:
        note(describe(removed))
    folder = cache.cache_dir()
    if args.action == "clear":
        count, size = cache.clear()
        print(f"removed {count} cached layer table(s), {size / 1e6:.1f} MB, from {folder}")
        return EXIT_OK
    count, size = cache.usage()
    print(f"{folder}: {count} cached layer table(s), {size / 1e6:.1f} MB")
    return EXIT_OK
