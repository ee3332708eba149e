"""The ``kfreeze`` command: :func:`main` for the console script, :func:`run` for everything else.

:func:`run` parses the arguments (:mod:`kfreeze_tui.cli.parser`), imports the module of the
command asked for (:mod:`kfreeze_tui.cli.commands`; nothing else is imported, so ``kfreeze
--help`` stays cheap) and turns every error into one sentence on stderr and an exit code (see
:mod:`kfreeze_tui.cli.output`), in one place. It leaves the process as it found it
(standard streams, file descriptors, environment, recursion limit), so it can run inside
another program, or a test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

from kfreeze_tui.cli.output import (
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    StandardOutput,
    drop_unwritten_output,
    error,
    load_progress_on_stderr,
)
from kfreeze_tui.cli.parser import SUBCOMMANDS, build_parser, build_tui_parser
from kfreeze_tui.core.errors import KfreezeError, OutputError, describe

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "build_tui_parser",
    "main",
    "run",
]


def _parse(argv: list[str]) -> argparse.Namespace:
    """The parsed arguments; ``args.command`` names the command (``tui``: the explorer)."""
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version")):
        return build_parser().parse_args(argv)
    return build_tui_parser().parse_args(argv)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` names, importing its module only now."""
    command = importlib.import_module(f"kfreeze_tui.cli.commands.{args.command}")
    if args.command == "tui":
        return command.run(args)  # the explorer's terminal is the app's own business
    with load_progress_on_stderr():
        return command.run(args)


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """The environment and the recursion limit as they were: a command (TensorFlow's start-up
    set-up, a deep model) may change them while it runs."""
    environ = dict(os.environ)
    limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        for name in [name for name in os.environ if name not in environ]:
            del os.environ[name]
        for name, value in environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        sys.setrecursionlimit(limit)


def run(argv: Sequence[str], owns_process: bool = False) -> int:
    """Parse ``argv`` and run the command; never raises.

    Args:
        argv: the arguments after the program name.
        owns_process: this is the ``kfreeze`` command's own process (:func:`main`), so
            process-wide settings are its to make (GPUs hidden unless ``--gpu``, a quiet
            TensorFlow, a higher recursion limit); a caller running a command inside its own
            process (a test, a notebook) finds them as they were when it returns.

    Returns:
        The process exit code.
    """
    if owns_process:
        return _run(list(argv), owns_process=True)
    with _process_state_kept():
        return _run(list(argv))


def _run(argv: list[str], owns_process: bool = False) -> int:
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = StandardOutput(stdout)  # type: ignore[assignment]
    try:
        try:
            args = _parse(argv)
        except SystemExit as exc:  # --help, --version or a usage error, printed by argparse
            if sys.stdout is not None:
                sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if owns_process:
            from kfreeze_tui.core.runtime.process import RuntimeOptions, configure

            # Before any handler: TensorFlow reads them when it is imported (for the
            # explorer, in the app's worker).
            configure(RuntimeOptions(gpu=bool(getattr(args, "gpu", False))))
        if args.command == "tui":
            sys.stdout = stdout
        code = _dispatch(args)
        if sys.stdout is not None:
            sys.stdout.flush()  # here, where a closed pipe or a full disk is still caught
        return code
    except OutputError as exc:
        error(f"could not write to standard output: {exc.message}; the output is incomplete.")
        return EXIT_USAGE
    except KfreezeError as exc:  # every error kfreeze raises on purpose
        error(exc.sentence)
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `kfreeze layers ... | head`: the reader left; that is not an error.
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("KFREEZE_DEBUG"):
            traceback.print_exc()
        error(describe(exc))
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout


def main() -> None:
    """Entry point of the ``kfreeze`` console script."""
    code = run(sys.argv[1:], owns_process=True)
    # What a reader that left (or a full disk) did not take would fail again when Python
    # flushes it at exit: dropped quietly, here, where the process ends.
    drop_unwritten_output(sys.stdout)
    sys.exit(code)
