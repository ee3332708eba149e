"""``kfreeze layers`` and ``kfreeze models`` as a user runs them: in this process, and the
installed command in a process of its own where that is the point (its version, a first
import of TensorFlow that says nothing, Keras's home read at start-up)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def test_version_and_help(run_kfreeze: Any, run_cli: Any) -> None:
    from kfreeze_tui import __version__

    version = run_kfreeze("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"kfreeze {__version__}"
    helped = run_cli("--help")
    assert helped.returncode == 0 and "kfreeze layers MODEL" in helped.stdout
    layers_help = run_cli("layers", "--help")
    assert layers_help.returncode == 0
    for option in (
        "--filter",
        "--expand-nested",
        "--json",
        "--weights",
        "--input-shape",
        "--include-top",
        "--custom-objects",
        "--unsafe",
        "--gpu",
    ):
        assert option in layers_help.stdout


def test_layers_table_resnet50(run_kfreeze: Any) -> None:
    """The installed command, importing TensorFlow: nothing but the table comes out."""
    result = run_kfreeze("layers", "resnet50", "--weights", "none")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow noise
    rows = [line for line in result.stdout.splitlines() if "conv5_block1_1_conv" in line]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("│ ").split("│")]
    assert cells[:6] == [
        "143",
        "conv5_block1_1_conv",
        "Conv2D",
        "(None, 7, 7, 512)",
        "524,800",
        "yes",
    ]
    assert "Total params: 23,587,712" in result.stdout
    assert "non-trainable: 53,120" in result.stdout


def test_layers_json_small_model(run_cli: Any, small_model_file: Path, small_model: Any) -> None:
    result = run_cli("layers", str(small_model_file), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["model"] == "small_cnn"
    assert document["total_params"] == small_model.count_params()
    assert (
        document["trainable_params"] + document["non_trainable_params"]
        == small_model.count_params()
    )
    names = [layer["name"] for layer in document["layers"]]
    assert names == [layer.name for layer in small_model.layers]
    first_conv = document["layers"][1]
    assert set(first_conv) == {
        "index",
        "path",
        "name",
        "type",
        "output_shape",
        "params",
        "trainable",
        "lora",
        "stage",
        "stage_name",
        "block",
        "inbound",
        "calls",
    }
    assert first_conv["lora"] == "off"  # a Conv2D can take LoRA; it is not on as loaded
    assert document["layers"][2]["lora"] == "unsupported"  # stem_bn
    assert first_conv["output_shape"] == [None, 32, 32, 8]
    assert first_conv["path"] == [1] and first_conv["inbound"] == ["image"]
    assert first_conv["calls"] == [{"inbound": ["image"], "output_shape": [None, 32, 32, 8]}]
    assert document["layers"][-1]["output_shape"] == [None, 5]
    assert [layer["stage"] for layer in document["layers"]][3:6] == [0, 1, 1]

    filtered = run_cli("layers", str(small_model_file), "--json", "--filter", "batchnorm")
    assert [layer["name"] for layer in json.loads(filtered.stdout)["layers"]] == [
        "stem_bn",
        "block1_bn",
    ]


def test_layers_expand_nested(run_cli: Any, wrapped_base: Any, tmp_path: Path) -> None:
    path = tmp_path / "wrapped.keras"
    wrapped_base.save(path)
    result = run_cli("layers", str(path), "--json", "--expand-nested")
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    assert len(layers) == 3 + 175
    assert layers[0]["path"] == [0] and layers[1]["path"] == [0, 0]
    conv = next(layer for layer in layers if layer["name"] == "conv5_block1_1_conv")
    assert conv["path"] == [0, 143] and conv["index"] == 143
    assert layers[-1]["path"] == [2] and layers[-1]["type"] == "Dense"

    table = run_cli("layers", str(path), "--expand-nested", "--filter", "conv5_block1_1_conv")
    assert "0.143" in table.stdout and "1 of 178 layers match" in table.stdout


def test_load_error_exit_code_and_one_sentence(run_cli: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    result = run_cli("layers", str(empty), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kfreeze: error: ") and "empty" in lines[0]


def test_offline_imagenet_download(run_kfreeze: Any, tmp_path: Path) -> None:
    # An empty Keras cache: the weights must be downloaded, which cannot work here. (A process
    # of its own: Keras reads KERAS_HOME when it is imported.)
    result = run_kfreeze("layers", "mobilenetv3small", env={"KERAS_HOME": str(tmp_path)})
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "could not download the imagenet weights" in lines[0]
    assert "--weights none" in lines[0]


def test_usage_errors(run_cli: Any, small_model_file: Path) -> None:
    bad_regex = run_cli("layers", str(small_model_file), "--filter", "conv[")
    assert bad_regex.returncode == 2 and "not a valid regular expression" in bad_regex.stderr
    bad_shape = run_cli("layers", "resnet50", "--input-shape", "224,224")
    assert bad_shape.returncode == 2 and "three positive integers" in bad_shape.stderr
    unknown = run_cli("layers", "resnet5")
    assert unknown.returncode == 2 and "ResNet50" in unknown.stderr


def test_models_command(run_cli: Any) -> None:
    result = run_cli("models", "--json")
    assert result.returncode == 0
    entries = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert entries["InceptionV3"]["default_input_shape"] == [299, 299, 3]
    assert len(entries) >= 40


def test_layers_boundary_reports_the_cut(run_cli: Any) -> None:
    clean = run_cli(
        "layers", "resnet50", "--weights", "none", "--boundary", "conv5_block1_1_conv", "--json"
    )
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["cut"] == {
        "boundary": "conv5_block1_1_conv",
        "crossing": ["conv4_block6_out"],
        "clean": True,
        "splits_block": None,
        "into": None,
        "inside": None,
    }
    # A Keras 2 name, in the table: the cut line under it, and a note on stderr.
    split = run_cli(
        "layers",
        "resnet50",
        "--weights",
        "none",
        "--boundary",
        "res5a_branch2b",
        "--filter",
        "res5a_branch2b",
    )
    assert split.returncode == 0, split.stderr
    assert (
        "kfreeze: note: res5a_branch2b is the Keras 2 name of conv5_block1_2_conv (index 146)"
        in split.stderr
    )
    lines = split.stdout.splitlines()
    assert sum("conv5_block1_2_conv" in line for line in lines) == 2  # the row and the cut
    assert lines[-1] == (
        "Boundary conv5_block1_2_conv: splits block conv5_block1: 2 tensors cross "
        "(conv4_block6_out, conv5_block1_1_relu)"
    )
    missing = run_cli("layers", "resnet50", "--weights", "none", "--boundary", "res9z")
    assert missing.returncode == 2
    assert "no layer named 'res9z'" in missing.stderr and "Traceback" not in missing.stderr


def test_a_narrow_terminal_drops_the_type_column_not_the_names(resnet50_info: Any) -> None:
    """Rich squeezes the one column that folds, the name, to nothing when a table is too
    wide; the type column goes first instead, as in the explorer."""
    from rich.console import Console

    import kfreeze_tui.cli.report as report

    rows = report.select(resnet50_info, None, False)
    for width, has_type in ((80, False), (160, True)):
        console = Console(width=width, record=True, color_system=None)
        console.print(report.layer_table(resnet50_info, rows, False, width=width))
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        header = next(line for line in text.splitlines() if "name" in line)
        assert ("type" in header) is has_type
        for row in rows:  # every name whole, on its row
            assert f" {row.name} " in text, row.name
