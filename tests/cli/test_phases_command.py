"""kfreeze export --phase: the file set up for phase 1, the plan with every phase, and a
plain-Keras script whose train() runs them all (with and without a distribution strategy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PHASES = ("--phase", "head:2:1e-3", "--phase", "block2_conv:1:1e-4",
          "--phase", "block1_conv:1:1e-5..1e-4")  # fmt: skip

TRAIN = """
import json, sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, {folder!r})
import {module} as script

rng = np.random.default_rng(0)
x = rng.standard_normal((16, 32, 32, 3)).astype("float32")
y = rng.integers(0, 3, size=(16,))
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
history = script.train(data, data.take(1), verbose=0)
trainable = sum(int(np.prod(w.shape)) for w in script.model.trainable_weights)
again = script.train(data, epochs=1, verbose=0)  # every phase one epoch, no validation
print(json.dumps({{"epochs": len(history["loss"]), "val": len(history["val_loss"]),
                  "trainable": trainable, "again": len(again["loss"]),
                  "again_val": "val_loss" in again}}))
"""


@pytest.mark.parametrize("strategy", [None, "mirrored"])
def test_script_trains_every_phase(
    run_cli: Any, small_model_file: Path, tmp_path: Path, keras: Any, strategy: str | None
) -> None:
    extra = ("--strategy", strategy) if strategy else ()
    result = run_cli(
        "export", str(small_model_file), *PHASES, "--classes", "3", "-o",
        str(tmp_path / "ft.keras"), "--plan", str(tmp_path / "ft.toml"),
        "--script", str(tmp_path / "ft_script.py"), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "ft_script.py").read_text()
    assert "import kfreeze" not in text and "from kfreeze" not in text
    assert ("tf.distribute.MirroredStrategy()" in text) is (strategy == "mirrored")
    # The .keras file is set up and compiled for phase 1: the head alone trains.
    saved = keras.saving.load_model(tmp_path / "ft.keras")
    assert {w.path.split("/")[0] for w in saved.trainable_weights} == {"head_output"}
    assert saved.optimizer.learning_rate.numpy() == pytest.approx(1e-3)
    code = TRAIN.format(folder=str(tmp_path), module="ft_script")
    trained = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    outcome = json.loads(trained.stdout.strip().splitlines()[-1])
    assert outcome["epochs"] == 2 + 1 + 1 == outcome["val"]
    assert outcome["again"] == 3 and not outcome["again_val"]
    # After the last phase everything from block1_conv on trains (BatchNorm kept frozen).
    assert outcome["trainable"] > 0
    assert "[[phase]]" in (tmp_path / "ft.toml").read_text()


def test_bad_phase_is_one_sentence(run_cli: Any, small_model_file: Path, tmp_path: Path) -> None:
    result = run_cli(
        "export", str(small_model_file), "--phase", "head:three", "-o", str(tmp_path / "x.keras")
    )
    assert result.returncode == 2 and "is not a number of epochs" in result.stderr
    assert not (tmp_path / "x.keras").exists()
    neither = run_cli("export", str(small_model_file), "-o", str(tmp_path / "x.keras"))
    assert neither.returncode == 2
    assert "pass --freeze-before LAYER (or --phase for staged training)" in neither.stderr


@pytest.fixture(scope="module")
def three_phase_plan(small_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plan of the small CNN with three phases, written by kfreeze's own writer."""
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.plan import planfile
    from kfreeze_tui.core.plan.freeze import PlanView
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec, parse_phase
    from kfreeze_tui.core.session import open_session

    session = open_session(str(small_model_file), LoadOptions(), use_cache=False)
    view = PlanView(session.info)
    phases = tuple(parse_phase(text, session.info) for text in PHASES[1::2])
    doc = planfile.document(
        str(small_model_file),
        LoadOptions(),
        view,
        phases[0].plan(view.plan_from_model()),
        HeadSpec(classes=3),
        CompileSpec(),
        phases,
    )
    path = tmp_path_factory.mktemp("phases") / "three.toml"
    path.write_text(planfile.to_toml(doc))
    return path


@pytest.mark.parametrize("number", [2, 3])
def test_apply_sets_up_the_phase_asked_for(
    three_phase_plan: Path,
    small_model_file: Path,
    tmp_path: Path,
    keras: Any,
    capsys: pytest.CaptureFixture[str],
    number: int,
) -> None:
    from kfreeze_tui import apply_plan
    from kfreeze_tui.cli import run

    out = tmp_path / f"phase{number}.keras"
    code = run(["apply", str(three_phase_plan), "--phase", str(number), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    boundary, epochs, _ = PHASES[2 * number - 1].split(":")
    assert f"set up and compiled for phase {number} of 3: {boundary}:{epochs}:" in err
    saved = keras.saving.load_model(out)
    # The reference: what the Python API builds for the same phase on the same model.
    reference = apply_plan(keras.saving.load_model(small_model_file), three_phase_plan, number)
    assert sorted(w.path for w in saved.trainable_weights) == sorted(
        w.path for w in reference.trainable_weights
    )
    assert "block2_conv/kernel" in {w.path for w in saved.trainable_weights}
    assert ("block1_conv/kernel" in {w.path for w in saved.trainable_weights}) is (number == 3)
    if number == 2:
        assert saved.optimizer.learning_rate.numpy() == pytest.approx(1e-4)
    else:
        assert type(saved.optimizer).__name__ == type(reference.optimizer).__name__
