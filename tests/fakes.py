"""Stand-ins for programs this machine lacks, written as real executables on the PATH.

The machine has no GPU, so the tests put a small ``nvidia-smi`` of their own first on the
PATH: kfreeze runs it as it would run the real one, in a process of its own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def nvidia_smi(folder: Path, body: str) -> str:
    """Write an executable ``nvidia-smi`` into ``folder`` that runs the shell ``body``.

    Returns:
        A PATH that finds it before any real one.
    """
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"
