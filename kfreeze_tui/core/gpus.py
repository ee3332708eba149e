"""The GPUs of the machine and their free memory, read from ``nvidia-smi``.

Never by initialising CUDA in kfreeze's own process: that would reserve memory on a GPU that
training jobs share. ``nvidia-smi`` is another process that reads the driver and exits.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

QUERY = "--query-gpu=index,name,memory.total,memory.free"
#: Seconds before a hanging nvidia-smi (a wedged driver) is given up.
TIMEOUT = 5.0
MIB = 1 << 20


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi reports it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
        }


def parse(text: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free
    --format=csv,noheader,nounits`` output (MiB); lines that do not parse are skipped."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            index, total, free = int(parts[0]), int(float(parts[2])), int(float(parts[3]))
        except ValueError:
            continue
        gpus.append(Gpu(index, parts[1], total * MIB, free * MIB))
    return gpus


def query(executable: str = "nvidia-smi") -> list[Gpu]:
    """The machine's GPUs; empty when nvidia-smi is not on the PATH or fails."""
    path = shutil.which(executable)
    if path is None:
        return []
    try:
        result = subprocess.run(
            [path, QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse(result.stdout) if result.returncode == 0 else []
