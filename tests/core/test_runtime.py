"""Process-wide settings: the kfreeze command takes them, kfreeze used as a library leaves
them as it found them, and the captured TensorFlow output stays bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core import runtime
from kfreeze_tui.core.runtime import (
    CAPTURED_CHUNK_CHARS,
    CAPTURED_CHUNKS,
    RECURSION_LIMIT,
    RuntimeOptions,
    captured_log,
    deep_recursion,
    native_output_captured,
)


def test_a_library_load_leaves_the_recursion_limit_as_it_was(
    keras: Any, small_model_file: Path
) -> None:
    from kfreeze_tui.core.loading import LoadOptions, load

    before = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(2_500)
        assert load(str(small_model_file), LoadOptions(weights="none")).model is not None
        assert sys.getrecursionlimit() == 2_500
        with deep_recursion():
            assert sys.getrecursionlimit() == RECURSION_LIMIT
            with deep_recursion():
                pass
            assert sys.getrecursionlimit() == RECURSION_LIMIT  # the outer block still runs
        assert sys.getrecursionlimit() == 2_500
    finally:
        sys.setrecursionlimit(before)


def test_a_library_load_in_a_fresh_process_keeps_the_users_settings(
    small_model_file: Path,
) -> None:
    # A fresh process: TensorFlow is first imported by kfreeze's own load.
    probe = (
        "import json, os, sys\n"
        "from kfreeze_tui.core.loading import LoadOptions, load\n"
        "from kfreeze_tui.core.runtime import import_keras\n"
        "import_keras()\n"
        "after_import = sys.getrecursionlimit()\n"
        f"load({str(small_model_file)!r}, LoadOptions(weights='none'))\n"
        "print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), after_import,"
        " sys.getrecursionlimit()]))\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3", "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    devices, after_import, after_load = json.loads(result.stdout.splitlines()[-1])
    assert devices == "3"  # the user's GPU 3, not hidden
    assert after_load == after_import < RECURSION_LIMIT  # as TensorFlow's import left it


@pytest.fixture
def fresh_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module as a new ``kfreeze`` process finds it, put back afterwards: TensorFlow not
    imported yet (configure reads only ``sys.modules`` for that; nothing here imports it)."""
    for name in ("_configured", "_user_visible_devices", "_hid_devices", "_owns_process"):
        monkeypatch.setattr(runtime, name, getattr(runtime, name))
    monkeypatch.setattr(runtime, "_configured", None)
    monkeypatch.setattr(runtime, "_hid_devices", False)
    monkeypatch.delitem(sys.modules, "tensorflow")


@pytest.mark.usefixtures("fresh_command")
def test_the_command_keeps_the_users_gpus_with_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    runtime.configure(RuntimeOptions(gpu=True))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert runtime.child_environment()["CUDA_VISIBLE_DEVICES"] == "3"


@pytest.mark.usefixtures("fresh_command")
@pytest.mark.parametrize("users", ["3", None])
def test_the_command_hides_gpus_without_gpu_but_not_from_children(
    monkeypatch: pytest.MonkeyPatch, users: str | None
) -> None:
    if users is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", users)
    runtime.configure(RuntimeOptions(gpu=False))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "-1"  # kfreeze's own TensorFlow sees none
    assert runtime.user_cuda_visible_devices() == users
    assert runtime.child_environment().get("CUDA_VISIBLE_DEVICES") == users


def test_the_captured_log_stays_bounded() -> None:
    for i in range(CAPTURED_CHUNKS * 3):
        with native_output_captured():
            print(f"capture {i}")
    with native_output_captured():
        print("y" * (CAPTURED_CHUNK_CHARS * 3), "the end")
    log = captured_log()
    assert "capture 0\n" not in log and f"capture {CAPTURED_CHUNKS * 3 - 1}\n" in log
    assert log.rstrip().endswith("the end")  # the end of a long chunk is kept
    assert len(log) <= CAPTURED_CHUNKS * (CAPTURED_CHUNK_CHARS + 10)
