"""kfreeze cost, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fakes import nvidia_smi

from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.train.cost import TrainingSetup, cost_model


def test_cost_json_for_resnet50(run_cli: Any, resnet50_info: Any) -> None:
    result = run_cli(
        "cost", "resnet50", "--weights", "none", "--batch", "16", "--optimizer", "sgdm", "--json"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {k: document[k] for k in ("model", "batch", "optimizer", "dtype")} == {
        "model": "resnet50",
        "batch": 16,
        "optimizer": "sgdm",
        "dtype": "float32",
    }
    assert abs(document["forward_macs_per_example"] - 3.9e9) < 0.05 * 3.9e9
    rows = document["rows"]
    assert rows[0]["label"] == "head only"
    assert [row["boundary_index"] for row in rows] == [None, 6, 39, 81, 143, 0]
    assert rows[-1]["label"] == "everything trains"
    assert rows[-1]["relative_step"] == 1.0
    at_143 = rows[4]
    assert at_143["boundary_name"] == "conv5_block1_1_conv"
    assert at_143["trainable_params"] == 14_953_472
    memory = at_143["memory"]
    assert memory["gradients"] == 4 * 14_953_472 == memory["optimizer"]  # one momentum slot
    assert memory["total"] == sum(memory[k] for k in ("weights", "gradients", "optimizer",
                                                      "activations"))  # fmt: skip
    view = PlanView(resnet50_info)
    expected = cost_model(view).estimate(
        FreezePlan(boundary=resnet50_info.find("conv5_block1_1_conv").path),
        TrainingSetup(batch=16),
    )
    assert memory["activations"] == expected.memory.activations
    assert at_143["flops"] == {
        "forward": expected.forward_flops,
        "backward": expected.backward_flops,
    }
    assert document["gpus"] == []  # no nvidia-smi here


def test_cost_table_one_boundary(run_cli: Any) -> None:
    result = run_cli(
        "cost", "resnet50", "--weights", "none", "--freeze-before", "res5a_branch2a",
        "--dtype", "mixed_float16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "res5a_branch2a is the Keras 2 name of conv5_block1_1_conv" in result.stderr
    lines = [line for line in result.stdout.splitlines() if "conv5_block1_1_conv" in line]
    assert len(lines) == 1 and "0.46x" in lines[0] and "14,953,472" in lines[0]
    assert "mixed_float16" in result.stdout and "3.86 GMACs per example" in result.stdout


def test_cost_reports_what_fits_the_gpu(run_cli: Any, tmp_path: Path) -> None:
    path = nvidia_smi(tmp_path, "echo '0, Fake GPU 16GB, 16384, 2048, GPU-0fa4e'")
    # The tests' own CUDA_VISIBLE_DEVICES=-1 would hide it, as it hides a real GPU.
    env = {"PATH": path, "CUDA_VISIBLE_DEVICES": "0"}
    result = run_cli("cost", "resnet50", "--weights", "none", "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    (gpu,) = document["gpus"]
    assert gpu["free_bytes"] == 2048 << 20 and gpu["name"] == "Fake GPU 16GB"
    for row, largest in zip(document["rows"][1:], gpu["largest_batch"][1:], strict=True):
        per_example = row["memory"]["activations"] // 32
        fixed = row["memory"]["total"] - row["memory"]["activations"]
        assert fixed + largest * per_example <= gpu["free_bytes"]
        assert fixed + (largest + 1) * per_example > gpu["free_bytes"]
    text = run_cli("cost", "resnet50", "--weights", "none", env=env)
    assert "GPU 0 Fake GPU 16GB: 2.0 GiB free of 16.0 GiB; largest batch that fits:" in text.stdout


def test_cost_measures_real_steps(run_cli: Any, small_model_file: Path) -> None:
    result = run_cli(
        "cost", str(small_model_file), "--freeze-before", "block1_conv", "--batch", "4",
        "--measure", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["rows"]
    measured = row["measured"]
    assert measured["step_seconds"] > 0 and measured["peak_bytes"] is None  # CPU
    assert measured["relative_step"] > 0


def test_cost_bad_input(run_cli: Any) -> None:
    result = run_cli("cost", "resnet50", "--weights", "none", "--batch", "0")
    assert result.returncode == 2 and "--batch 0 must be a positive" in result.stderr
    unknown = run_cli("cost", "resnet50", "--weights", "none", "--freeze-before", "nope")
    assert unknown.returncode == 2 and unknown.stdout == ""


def test_cost_json_rows_carry_the_feature_cache(run_cli: Any) -> None:
    result = run_cli(
        "cost", "resnet50", "--weights", "none", "--json", "--examples", "500", "--epochs", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    for row in rows:
        found = row["feature_cache"]
        assert {"cacheable", "reason", "bytes_per_example", "tensors", "shapes", "dtype",
                "disk_bytes", "flops", "speedup_estimate"} <= set(found)  # fmt: skip
        assert found["examples"] == 500 and found["epochs"] == 4
        assert found["disk_bytes"] == 500 * found["bytes_per_example"]
    by_label = {row["label"]: row["feature_cache"] for row in rows}
    # ResNet50 without top: the head reads conv5_block3_out, 7x7x2048 float32.
    assert by_label["head only"]["tensors"] == ["conv5_block3_out"]
    assert by_label["head only"]["bytes_per_example"] == 7 * 7 * 2048 * 4
    assert by_label["conv5_block1_1_conv"]["shapes"] == [[14, 14, 1024]]
    assert by_label["conv5_block1_1_conv"]["speedup_estimate"] > 1
    everything = by_label["everything trains"]
    assert everything["cacheable"] is False
    assert everything["reason"] == "nothing is frozen before the boundary"


def test_cost_freeze_before_row_carries_the_feature_cache(run_cli: Any) -> None:
    result = run_cli(
        "cost", "resnet50", "--weights", "none", "--json", "--freeze-before", "conv5_block1_1_conv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["rows"]
    found = row["feature_cache"]
    assert found["cacheable"] and found["bytes_per_example"] == 14 * 14 * 1024 * 4
    assert found["examples"] == 10000 and found["epochs"] == 10  # the defaults
    table = run_cli("cost", "resnet50", "--weights", "none", "--freeze-before", "143")
    assert "784 KiB/ex" in table.stdout
    bad = run_cli("cost", "resnet50", "--weights", "none", "--examples", "0")
    assert bad.returncode != 0 and "--examples 0 must be a positive number" in bad.stderr
    assert "Traceback" not in bad.stderr
