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

from kfreeze_tui.core.runtime import process as runtime
from kfreeze_tui.core.runtime.process import (
    CAPTURED_CHUNK_CHARS,
    CAPTURED_CHUNKS,
    QUIET_ENVIRONMENT,
    RECURSION_LIMIT,
    RuntimeOptions,
    captured_log,
    deep_recursion,
    native_output_captured,
)


def test_a_library_load_leaves_the_recursion_limit_as_it_was(
    keras: Any, small_model_file: Path
) -> None:
    from kfreeze_tui.core.model.loading import LoadOptions, load

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
    # A fresh process: TensorFlow is first imported by kfreeze's own load, in a process whose
    # user chose GPU 3 and set none of the variables kfreeze's command sets for quiet.
    probe = (
        "import json, os, sys\n"
        "from kfreeze_tui.core.model.loading import LoadOptions, load\n"
        "from kfreeze_tui.core.runtime.process import import_keras\n"
        "found = dict(os.environ)\n"
        "import_keras()\n"
        "after_import = sys.getrecursionlimit()\n"
        f"load({str(small_model_file)!r}, LoadOptions(weights='none'))\n"
        "print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), after_import,"
        " sys.getrecursionlimit(), dict(os.environ) == found]))\n"
    )
    env = {
        **{name: value for name, value in os.environ.items() if name not in QUIET_ENVIRONMENT},
        "CUDA_VISIBLE_DEVICES": "3",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    devices, after_import, after_load, same = json.loads(result.stdout.splitlines()[-1])
    assert devices == "3"  # the user's GPU 3, not hidden
    assert after_load == after_import < RECURSION_LIMIT  # as TensorFlow's import left it
    assert same  # no variable set, changed or removed


def test_a_command_run_in_process_leaves_the_process_as_it_was(
    keras: Any, small_model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # run(argv) without owns_process: a caller running a command inside its own process.
    from kfreeze_tui.cli import run

    found, before = dict(os.environ), sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(2_500)
        assert run(["layers", str(small_model_file), "--no-cache"]) == 0
        assert sys.getrecursionlimit() == 2_500
    finally:
        sys.setrecursionlimit(before)
    assert "block2_conv" in capsys.readouterr().out
    assert dict(os.environ) == found
    assert not runtime._owns_process


@pytest.fixture
def fresh_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module as a new ``kfreeze`` process finds it, put back afterwards: TensorFlow not
    imported yet (configure reads only ``sys.modules`` for that; nothing here imports it).
    Every variable configure may set is put back too: later tests, and the commands they
    start, get this process's environment."""
    for name in ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH", *QUIET_ENVIRONMENT):
        found = os.environ.get(name)
        monkeypatch.setenv(name, found or "")  # recorded: teardown restores (or removes) it
        if found is None:
            monkeypatch.delenv(name)
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
