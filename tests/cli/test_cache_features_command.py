"""``kfreeze export --cache-features``: written for a plan whose frozen part can be cached,
refused in one sentence (exit 2, nothing written) for one that cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def augmented_file(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose first layer is a RandomFlip augmentation."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.RandomFlip(name="flip")(inputs)
    x = keras.layers.Conv2D(4, 3, name="c1")(x)
    x = keras.layers.Conv2D(4, 3, name="c2")(x)
    path = tmp_path_factory.mktemp("augmented") / "augmented.keras"
    keras.Model(inputs, x, name="augmented").save(path)
    return path


def test_cache_features_is_refused_after_an_augmentation_layer(
    run_cli: Any, augmented_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.keras"
    result = run_cli(
        "export", str(augmented_file), "--freeze-before", "c2", "--cache-features",
        "-o", str(out), "--script", str(tmp_path / "out.py"),
    )  # fmt: skip
    assert result.returncode == 2
    # One sentence: the verdict's reason, naming the augmentation layer.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("."), lines
    assert lines[0].startswith("kfreeze: error: --cache-features cannot be used: ")
    assert "flip" in lines[0] and "RandomFlip" in lines[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option", [("--cache-features",), ("--strategy", "mirrored")])
def test_a_script_option_without_a_script_is_refused(
    run_cli: Any, small_model_file: Path, tmp_path: Path, option: tuple[str, ...]
) -> None:
    out = tmp_path / "out.keras"
    result = run_cli(
        "export", str(small_model_file), "--freeze-before", "block1_conv", *option, "-o", str(out)
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"kfreeze: error: {option[0]} changes the training script: give --script PATH too."
    ]
    assert not list(tmp_path.iterdir())


def test_cache_features_writes_the_scripts_functions(
    run_cli: Any, small_model_file: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "export", str(small_model_file), "--freeze-before", "block1_conv", "--cache-features",
        "--classes", "2", "-o", str(tmp_path / "out.keras"), "--script", str(tmp_path / "out.py"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    script = (tmp_path / "out.py").read_text()
    assert 'FEATURE_TENSORS = ["pool1"]' in script
    assert "def cache_features(ds, directory" in script and "def top_model(model)" in script
    # Without the option, the script has none of it.
    plain = run_cli(
        "export", str(small_model_file), "--freeze-before", "block1_conv",
        "-o", str(tmp_path / "plain.keras"), "--script", str(tmp_path / "plain.py"),
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "cache_features" not in (tmp_path / "plain.py").read_text()
    # Run as a program on an image folder, with --cache-dir: cached once, then trained on.
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            tf.io.write_file(str(tmp_path / "data" / name / f"{i}.png"), tf.io.encode_png(pixels))
    run = subprocess.run(
        [sys.executable, "out.py", "data", "--epochs", "1", "--cache-dir", "cache",
         "--save", "trained.keras"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "cached features of 6 examples in cache" in run.stdout
    assert "saved trained.keras" in run.stdout
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["tensors"] == ["pool1"]
