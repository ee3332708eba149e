"""``--lora RANK`` and ``--lora-targets`` on ``kfreeze layers``, ``cost`` and ``export``, as a
user runs them; the counts are Keras's own ``enable_lora`` on a copy of the same file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest


def _size(variables: Any) -> int:
    unique = {id(v): v for v in variables}
    return sum(math.prod(int(d) for d in v.shape) for v in unique.values())


def _keras_lora(keras: Any, path: Path, rank: int, names: set[str]) -> Any:
    """The file loaded in bare Keras, everything frozen, Keras's LoRA on ``names``."""
    model = keras.saving.load_model(path)
    for layer in model.layers:
        layer.trainable = False
    for layer in model.layers:
        if layer.name in names:
            layer.trainable = True
            layer.enable_lora(rank)
    return model


@pytest.mark.parametrize(
    ("targets", "names"),
    [
        ("all", {"stem_conv", "block1_conv", "block2_conv", "classifier"}),
        ("linear", {"classifier"}),
        ("block.*", {"block1_conv", "block2_conv"}),
    ],
)
def test_layers_json_counts_lora_as_keras(
    run_cli: Any, small_model_file: Path, keras: Any, targets: str, names: set[str]
) -> None:
    result = run_cli(
        "layers", str(small_model_file), "--json", "--lora", "4", "--lora-targets", targets
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    oracle = _keras_lora(keras, small_model_file, 4, names)
    assert document["trainable_params"] == _size(oracle.trainable_weights)
    assert document["total_params"] == oracle.count_params()
    states = {row["name"]: row["lora"] for row in document["layers"]}
    assert {name for name, state in states.items() if state == "on"} == names
    assert states["stem_bn"] == "unsupported" and states["gap"] == "unsupported"
    assert document["lora"]["rank"] == 4 and document["lora"]["targets"] == targets
    assert document["lora"]["layers"] == len(names)


def test_layers_table_headline(run_cli: Any, small_model_file: Path, keras: Any) -> None:
    result = run_cli("layers", str(small_model_file), "--lora", "2", "--lora-targets", "all")
    assert result.returncode == 0, result.stderr
    names = {"stem_conv", "block1_conv", "block2_conv", "classifier"}
    oracle = _keras_lora(keras, small_model_file, 2, names)
    trainable, total = _size(oracle.trainable_weights), oracle.count_params()
    expected = f"trainable {trainable:,} || all {total:,} || {100 * trainable / total:.2f} %"
    assert expected in result.stdout
    row = next(line for line in result.stdout.splitlines() if "block1_conv" in line)
    assert row.rstrip(" │").split("│")[-1].strip() == "on"
    assert "LoRA rank 2 on 4 layers (all)" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--lora", "0"], "--lora '0' must be a whole number of at least 1"),
        (["--lora", "two"], "--lora 'two' must be a whole number of at least 1"),
        (["--lora", "2", "--lora-targets", "x("], "not a valid regular expression"),
        (["--lora", "2", "--lora-targets", "nothing_.*"], "matches no layer name"),
        (["--lora", "2", "--lora-targets", "stem_bn"], "cannot take LoRA"),
        (["--lora", "2"], "--lora-targets 'attention' finds no layer named query_dense"),
        (["--lora-targets", "all"], "needs --lora RANK"),
    ],
)
def test_bad_lora_values_exit_2(
    run_cli: Any, small_model_file: Path, args: list[str], says: str
) -> None:
    for command in ("layers", "cost"):
        result = run_cli(command, str(small_model_file), *args)
        assert result.returncode == 2, (command, result.stdout)
        assert says in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_cost_prices_lora(run_cli: Any, small_model_file: Path, keras: Any) -> None:
    base = ["cost", str(small_model_file), "--json", "--freeze-before", "all"]
    plain = json.loads(run_cli(*base).stdout)["rows"][0]
    result = run_cli(*base, "--lora", "2", "--lora-targets", "all")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["lora"] == {"rank": 2, "targets": "all"}
    row = document["rows"][0]
    names = {"stem_conv", "block1_conv", "block2_conv", "classifier"}
    oracle = _keras_lora(keras, small_model_file, 2, names)
    trainable = _size(oracle.trainable_weights)
    assert row["trainable_params"] == trainable
    memory = row["memory"]
    assert memory["weights"] == 4 * oracle.count_params()
    assert memory["gradients"] == 4 * trainable and memory["optimizer"] == 8 * trainable  # Adam
    # Head only keeps no activations; LoRA from the first conv on keeps them.
    assert plain["memory"]["activations"] == 0 < memory["activations"]
    assert row["flops"]["backward"] > plain["flops"]["backward"] == 0


def test_export_lora_writes_the_adapters_apart_and_refuses_to_overwrite_them(
    run_cli: Any, small_model_file: Path, tmp_path: Path, keras: Any
) -> None:
    out = tmp_path / "out.keras"
    args = (
        "export", str(small_model_file), "--freeze-before", "all", "--lora", "4",
        "--lora-targets", "all", "--classes", "3", "-o", str(out),
    )  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    adapters = tmp_path / "out.lora.npz"
    assert f"wrote {adapters} (LoRA adapters" in result.stdout
    assert "LoRA B matrices moved" in result.stdout
    # The deployable file loads in bare Keras with no LoRA left in it.
    loaded = keras.saving.load_model(out)
    assert not [w for w in loaded.weights if "lora" in w.path]
    # Only the adapters file is there: the export refuses it without --force, writes nothing.
    out.unlink()
    before = adapters.read_bytes()
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"{adapters} exists already; pass --force" in result.stderr
    assert not out.exists() and adapters.read_bytes() == before


def test_cost_measures_lora_steps_on_a_copy(run_cli: Any, small_model_file: Path) -> None:
    result = run_cli(
        "cost", str(small_model_file), "--freeze-before", "block1_conv", "--lora", "2",
        "--lora-targets", "all", "--measure", "--batch", "4", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    rows = document["rows"]
    assert rows[0]["measured"]["step_seconds"] > 0


def test_export_lora_with_phases_writes_phase_1_with_its_adapters(
    run_cli: Any, small_model_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.keras"
    result = run_cli(
        "export", str(small_model_file), "--lora", "2", "--lora-targets", "all",
        "--phase", "gap:1", "--phase", "block1_conv:1", "-o", str(out),
        "--script", str(tmp_path / "out.py"), "--plan", str(tmp_path / "out.toml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.keras",
        "out.lora.npz",
        "out.py",
        "out.toml",
    ]
    assert "LoRA B matrices moved" in result.stdout
    script = (tmp_path / "out.py").read_text()
    assert script.count("lora=True") == 2 and "enable_lora_on(base, LORA_LAYERS" in script
