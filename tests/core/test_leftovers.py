"""Temporary files of killed kfreeze processes: removed by the next export, convert or cache
write in their folder, and said; those of a live process, another machine or an older
kfreeze are left alone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.runtime.leftovers import machine_tag, remove_leftovers

MB = 1_000_000


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()  # reaped: no process has this PID now (until the kernel hands it out again)
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


def _temp(folder: Path, pid: int, tag: str, size: int, target: str = "out.keras") -> Path:
    path = folder / f".{target}.kfreeze-tmp-{pid}-{tag}-x1y2z3.keras"
    path.write_bytes(b"\0" * size)
    return path


def test_only_the_files_of_dead_writers_here_are_removed(tmp_path: Path, live_pid: int) -> None:
    dead = _dead_pid()
    gone = _temp(tmp_path, dead, machine_tag(), 2 * MB)
    folder = tmp_path / f".saved.kfreeze-tmp-{dead}-{machine_tag()}-abc"
    (folder / "variables").mkdir(parents=True)  # a SavedModel a killed export was writing
    (folder / "variables" / "data").write_bytes(b"\0" * MB)
    kept = [
        _temp(tmp_path, live_pid, machine_tag(), 10),  # an export running now
        _temp(tmp_path, dead, "0123abcd", 10),  # another machine's, on a shared folder
        tmp_path / ".out.keras.k2j4.kfreeze-tmp.keras",  # an older kfreeze's: no PID
        tmp_path / "out.keras",
    ]
    kept[2].write_bytes(b"")
    kept[3].write_bytes(b"")
    removed = remove_leftovers([tmp_path, tmp_path])
    assert sorted((item.path, item.size) for item in removed) == sorted(
        [(gone, 2 * MB), (folder, MB)]
    )
    assert not gone.exists() and not folder.exists()
    assert all(path.exists() for path in kept)


def test_the_next_export_removes_them_and_says_so(
    small_model: Any, tmp_path: Path, live_pid: int
) -> None:
    from kfreeze_tui.core.runtime.leftovers import describe
    from kfreeze_tui.core.train.export import ExportRequest, export

    gone = _temp(tmp_path, _dead_pid(), machine_tag(), 3 * MB, target="other.keras")
    kept = _temp(tmp_path, live_pid, machine_tag(), 10)
    result = export(small_model, ExportRequest(tmp_path / "new.keras"))
    assert [(item.path, item.size) for item in result.removed] == [(gone, 3 * MB)]
    assert describe(result.removed) == (
        f"removed a temporary file that killed kfreeze runs left (3.0 MB): {gone}"
    )
    assert kept.exists() and (tmp_path / "new.keras").is_file()
    # Its own temporary files carry its PID and are gone once it is done.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, "new.keras"])


def test_convert_and_the_cache_remove_them_too(
    small_model_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kfreeze_tui.cli import run
    from kfreeze_tui.core.model import cache
    from kfreeze_tui.core.train.convert import convert

    gone = _temp(tmp_path, _dead_pid(), machine_tag(), MB)
    result = convert(str(small_model_file), tmp_path / "converted.keras")
    assert [item.path for item in result.removed] == [gone]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache.cache_dir().mkdir(parents=True)
    entry = _temp(cache.cache_dir(), _dead_pid(), machine_tag(), 5000, target="0a1b.json")
    assert [item.path for item in cache.remove_leftover_entries()] == [entry]
    entry = _temp(cache.cache_dir(), _dead_pid(), machine_tag(), 5000, target="0a1b.json")
    capsys.readouterr()
    assert run(["cache"]) == 0  # `kfreeze cache` says what it removed
    assert not entry.exists()
    assert capsys.readouterr().err == (
        f"kfreeze: note: removed a temporary file that killed kfreeze runs left (5.0 kB): {entry}\n"
    )
