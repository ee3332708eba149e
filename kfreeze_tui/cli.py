"""The ``kfreeze`` command: argument parsing and the non-interactive subcommands.

Exit codes: 0 on success, 2 on bad input (a usage error or a model that cannot be loaded,
with one sentence on stderr and nothing on stdout), 1 on an unexpected internal error,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from kfreeze_tui import __version__

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Choose what to freeze and what to train when fine-tuning a Keras model.

commands:
  kfreeze [MODEL]        open the explorer on MODEL (without MODEL: pick one from a list)
  kfreeze layers MODEL   print every layer with its index, shape, params and trainable state
  kfreeze models         list the keras.applications architectures and their input sizes

MODEL is a keras.applications architecture name (resnet50, EfficientNetV2L, ...; any case)
or a .keras / .h5 file. Run `kfreeze COMMAND --help` for a command's options.
"""


class UsageError(Exception):
    """Bad command-line input that argparse cannot see (an invalid regex, say)."""


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("loading the model")
    group.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|none|PATH",
        help="weights for an architecture name: imagenet (default; downloaded by Keras), "
        "none (random), or a weights file",
    )
    group.add_argument(
        "--input-shape",
        metavar="H,W,C",
        help="input shape for an architecture name (default: its own size, e.g. 224,224,3)",
    )
    group.add_argument(
        "--include-top",
        action="store_true",
        help="keep the architecture's imagenet classifier (default: without it)",
    )
    group.add_argument(
        "--custom-objects",
        metavar="FILE.py",
        type=Path,
        help="a Python file that defines the custom layers a model file uses",
    )
    group.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers (their Python code runs on loading): trusted files only",
    )
    group.add_argument(
        "--gpu",
        action="store_true",
        help="let TensorFlow use the GPU (memory growth on); by default kfreeze stays on "
        "the CPU and leaves the GPU to training jobs",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kfreeze",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    layers = commands.add_parser(
        "layers",
        help="print every layer of a model",
        description="Print every layer of MODEL with the index model.layers gives it, its "
        "output shape, parameter count and trainable state, grouped by stage.",
    )
    layers.add_argument("model", metavar="MODEL", help="architecture name or .keras/.h5 file")
    layers.add_argument(
        "--filter", metavar="REGEX", help="only layers whose name or type matches REGEX"
    )
    layers.add_argument(
        "--expand-nested",
        action="store_true",
        help="also show the layers of nested models, under their container, with paths",
    )
    layers.add_argument("--json", action="store_true", help="print one JSON object instead")
    _add_load_options(layers)
    layers.set_defaults(handler=_cmd_layers)

    models = commands.add_parser(
        "models",
        help="list the keras.applications architectures",
        description="List the keras.applications architectures kfreeze can open by name.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=_cmd_models)
    return parser


SUBCOMMANDS = ("layers", "models")


def build_tui_parser() -> argparse.ArgumentParser:
    """The parser of ``kfreeze [MODEL]``, which opens the explorer."""
    parser = argparse.ArgumentParser(
        prog="kfreeze",
        description="Open the explorer on MODEL: an architecture name or a .keras/.h5 file. "
        "Without MODEL, a picker lists the architectures and the model files here.",
        epilog="Other commands: kfreeze layers, kfreeze models (kfreeze --help).",
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="architecture or model file")
    _add_load_options(parser)
    return parser


def _run_tui(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.runtime import RuntimeOptions, configure, stderr_kept_off_the_terminal

    options = load_options_from(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the explorer needs a terminal; use `kfreeze layers MODEL` for output to a pipe "
            "or a file"
        )
    # TensorFlow reads its settings when it is imported, which happens in the app's worker.
    configure(RuntimeOptions(gpu=args.gpu))
    from kfreeze_tui.app import make_app

    with stderr_kept_off_the_terminal():
        app = make_app(args.model, options)  # type: ignore[arg-type]
        app.run()
    return app.return_code or EXIT_OK


def load_options_from(args: argparse.Namespace) -> object:
    """The core's LoadOptions from parsed arguments (raises LoadError on a bad shape)."""
    from kfreeze_tui.core.loading import LoadOptions, parse_input_shape

    return LoadOptions(
        weights=args.weights,
        input_shape=parse_input_shape(args.input_shape) if args.input_shape else None,
        include_top=args.include_top,
        custom_objects=args.custom_objects,
        unsafe=args.unsafe,
        gpu=args.gpu,
    )


def _stdout_console() -> object:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        # A pipe or a file: wide enough that names and shapes are never cut.
        console = Console(width=max(console.width, 160))
    return console


def _warn(message: str) -> None:
    print(f"kfreeze: warning: {message}", file=sys.stderr)


def _cmd_layers(args: argparse.Namespace) -> int:
    from kfreeze_tui import report
    from kfreeze_tui.core import layers as walk_layers
    from kfreeze_tui.core.loading import load

    pattern = None
    if args.filter:
        try:
            pattern = re.compile(args.filter, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(
                f"--filter {args.filter!r} is not a valid regular expression ({exc})"
            ) from None
    loaded = load(args.model, load_options_from(args))  # type: ignore[arg-type]
    for warning in loaded.warnings:
        _warn(warning)
    info = walk_layers.walk(loaded.model, loaded.source, loaded.description, loaded.random_weights)
    rows = report.select(info, pattern, args.expand_nested)
    if args.json:
        json.dump(report.layers_document(info, rows), sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    console = _stdout_console()
    console.print(report.layer_table(info, rows, args.expand_nested))  # type: ignore[attr-defined]
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kfreeze_tui.core import catalog

    entries = catalog.architectures()
    if args.json:
        json.dump(
            [
                {
                    "name": a.name,
                    "family": a.family,
                    "default_input_shape": list(a.default_input_shape),
                }
                for a in entries
            ],
            sys.stdout,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    table = Table(title=f"{len(entries)} keras.applications architectures", title_justify="left")
    table.add_column("name")
    table.add_column("family")
    table.add_column("default input", justify="right")
    for arch in entries:
        table.add_row(arch.name, arch.family, "x".join(map(str, arch.default_input_shape)))
    _stdout_console().print(table)  # type: ignore[attr-defined]
    return EXIT_OK


def _error(message: str) -> None:
    print(f"kfreeze: error: {message}", file=sys.stderr)


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and run the command; never raises.

    Args:
        argv: the arguments after the program name.

    Returns:
        The process exit code.
    """
    from kfreeze_tui.core.loading import LoadError

    argv = list(argv)
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version")):
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
    else:
        args = build_tui_parser().parse_args(argv)
        handler = _run_tui
    try:
        return handler(args)
    except LoadError as exc:
        _error(exc.sentence)
        return EXIT_USAGE
    except UsageError as exc:
        _error(f"{exc}.")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `kfreeze layers ... | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("KFREEZE_DEBUG"):
            traceback.print_exc()
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        _error(
            f"unexpected {type(exc).__name__}: {detail} "
            "(this is a bug in kfreeze; run with KFREEZE_DEBUG=1 for the traceback)."
        )
        return EXIT_INTERNAL


def main() -> None:
    """Entry point of the ``kfreeze`` console script."""
    sys.exit(run(sys.argv[1:]))
