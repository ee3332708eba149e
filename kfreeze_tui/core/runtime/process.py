"""TensorFlow start-up: quiet, on the CPU unless asked, and imported only when needed.

TensorFlow prints C++ and absl log lines straight to file descriptor 2 before any Python
logging is set up, and on a GPU box it reserves all GPU memory at the first op. Both have to
be handled *before* TensorFlow is imported, which is what this module owns. Nothing here
imports TensorFlow at module import time.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import IO, TextIO

_lock = threading.RLock()
_captured: list[str] = []
_ui_sink: IO[bytes] | None = None


@dataclass(frozen=True)
class RuntimeOptions:
    """How TensorFlow may use the machine.

    Attributes:
        gpu: let TensorFlow see the GPUs (with memory growth on); by default kfreeze hides
            them so that inspecting a model never reserves memory on a shared GPU box.
    """

    gpu: bool = False


_configured: RuntimeOptions | None = None
#: What ``CUDA_VISIBLE_DEVICES`` was before :func:`configure` hid the GPUs from TensorFlow
#: (None: unset), and the value it set instead.
_user_visible_devices: str | None = None
_HIDDEN = "-1"
_hid_devices = False

#: Keras builds and walks graphs recursively: a user model of a few thousand layers overflows
#: Python's default limit of 1,000 frames.
RECURSION_LIMIT = 20_000


def tensorflow_imported() -> bool:
    """Whether TensorFlow is already in this process (then its settings are not ours)."""
    return "tensorflow" in sys.modules


def configure(options: RuntimeOptions) -> None:
    """Set the environment TensorFlow reads at import time.

    Has no effect once TensorFlow is imported: a training script that imported it first
    owns its settings, and kfreeze must not fight them.

    Args:
        options: whether the GPU may be used.
    """
    global _configured, _user_visible_devices, _hid_devices
    with _lock:
        if tensorflow_imported():
            _configured = _configured or options
            return
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        if options.gpu:
            os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        else:
            # Hiding the devices is the only way to be sure CUDA is never initialised.
            if not _hid_devices:
                _user_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
                _hid_devices = True
            os.environ["CUDA_VISIBLE_DEVICES"] = _HIDDEN
        _configured = options


def user_cuda_visible_devices() -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as the user set it (None: unset): the GPUs a training job
    started from the same shell gets, even after :func:`configure` hid them from kfreeze's
    own TensorFlow. A value set since (by a test, say) is taken as it is."""
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    with _lock:
        if _hid_devices and current == _HIDDEN:
            return _user_visible_devices
    return current


def captured_log() -> str:
    """Everything TensorFlow and Keras printed while kfreeze had their output captured."""
    with _lock:
        return "".join(_captured) + _read_ui_sink()


def _read_ui_sink() -> str:
    if _ui_sink is None:
        return ""
    # pread leaves the shared file offset alone: TensorFlow may be writing at this moment.
    fd = _ui_sink.fileno()
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0).decode("utf-8", "replace")


@contextlib.contextmanager
def stderr_kept_off_the_terminal() -> Iterator[TextIO]:
    """For the lifetime of a full-screen UI: file descriptor 2 goes to a log, not the screen.

    TensorFlow may write to file descriptor 2 at any moment (at import, at its first op, on
    saving), from any thread, and a line written there lands in the middle of the UI. So for
    as long as the UI runs, descriptor 2 points at a temporary log, and the UI draws on a
    duplicate of the terminal, which replaces ``sys.__stderr__`` (where Textual's driver
    writes). :func:`captured_log` reads the log for the error screen.

    Yields:
        The terminal, as a text stream.
    """
    global _ui_sink
    with _lock:
        sys.stderr.flush()
        terminal_fd = os.dup(2)
        encoding = getattr(sys.__stderr__, "encoding", None) or "utf-8"
        terminal = os.fdopen(terminal_fd, "w", encoding=encoding, errors="replace")
        sink = tempfile.TemporaryFile(mode="a+b")  # O_APPEND: every writer appends
        original_dunder, original_stderr = sys.__stderr__, sys.stderr
        os.dup2(sink.fileno(), 2)
        sys.__stderr__ = terminal
        sys.stderr = terminal
        _ui_sink = sink
    try:
        yield terminal
    finally:
        with _lock:
            with contextlib.suppress(Exception):
                terminal.flush()
            os.dup2(terminal.fileno(), 2)
            sys.__stderr__, sys.stderr = original_dunder, original_stderr
            _captured.append(_read_ui_sink())
            _ui_sink = None
            sink.close()
            terminal.close()


@contextlib.contextmanager
def native_output_captured(stdout: bool = True) -> Iterator[None]:
    """Send file descriptors 2 (and 1) to a temporary file for the duration.

    Redirecting ``sys.stderr`` is not enough: TensorFlow's C++ code writes to the file
    descriptor itself. What was caught is kept for :func:`captured_log`.

    Args:
        stdout: capture file descriptor 1 as well (Keras prints download progress there).
    """
    if _ui_sink is not None:
        # A full-screen UI is running: descriptor 2 already goes to the log, and swapping
        # descriptors or sys.stdout from a worker thread would tear the UI's own output.
        yield
        return
    fds = [2, 1] if stdout else [2]
    with _lock:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sink = tempfile.TemporaryFile(mode="w+b")
        saved = {fd: os.dup(fd) for fd in fds}
        py_sink = io.StringIO()
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            redirect_out = (
                contextlib.redirect_stdout(py_sink) if stdout else contextlib.nullcontext()
            )
            with redirect_out, contextlib.redirect_stderr(py_sink):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            _captured.append(sink.read().decode("utf-8", "replace"))
            _captured.append(py_sink.getvalue())
            sink.close()


def import_keras(options: RuntimeOptions | None = None) -> ModuleType:
    """Import Keras (and TensorFlow) quietly, configured for the CPU unless asked otherwise.

    Also raises the recursion limit, which deep models need.

    Args:
        options: runtime options; the first call's options win.

    Returns:
        The ``keras`` module.
    """
    if "keras" in sys.modules and tensorflow_imported():
        _raise_recursion_limit()
        return sys.modules["keras"]
    configure(options or RuntimeOptions())
    with native_output_captured():
        import keras
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        with contextlib.suppress(Exception):
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        if _configured is not None and _configured.gpu:
            for gpu in tf.config.list_physical_devices("GPU"):
                with contextlib.suppress(RuntimeError):
                    tf.config.experimental.set_memory_growth(gpu, True)
    # After the import: importing TensorFlow sets the limit to 3,000 itself.
    _raise_recursion_limit()
    return keras


def _raise_recursion_limit() -> None:
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
