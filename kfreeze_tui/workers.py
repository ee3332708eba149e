"""One place where a failed worker becomes a sentence on screen.

Textual tells a worker's state to the node that started it (a screen or the app), and does
not bubble it. Every node that starts workers mixes in :class:`ReportsWorkerFailures`, so a
worker's result is applied on the UI thread (``worker_done``), and a worker that fails is
reported the same way everywhere: the node may show the sentence where
the result would have gone (``worker_failed``), and the app shows it as an error
notification, or opens the model again when its cached layer table turned out stale. No
worker needs a broad ``try/except`` of its own.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState

from kfreeze_tui.core.errors import KfreezeError, first_line
from kfreeze_tui.core.wording import sentence


def failure_sentence(worker: Worker[object]) -> str:
    """What went wrong in a failed worker, in one sentence."""
    error = worker.error
    if isinstance(error, KfreezeError):
        return error.sentence
    if error is None:
        return f"{worker.description or 'a background task'} failed."
    what = worker.description or "a background task"
    return sentence(
        f"{what[:1].upper()}{what[1:]} failed: {type(error).__name__}: {first_line(error)}"
    )


class ReportsWorkerFailures:
    """Mixin for screens and the app: report failed workers through the app, and hand a
    finished worker's result to the node that started it, on the UI thread."""

    def worker_failed(self, worker: Worker[object], sentence: str) -> None:
        """Show ``sentence`` where the worker's result would have gone (optional)."""

    def worker_done(self, worker: Worker[object]) -> None:
        """Apply ``worker.result`` (optional). Runs on the UI thread: a worker returns what
        it found and never writes the app's or the session's state from its own thread."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Textual's handler by name (a mixin's ``@on`` would not be registered)."""
        if event.state is WorkerState.SUCCESS:
            self.worker_done(event.worker)
            return
        if event.state is not WorkerState.ERROR:
            return
        sentence = failure_sentence(event.worker)
        self.worker_failed(event.worker, sentence)
        self.app.report_failure(event.worker, sentence)  # type: ignore[attr-defined]
