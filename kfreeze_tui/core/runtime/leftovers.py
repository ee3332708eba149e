"""Temporary files named after the process that writes them, and the removal of those that a
killed process left behind.

kfreeze writes every file beside its target under a hidden temporary name and renames it
into place when it is complete, so a ``kill -9`` never leaves a partial target; it leaves the
temporary file instead (95 MB for ResNet50). The name carries the writer's PID and a tag of
its machine and PID namespace - ``.out.keras.kfreeze-tmp-4242-1a2b3c4d-k2j4h1.keras`` - so a
later run removes a temporary file only when it was written on this machine by a process
that no longer exists. A file of a live writer (another export running in the same folder),
of another machine (a shared network folder) or of another container is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MARK = ".kfreeze-tmp-"
_NAME = re.compile(r"^\..*\.kfreeze-tmp-(?P<pid>\d+)-(?P<tag>[0-9a-f]{8})-")


def machine_tag() -> str:
    """Eight hex digits naming this machine and PID namespace (PIDs mean nothing elsewhere)."""
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    return hashlib.sha256(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:8]


def _prefix(target: Path) -> str:
    return f".{target.name}{MARK}{os.getpid()}-{machine_tag()}-"


def temp_file(target: Path, suffix: str) -> Path:
    """A new empty file beside ``target``, named after this process, with the permissions
    any new file gets (``mkstemp`` makes it private)."""
    handle, name = tempfile.mkstemp(prefix=_prefix(target), suffix=suffix, dir=target.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def temp_dir_name(target: Path) -> Path:
    """A free name beside ``target`` for a folder written under this process's name."""
    made = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=target.parent))
    made.rmdir()  # the writer (``model.export``) creates it itself
    return made


@dataclass(frozen=True)
class Leftover:
    """A temporary file (or folder) a killed kfreeze process left, now removed."""

    path: Path
    size: int


def writer_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user's counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, and is someone else's
    return True


def disk_size(path: Path) -> int:
    """The bytes a file, or every file under a folder, takes."""
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.lstat().st_size


def remove_leftovers(folders: Iterable[Path]) -> list[Leftover]:
    """Remove the temporary files of dead kfreeze processes of this machine in ``folders``.

    Args:
        folders: where to look (the folders of the targets about to be written).

    Returns:
        What was removed; a file that cannot be removed (another user's) is left alone.
    """
    tag = machine_tag()
    removed: list[Leftover] = []
    for folder in dict.fromkeys(folders):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _NAME.match(entry.name)
            if match is None or match["tag"] != tag or writer_alive(int(match["pid"])):
                continue
            path = Path(entry.path)
            try:
                size = disk_size(path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue
            removed.append(Leftover(path, size))
    return removed


def describe(removed: list[Leftover]) -> str:
    """One line: ``removed 2 temporary files that killed kfreeze runs left (190.2 MB): ...``."""
    count = len(removed)
    total = human_size(sum(item.size for item in removed))
    names = ", ".join(str(item.path) for item in removed)
    what = "a temporary file" if count == 1 else f"{count} temporary files"
    return f"removed {what} that killed kfreeze runs left ({total}): {names}"


def human_size(size: int) -> str:
    """``95.1 MB``, ``1.4 kB``, ``512 B``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size} B"
