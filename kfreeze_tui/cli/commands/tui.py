"""``kfreeze [MODEL]``: the explorer, full-screen; on a terminal that cannot draw it, the layer
table that ``kfreeze layers`` prints."""

from __future__ import annotations

import argparse
import os
import sys

from kfreeze_tui.cli.arguments import load_options_from
from kfreeze_tui.cli.output import dumb_terminal, load_progress_on_stderr, note
from kfreeze_tui.core.errors import UsageError


def run(args: argparse.Namespace) -> int:
    """Open the explorer (or print the layer table where it cannot draw)."""
    from kfreeze_tui.core.errors import ConfigError
    from kfreeze_tui.core.runtime.process import stderr_kept_off_the_terminal
    from kfreeze_tui.keymap import read_keymap

    options = load_options_from(args)
    try:
        keymap = read_keymap()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the explorer needs a terminal; use `kfreeze layers MODEL` for output to a pipe "
            "or a file"
        )
    if dumb_terminal():
        return _layer_table_instead(args)
    from kfreeze_tui.app import make_app, run_app

    with stderr_kept_off_the_terminal():
        app = make_app(args.model, options, keymap=keymap, use_cache=not args.no_cache)
        return run_app(app)


def _layer_table_instead(args: argparse.Namespace) -> int:
    """``TERM=dumb``: the layer table for a model named, a usage error without one."""
    from kfreeze_tui.cli.commands import layers

    term = os.environ.get("TERM", "")
    if not args.model:
        raise UsageError(
            f"the explorer needs a terminal that can draw full-screen (TERM={term} "
            "cannot); use `kfreeze layers MODEL` here, or a terminal such as xterm"
        )
    note(
        f"the explorer needs a terminal that can draw full-screen (TERM={term} cannot); "
        "here is the layer table, as `kfreeze layers` prints it"
    )
    table_args = argparse.Namespace(
        **vars(args), filter=None, expand_nested=False, boundary=None, json=False
    )
    with load_progress_on_stderr():
        return layers.run(table_args)
