"""Which GPUs CUDA_VISIBLE_DEVICES leaves, read as the CUDA programming guide describes it,
and an nvidia-smi that hangs: given up, or stopped at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fakes import nvidia_smi

from kfreeze_tui.core.runtime import gpus
from kfreeze_tui.core.runtime.gpus import Gpu, parse, visible

LINES = (
    "0, NVIDIA A100-SXM4-40GB, 40960, 100, GPU-8932f937-d72c-4106-c12f-20bd9faed9f6\n"
    "1, NVIDIA A100-SXM4-80GB, 81920, 60000, GPU-2c31a5e0-1b7f-4f3e-9a62-0b1d0c7f55aa\n"
    "2, Tesla T4, GDDR6, 15360, 15000, GPU-2c31a5e9-0000-0000-0000-000000000000\n"
)


def test_parse_reads_every_field() -> None:
    first, second, third = parse(LINES + "No devices were found\n")
    assert first == Gpu(0, "NVIDIA A100-SXM4-40GB", 40960 << 20, 100 << 20, first.uuid)
    assert first.uuid == "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
    assert (second.index, second.free_bytes) == (1, 60000 << 20)
    assert third.name == "Tesla T4, GDDR6"  # a comma in a name does not shift the numbers


@pytest.mark.parametrize(
    ("setting", "indices"),
    [
        (None, [0, 1, 2]),  # unset: every device
        ("", []),
        ("-1", []),
        ("1", [1]),
        ("2,0", [2, 0]),  # "enumerated in the order of the sequence"
        ("0,-1,1", [0]),  # "only the devices whose index precedes the invalid index"
        ("0,7,1", [0]),
        ("GPU-8932f937", [0]),  # "enough digits from the beginning of the GPU UUID"
        ("GPU-2c31a5e", []),  # a prefix two GPUs share names none
        ("GPU-2C31A5E0-1B7F-4F3E-9A62-0B1D0C7F55AA,0", [1, 0]),
        ("MIG-8932f937-d72c-4106-c12f-20bd9faed9f6", []),
    ],
)
def test_visible_as_cuda_reads_it(setting: str | None, indices: list[int]) -> None:
    assert [gpu.index for gpu in visible(parse(LINES), setting)] == indices


@pytest.fixture
def hanging_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", nvidia_smi(tmp_path, f"printf '{LINES}'\nsleep 60"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.usefixtures("hanging_nvidia_smi")
def test_a_hanging_nvidia_smi_is_given_up_and_can_be_stopped() -> None:
    start = time.monotonic()
    assert gpus.query(timeout=0.5) == []
    assert time.monotonic() - start < 5  # not the 60 s its sleep would hold the pipe
    found: list[list[Gpu]] = []
    worker = threading.Thread(target=lambda: found.append(gpus.query(timeout=60)))
    worker.start()
    time.sleep(0.5)
    start = time.monotonic()
    gpus.stop_queries()  # what the app does when it quits
    worker.join(timeout=10)
    assert not worker.is_alive() and found == [[]]
    assert time.monotonic() - start < 2
