"""``kfreeze export --cache-features``: written for a plan whose frozen part can be cached,
refused in one sentence (exit 2, nothing written) for one that cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    assert result.stderr.strip().splitlines() == [
        "kfreeze: error: --cache-features cannot be used: flip (RandomFlip) runs before the "
        "boundary."
    ]
    assert not list(tmp_path.iterdir())


def test_cache_features_writes_the_scripts_functions(
    run_cli: Any, small_model_file: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "export", str(small_model_file), "--freeze-before", "block1_conv", "--cache-features",
        "-o", str(tmp_path / "out.keras"), "--script", str(tmp_path / "out.py"),
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
