"""TensorFlow start-up: quiet, on the CPU unless asked, and imported only when needed.

TensorFlow prints C++ and absl log lines straight to file descriptor 2 before any Python
logging is set up, and on a GPU box it reserves all GPU memory at the first op. Both have to
be handled *before* TensorFlow is imported, which is what this module owns. Nothing here
imports TensorFlow at module import time.

Process-wide settings belong to whoever owns the process. The ``kfreeze`` command owns it and
says so by calling :func:`configure` (GPUs hidden unless ``--gpu``, a recursion limit raised
for good, a quiet environment that child processes inherit). Used as a library inside
someone's training process, kfreeze leaves ``os.environ`` as it found it (never touching
``CUDA_VISIBLE_DEVICES``) and raises the recursion limit only inside :func:`deep_recursion`,
putting it back on the way out. What it keeps of TensorFlow's captured output is bounded.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import IO, TextIO

_lock = threading.RLock()
#: How many captured chunks (one per capture and stream) :func:`captured_log` keeps, and how
#: many characters of each: the error screen needs what the last loads printed, not every
#: line of a long session.
CAPTURED_CHUNKS = 64
CAPTURED_CHUNK_CHARS = 20_000
_captured: deque[str] = deque(maxlen=CAPTURED_CHUNKS)
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
#: The kfreeze command (not a library caller) owns this process: :func:`configure` ran.
_owns_process = False

#: Keras builds and walks graphs recursively: a user model of a few thousand layers overflows
#: Python's default limit of 1,000 frames.
RECURSION_LIMIT = 20_000


def tensorflow_imported() -> bool:
    """Whether TensorFlow is already in this process (then its settings are not ours)."""
    return "tensorflow" in sys.modules


def configure(options: RuntimeOptions) -> None:
    """Take the process for the kfreeze command: set the environment TensorFlow reads at
    import time, and let :func:`import_keras` raise the recursion limit for good.

    Only the command's entry calls this; a library caller's process is left as it is. The
    user's ``CUDA_VISIBLE_DEVICES`` is kept when the GPU may be used; without the GPU it is
    hidden from kfreeze's own TensorFlow and remembered (:func:`user_cuda_visible_devices`,
    :func:`child_environment`). The environment is not touched once TensorFlow is imported:
    a script that imported it first owns its settings, and kfreeze must not fight them.

    Args:
        options: whether the GPU may be used.
    """
    global _configured, _user_visible_devices, _hid_devices, _owns_process
    with _lock:
        _owns_process = True
        if tensorflow_imported():
            _configured = _configured or options
            return
        _quiet_environment()
        if options.gpu:
            os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        else:
            # Hiding the devices is the only way to be sure CUDA is never initialised.
            if not _hid_devices:
                _user_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
                _hid_devices = True
            os.environ["CUDA_VISIBLE_DEVICES"] = _HIDDEN
        _configured = options


#: What Keras and TensorFlow read from the environment at import time, and kfreeze's value
#: where the user has set none: the backend, and quiet C++ and gRPC logs.
QUIET_ENVIRONMENT = {
    "KERAS_BACKEND": "tensorflow",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
}


def _quiet_environment() -> None:
    """The backend and TensorFlow's log levels, where the user has not set them."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def _environment_for_import() -> Iterator[None]:
    """The quiet environment while Keras and TensorFlow are imported: for good in the
    kfreeze command's process, for the import only in a library caller's (whose
    ``os.environ`` is then as it was)."""
    if _owns_process:
        _quiet_environment()
        yield
        return
    found = {name: os.environ.get(name) for name in QUIET_ENVIRONMENT}
    _quiet_environment()
    try:
        yield
    finally:
        for name, value in found.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def child_environment() -> dict[str, str]:
    """The environment for a process kfreeze starts: its own, with the user's
    ``CUDA_VISIBLE_DEVICES`` back in place if :func:`configure` hid the GPUs."""
    env = dict(os.environ)
    user = user_cuda_visible_devices()
    if user is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = user
    return env


def user_cuda_visible_devices() -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as the user set it (None: unset): the GPUs a training job
    started from the same shell gets, even after :func:`configure` hid them from kfreeze's
    own TensorFlow. A value set since (by a test, say) is taken as it is."""
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    with _lock:
        if _hid_devices and current == _HIDDEN:
            return _user_visible_devices
    return current


def _keep(text: str) -> None:
    """Keep a captured chunk for :func:`captured_log`: its last characters, the oldest chunk
    making way once there are :data:`CAPTURED_CHUNKS`."""
    if not text:
        return
    if len(text) > CAPTURED_CHUNK_CHARS:
        text = "[...]\n" + text[-CAPTURED_CHUNK_CHARS:]
    with _lock:
        _captured.append(text)


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
            _keep(_read_ui_sink())
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
            _keep(sink.read().decode("utf-8", "replace"))
            _keep(py_sink.getvalue())
            sink.close()


def import_keras(options: RuntimeOptions | None = None) -> ModuleType:
    """Import Keras (and TensorFlow) quietly; in the kfreeze command's process on the CPU
    unless ``--gpu`` (see :func:`configure`).

    Under the kfreeze command (:func:`configure` ran) this also raises the recursion limit
    for good, which deep models need; for a library caller it does so only inside
    :func:`deep_recursion`, and leaves ``os.environ`` as it found it (``CUDA_VISIBLE_DEVICES``
    is never touched; the backend and log levels are set for the import only).

    Args:
        options: runtime options; the first options given (by :func:`configure` or here) win.

    Returns:
        The ``keras`` module.
    """
    global _configured
    if "keras" in sys.modules and tensorflow_imported():
        _after_import()
        return sys.modules["keras"]
    with _lock:
        if _configured is None:
            _configured = options or RuntimeOptions()
    with native_output_captured(), _environment_for_import():
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
    _after_import()
    return keras


_recursion_lock = threading.Lock()
#: How many :func:`deep_recursion` blocks are running (in any thread), and the limit to put
#: back when the last one ends (None: nothing to put back).
_deep_blocks = 0
_limit_before: int | None = None


def _after_import() -> None:
    """Importing TensorFlow sets the recursion limit to 3,000 itself: raise it again where
    kfreeze may (the command's process, or inside a :func:`deep_recursion` block), and take
    TensorFlow's value as the one a block puts back."""
    global _limit_before
    with _recursion_lock:
        current = sys.getrecursionlimit()
        if _owns_process:
            _raise_recursion_limit()
        elif _deep_blocks and current < RECURSION_LIMIT:
            _limit_before = current
            _raise_recursion_limit()


@contextlib.contextmanager
def deep_recursion() -> Iterator[None]:
    """Room for Keras to build, load and save deep models, for the duration.

    Raises the recursion limit to :data:`RECURSION_LIMIT` and, when the last such block (in
    any thread) ends, puts back the limit it found, unless someone changed it meanwhile or
    the kfreeze command owns the process. Usable as a decorator.
    """
    global _deep_blocks, _limit_before
    with _recursion_lock:
        if _deep_blocks == 0:
            current = sys.getrecursionlimit()
            _limit_before = current if current < RECURSION_LIMIT else None
        _deep_blocks += 1
        _raise_recursion_limit()
    try:
        yield
    finally:
        with _recursion_lock:
            _deep_blocks -= 1
            if _deep_blocks == 0 and _limit_before is not None:
                if not _owns_process and sys.getrecursionlimit() == RECURSION_LIMIT:
                    sys.setrecursionlimit(_limit_before)
                _limit_before = None


def _raise_recursion_limit() -> None:
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
