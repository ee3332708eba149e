"""How far a model load has got, for a progress line while it runs.

Keras loads a model in one call that says nothing until it returns, and a model of a few
thousand layers takes a minute or more. :func:`tracked` marks a load in the thread that runs
it; :func:`current` says, from any thread, how far it has got: the layers Keras has read,
connected or given their weights (read from the loading thread's stack by
:func:`kfreeze_tui.core.runtime.keras_private.load_position`), or else the number of layers the
file's config holds and the time so far. Listeners hear when a load ends, in the loading
thread, before the load returns: a progress line is gone before anything else is printed.
Nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kfreeze_tui.core.runtime.keras_private import load_position

#: Seconds a load runs before its progress is shown: a quick load shows nothing.
DEFAULT_DELAY = 1.5
#: The same into a file or a pipe, where the one plain line stays in a log for good: only a
#: load that is really long (a 3,000-layer model takes minutes) is worth a line there.
PLAIN_DELAY = 10.0
#: The environment variable that changes :data:`DEFAULT_DELAY` (seconds, e.g. ``0``).
DELAY_VARIABLE = "KFREEZE_PROGRESS_DELAY"


def progress_delay(in_place: bool = True) -> float:
    """Seconds before a load's progress is shown: ``KFREEZE_PROGRESS_DELAY``, or 1.5 on a
    terminal (the line is redrawn, then erased) and 10 into a file or a pipe."""
    default = DEFAULT_DELAY if in_place else PLAIN_DELAY
    try:
        delay = float(os.environ.get(DELAY_VARIABLE, default))
    except ValueError:
        return default
    return delay if delay >= 0 else default


_STAGE_WORDS = {"layers": "", "connecting": "connecting ", "weights": "reading weights, "}


@dataclass(frozen=True)
class LoadStatus:
    """A load in progress.

    Attributes:
        verb: ``Loading`` (a file) or ``Building`` (an architecture).
        name: the file's name or the architecture's.
        started: when it started (``time.monotonic()``); tells one load from the next.
        elapsed: seconds since.
        total: layers in the model (top level), when known.
        done: layers done in the current stage, when known.
        stage: ``layers`` (made from their configs), ``connecting`` (called on their
            inputs) or ``weights`` (given their weights); None when not known.
    """

    verb: str
    name: str
    started: float
    elapsed: float
    total: int | None = None
    done: int | None = None
    stage: str | None = None

    def detail(self) -> str:
        """``1,234 of 3,000 layers, 12 s``: how far it has got, and since when."""
        seconds = f"{int(self.elapsed)} s"
        if self.stage is not None and self.done is not None and self.total:
            return f"{_STAGE_WORDS[self.stage]}{self.done:,} of {self.total:,} layers, {seconds}"
        if self.total:
            return f"{self.total:,} layers, {seconds}"
        return seconds

    def text(self) -> str:
        """``Loading big.keras: 1,234 of 3,000 layers, 12 s``."""
        return f"{self.verb} {self.name}: {self.detail()}"


@dataclass
class _Load:
    verb: str
    name: str
    thread_id: int
    started: float
    total: int | None = None
    furthest: dict[str, int] = field(default_factory=dict)
    """The most layers seen done in each stage: Keras walks other lists of the model's
    objects after its layers, and a count that went back would read as a fault."""


_lock = threading.Lock()
_loads: dict[int, _Load] = {}
_listeners: list[Callable[[], None]] = []


@contextlib.contextmanager
def tracked(verb: str, name: str) -> Iterator[None]:
    """Mark the load that runs in this thread for the duration (a load within it is part
    of it); the listeners hear when it ends, however it ends."""
    thread_id = threading.get_ident()
    with _lock:
        outermost = thread_id not in _loads
        if outermost:
            _loads[thread_id] = _Load(verb, name, thread_id, time.monotonic())
    try:
        yield
    finally:
        if outermost:
            with _lock:
                del _loads[thread_id]
                listeners = list(_listeners)
            for listener in listeners:
                listener()


def set_total(total: int | None) -> None:
    """The number of layers of the model this thread is loading (read from its config)."""
    with _lock:
        load = _loads.get(threading.get_ident())
        if load is not None:
            load.total = total


def current() -> LoadStatus | None:
    """The load in progress (the first started, if several are), or None."""
    with _lock:
        load = min(_loads.values(), key=lambda each: each.started, default=None)
        if load is None:
            return None
        status = LoadStatus(
            load.verb, load.name, load.started, time.monotonic() - load.started, load.total
        )
    position = load_position(load.thread_id)
    if position is None:
        return status
    stage, done, total = position
    with _lock:
        done = load.furthest[stage] = max(done, load.furthest.get(stage, 0))
    return LoadStatus(status.verb, status.name, status.started, status.elapsed, total, done, stage)


def on_load_end(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` (in the loading thread) each time a load ends.

    Returns:
        A function that removes the listener.
    """
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            with contextlib.suppress(ValueError):
                _listeners.remove(listener)

    return remove


def top_level_count(config: Any) -> int | None:
    """The number of layers a model config (``config.json``, an HDF5 ``model_config``)
    holds at its top level; None when it does not say."""
    if not isinstance(config, dict):
        return None
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    return len(layers) if isinstance(layers, list) else None
