"""The GPUs a training job here would see and their free memory, read from ``nvidia-smi``.

Never by initialising CUDA in kfreeze's own process: that would reserve memory on a GPU that
training jobs share. ``nvidia-smi`` is another process that reads the driver and exits.

``nvidia-smi`` lists every GPU of the machine; ``CUDA_VISIBLE_DEVICES`` (the user's, not the
``-1`` kfreeze sets for its own TensorFlow) says which of them a job started from this shell
would get, and :func:`visible` keeps those, as CUDA does. A hanging ``nvidia-smi`` (a wedged
driver) is given up after :data:`TIMEOUT`, and :func:`stop_queries` ends one at once, so that
quitting the explorer never waits for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.runtime.process import child_environment, user_cuda_visible_devices

QUERY = "--query-gpu=index,name,memory.total,memory.free,uuid"
#: Seconds before a hanging nvidia-smi (a wedged driver) is given up.
TIMEOUT = 5.0
MIB = 1 << 20

_running: set[subprocess.Popen[str]] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi reports it (``index`` is nvidia-smi's)."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    uuid: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
        }


def parse(text: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free,uuid
    --format=csv,noheader,nounits`` output (MiB); lines that do not parse are skipped."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 5:
            continue
        try:
            index, total, free = int(parts[0]), int(float(parts[-3])), int(float(parts[-2]))
        except ValueError:
            continue
        name = ", ".join(parts[1:-3])  # a name with a comma in it stays whole
        gpus.append(Gpu(index, name, total * MIB, free * MIB, parts[-1]))
    return gpus


def visible(gpus: Sequence[Gpu], setting: str | None) -> list[Gpu]:
    """The GPUs ``CUDA_VISIBLE_DEVICES=setting`` leaves visible, in its order, as CUDA reads it.

    Unset (None): every GPU. Otherwise a comma-separated list of indices or GPU UUIDs (a
    UUID may be shortened to a prefix that names one GPU, ``GPU-8932f937``); CUDA stops at
    the first entry that names no GPU, so ``-1`` or an empty value leaves none, and ``1,-1,0``
    leaves GPU 1 only. Indices are nvidia-smi's, which are CUDA's when
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (and on a machine of identical GPUs). A MIG slice is not
    a GPU that nvidia-smi's query lists, so it ends the list too.

    Args:
        gpus: every GPU, from :func:`parse`.
        setting: the value of ``CUDA_VISIBLE_DEVICES``, or None when it is unset.

    Returns:
        The visible GPUs.
    """
    if setting is None:
        return list(gpus)
    chosen: list[Gpu] = []
    for entry in setting.split(","):
        entry = entry.strip().lower()
        if re.fullmatch(r"\d+", entry):
            found = [gpu for gpu in gpus if gpu.index == int(entry)]
        elif entry.startswith("gpu-"):
            found = [gpu for gpu in gpus if gpu.uuid.lower().startswith(entry)]
        else:
            found = []
        if len(found) != 1 or found[0] in chosen:
            break
        chosen.append(found[0])
    return chosen


def query(executable: str = "nvidia-smi", timeout: float = TIMEOUT) -> list[Gpu]:
    """The GPUs a job started here would see; empty when nvidia-smi is not on the PATH,
    fails, hangs for ``timeout`` seconds or is stopped by :func:`stop_queries`."""
    path = shutil.which(executable)
    if path is None:
        return []
    try:
        # A session of its own: stopping it stops whatever it started too, and nothing it
        # left behind keeps the pipes open.
        process = subprocess.Popen(
            [path, QUERY, "--format=csv,noheader,nounits"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env=child_environment(),
        )
    except OSError:
        return []
    with _lock:
        _running.add(process)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        return []
    except BaseException:  # Ctrl+C: its own session does not get the SIGINT, so end it here
        _kill(process)
        raise
    finally:
        with _lock:
            _running.discard(process)
    if process.returncode != 0:
        return []
    return visible(parse(out), user_cuda_visible_devices())


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
        process.communicate(timeout=1)


def stop_queries() -> None:
    """End every nvidia-smi still running (the app is quitting): its query returns empty."""
    with _lock:
        processes = list(_running)
    for process in processes:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
