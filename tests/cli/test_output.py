"""The installed command when its output goes somewhere unusual: a reader that leaves, a
full disk (a process of its own: its file descriptors are the point); and the GPUs kfreeze
reads from an nvidia-smi on the PATH (two, failing, hanging)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import nvidia_smi

LAYERS = ("layers", "resnet50", "--weights", "none")


def _command() -> list[str]:
    exe = shutil.which("kfreeze")
    return [exe] if exe else [sys.executable, "-m", "kfreeze_tui"]


def _into_pipe(args: tuple[str, ...], read: int) -> tuple[int, str, bytes]:
    """Run kfreeze into a 4 KiB pipe whose reader takes ``read`` bytes (0: none) and leaves,
    as ``| head -5`` does, so the rest of the output meets a closed pipe."""
    reader, writer = os.pipe()
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)  # smaller than any table here
    if read == 0:
        os.close(reader)  # `| true`, `| head -n 0`: gone before kfreeze writes a byte
    process = subprocess.Popen(
        [*_command(), *args], stdout=writer, stderr=subprocess.PIPE, text=True
    )
    os.close(writer)
    got = b""
    if read:
        with os.fdopen(reader, "rb") as pipe:
            got = pipe.read(read)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr, got


@pytest.mark.parametrize(
    ("args", "read"),
    [(LAYERS, 0), (LAYERS, 300), ((*LAYERS, "--json"), 0), ((*LAYERS, "--json"), 300)],
    ids=["table-no-reader", "table-head", "json-no-reader", "json-head"],
)
def test_a_reader_that_leaves_is_a_normal_end(args: tuple[str, ...], read: int) -> None:
    code, stderr, got = _into_pipe(args, read)
    assert (code, stderr) == (0, "")
    if read:
        assert len(got) == read and (b"ResNet50" in got or b'"resnet50"' in got)


def test_a_shell_pipeline_under_pipefail() -> None:
    command = " ".join(_command())
    for pipeline in (
        f"{command} models | head -n 0",
        f"{command} models | true",
        f"{command} --help | true",  # argparse's own output ends as quietly
    ):
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", pipeline],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, ""), pipeline


@pytest.mark.parametrize(
    "args", [LAYERS, (*LAYERS, "--json"), ("--help",)], ids=["table", "json", "help"]
)
def test_a_full_disk_is_one_sentence_and_exit_2(args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*_command(), *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == (
        "kfreeze: error: could not write to standard output: no space left on device; "
        "the output is incomplete.\n"
    )


TWO_GPUS = (
    "0, Fake A100 40GB, 40960, 100, GPU-8932f937-d72c-4106-c12f-20bd9faed9f6\n"
    "1, Fake A100 80GB, 81920, 60000, GPU-2c31a5e0-1b7f-4f3e-9a62-0b1d0c7f55aa\n"
)


def _fake_nvidia_smi(folder: Path, body: str) -> dict[str, str | None]:
    """An environment whose PATH starts with an nvidia-smi running ``body`` (sh)."""
    return {"PATH": nvidia_smi(folder, body), "CUDA_VISIBLE_DEVICES": None}


def _cost_gpus(run_cli: Any, env: dict[str, str | None]) -> tuple[list[Any], float, str]:
    start = time.monotonic()
    result = run_cli("cost", *LAYERS[1:], "--freeze-before", "143", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["gpus"], time.monotonic() - start, result.stderr


def test_the_gpu_fit_follows_cuda_visible_devices(run_cli: Any, tmp_path: Path) -> None:
    env = _fake_nvidia_smi(tmp_path, f"printf '{TWO_GPUS}'")
    every, _, _ = _cost_gpus(run_cli, env)
    assert [gpu["index"] for gpu in every] == [0, 1]
    # CUDA_VISIBLE_DEVICES=1: a training job here gets the 80 GB card, so that is the one
    # judged, though kfreeze hides every GPU from its own TensorFlow.
    (second,) = _cost_gpus(run_cli, {**env, "CUDA_VISIBLE_DEVICES": "1"})[0]
    assert (second["index"], second["free_bytes"]) == (1, 60000 << 20)
    assert second["largest_batch"][0] > every[0]["largest_batch"][0]
    by_uuid, _, _ = _cost_gpus(run_cli, {**env, "CUDA_VISIBLE_DEVICES": "GPU-2c31a5e0"})
    assert [gpu["index"] for gpu in by_uuid] == [1]
    assert _cost_gpus(run_cli, {**env, "CUDA_VISIBLE_DEVICES": "-1"})[0] == []


def test_a_failing_or_hanging_nvidia_smi_is_no_gpu(run_cli: Any, tmp_path: Path) -> None:
    failing = _fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    gpus, _, stderr = _cost_gpus(run_cli, failing)
    assert (gpus, stderr) == ([], "")
    # A wedged driver: given up after gpus.TIMEOUT (5 s), not after the 60 s it hangs, and
    # the sleep it started does not hold the pipe open.
    hanging = _fake_nvidia_smi(tmp_path, f"printf '{TWO_GPUS}'; sleep 60")
    gpus, seconds, stderr = _cost_gpus(run_cli, hanging)
    assert (gpus, stderr) == ([], "")
    assert seconds < 40
