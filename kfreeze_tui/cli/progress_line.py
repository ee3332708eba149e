"""The command line's progress line for a long model load, on standard error.

A model of a few thousand layers takes Keras a minute or more to load, and a command that
prints nothing for that long looks hung. Once a load has run for a moment, a line on standard
error says how far it has got (``Loading big.keras: 1,234 of 3,000 layers, 12 s``): on a
terminal it is redrawn in place and erased when the load ends, before anything else is
printed; into a file or a pipe it is written once, as a plain line. Standard output is never
touched, so ``--json`` stays clean, and a quick load shows nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from types import TracebackType
from typing import TextIO

from kfreeze_tui.core.model import load_progress

_ERASE = "\r\x1b[K"  # back to the start of the line, and clear it


class LoadProgressLine:
    """Watches the loads of this process from a thread and writes their progress.

    Args:
        stream: where the line goes: standard error, as a stream of its own (while Keras
            loads, kfreeze points ``sys.stderr`` and descriptor 2 at a log).
        in_place: redraw one line (a terminal that understands ``\\r`` and erasing);
            otherwise write one plain line per load.
        delay: seconds a load runs before anything is shown.
        interval: seconds between redraws.
    """

    def __init__(
        self, stream: TextIO, *, in_place: bool, delay: float, interval: float = 0.25
    ) -> None:
        self.stream = stream
        self.in_place = in_place
        self.delay = delay
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._remove_listener: object = None
        self._showing = ""  # the line on the terminal now
        self._written_for: float | None = None  # the start of the load a plain line was for

    def __enter__(self) -> LoadProgressLine:
        self._remove_listener = load_progress.on_load_end(self.load_ended)
        self._thread = threading.Thread(target=self._run, name="kfreeze-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if callable(self._remove_listener):
            self._remove_listener()
        self.load_ended()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        """Show the load in progress, if it has run long enough."""
        with self._lock:  # held while asking, so a load that ends meanwhile is not redrawn
            status = load_progress.current()
            if status is None or status.elapsed < self.delay:
                return
            if self.in_place:
                text = self._fit(status.text())
                if text != self._showing:
                    self._write(_ERASE + text)
                    self._showing = text
            elif self._written_for != status.started:
                self._write(status.text() + "\n")
                self._written_for = status.started

    def load_ended(self) -> None:
        """Erase the line (called in the loading thread, before the load returns)."""
        with self._lock:
            if self._showing:
                self._write(_ERASE)
                self._showing = ""

    def _fit(self, text: str) -> str:
        """The text cut to the terminal's width, so that erasing it erases all of it."""
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            return text
        if width < 20 or len(text) < width:  # a width of 0: a terminal that does not say
            return text
        return text[: width - 2] + "…"

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal ends nothing
            self.stream.write(text)
            self.stream.flush()
