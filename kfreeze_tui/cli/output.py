"""What a command gives back: its exit code, its standard output and its lines on stderr.

Exit codes: 0 on success, 1 when ``kfreeze check`` found errors (or on an unexpected internal
error), 2 on bad input (a usage error or a model that cannot be loaded, with one sentence on
stderr and nothing on stdout) or an environment that cannot take the output (a full disk),
130 when interrupted. A reader that leaves early (``kfreeze layers ... | head``) is a normal
end: exit 0, nothing said.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from kfreeze_tui.core.errors import OutputError

EXIT_OK = 0
#: ``kfreeze check`` found errors in the model's set-up: the command itself worked.
EXIT_FINDINGS = 1
#: An unexpected error inside kfreeze (a bug): the same code as Python's own.
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class StandardOutput:
    """``sys.stdout`` while a command runs: a write that fails says it was standard output.

    A closed pipe stays a :class:`BrokenPipeError` (a normal end); any other failure to
    write becomes an :class:`OutputError`, so that ``kfreeze layers ... > /dev/full`` is told
    apart from an OSError inside kfreeze. Everything else is the stream's own.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(_reason(exc)) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(_reason(exc)) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _reason(exc: OSError) -> str:
    """``no space left on device``: the system's words, as the middle of a sentence."""
    text = exc.strerror or (errno.errorcode.get(exc.errno or 0) or str(exc))
    return text[:1].lower() + text[1:]


def drop_unwritten_output(stream: TextIO | None) -> None:
    """At the end of the process: what is still buffered for a reader that left (or a disk
    that is full) is dropped quietly instead of failing again when Python flushes it at exit
    (the Python documentation's note on SIGPIPE). Only the process's entry point calls this:
    it points the stream's file descriptor at /dev/null."""
    if stream is None:
        return
    try:
        stream.flush()
        return
    except (OSError, ValueError):
        pass
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass  # not a file (a test's capture buffer): nothing is flushed at exit


def error(message: str) -> None:
    print(f"kfreeze: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"kfreeze: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"kfreeze: note: {message}", file=sys.stderr)


def print_json(document: Any, indent: int | None = None) -> None:
    """One JSON document on standard output, ending in a newline."""
    import json

    json.dump(document, sys.stdout, indent=indent)
    sys.stdout.write("\n")


def stdout_console() -> Any:
    """The Rich console of a command's table: a reader that leaves is a normal end.

    Rich's own answer to a closed pipe is ``SystemExit(1)`` from inside ``print``; here it
    is the :class:`BrokenPipeError` that :func:`kfreeze_tui.cli.run` turns into a quiet
    exit 0.
    """
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the reader of standard output left")

    console = StdoutConsole()
    if not console.is_terminal:
        # A pipe or a file: wide enough that names and shapes are never cut.
        console = StdoutConsole(width=max(console.width, 160))
    return console


def dumb_terminal() -> bool:
    """``TERM=dumb`` (or ``unknown``): a terminal that cannot draw the explorer (Emacs'
    shell, some CI consoles); Rich draws no colour there either."""
    return os.environ.get("TERM", "").lower() in ("dumb", "unknown")


@contextlib.contextmanager
def load_progress_on_stderr() -> Iterator[None]:
    """A progress line on standard error while a long model load runs (nothing for a quick
    one; see :mod:`kfreeze_tui.cli.progress_line`). Written to a copy of descriptor 2 taken
    now, since kfreeze points descriptor 2 at a log while Keras loads."""
    from kfreeze_tui.cli.progress_line import LoadProgressLine
    from kfreeze_tui.core.model.load_progress import progress_delay

    try:
        sys.stderr.flush()
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a test's capture buffer)
        yield
        return
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    with os.fdopen(fd, "w", encoding=encoding, errors="replace") as stream:
        in_place = stream.isatty() and not dumb_terminal()
        with LoadProgressLine(stream, in_place=in_place, delay=progress_delay(in_place)):
            yield
