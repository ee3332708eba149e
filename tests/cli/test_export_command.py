"""kfreeze export and kfreeze apply as a user runs them, and the plan file as training code
uses it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

EXPORT = [
    "export",
    "resnet50",
    "--weights",
    "none",
    "--freeze-before",
    "conv5_block1_1_conv",
    "--bn",
    "trainable",
    "--pool",
    "avg",
    "--dropout",
    "0",
    "--classes",
    "10",
]


@pytest.fixture(scope="module")
def cli_export(run_kfreeze: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed command's export. (A process of its own, as ``apply`` below: Keras names
    an unnamed layer, such as the architecture's input, after what the process made before.)"""
    folder = tmp_path_factory.mktemp("cli_export")
    # The Keras 2 names of the boundary and of the default feature layer, as old tutorials
    # write them: the export (and the plan it writes) use today's names.
    old_names = ["res5a_branch2a" if arg == "conv5_block1_1_conv" else arg for arg in EXPORT]
    result = run_kfreeze(
        *old_names,
        "--feature-layer",
        "res5c_relu",
        "-o",
        str(folder / "m.keras"),
        "--plan",
        str(folder / "m.toml"),
        "--script",
        str(folder / "m.py"),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "--freeze-before res5a_branch2a is the Keras 2 name of conv5_block1_1_conv (index 143)"
        in result.stderr
    )
    assert "feature layer res5c_relu is the Keras 2 name of conv5_block3_out" in result.stderr
    assert 'boundary = "conv5_block1_1_conv"' in (folder / "m.toml").read_text()
    assert (
        "verified by loading it back: 177 layers, 14,996,490 trainable and 8,611,712 "
        "non-trainable parameters" in result.stdout
    )
    return folder


def _layer_states(keras: Any, path: Path) -> list[tuple[str, int]]:
    """Each layer's name and trainable parameters in the file, as loading it gives them (a
    file keeps its layers' names, so loading it here names them as anywhere else)."""
    from kfreeze_tui.core.model.layers import walk

    return [(r.name, r.trainable_params) for r in walk(keras.saving.load_model(path)).layers]


def test_apply_reproduces_the_export(run_kfreeze: Any, cli_export: Path, keras: Any) -> None:
    replayed = cli_export / "replayed.keras"
    result = run_kfreeze("apply", str(cli_export / "m.toml"), "-o", str(replayed))
    assert result.returncode == 0, result.stderr
    assert "14,996,490 trainable" in result.stdout
    assert _layer_states(keras, replayed) == _layer_states(keras, cli_export / "m.keras")


def test_refuses_to_overwrite_without_force(run_cli: Any, cli_export: Path) -> None:
    target = cli_export / "m.keras"
    before = target.stat().st_mtime_ns
    result = run_cli(*EXPORT, "-o", str(target))
    assert result.returncode == 2 and result.stdout == ""
    assert "exists already; pass --force" in result.stderr
    assert target.stat().st_mtime_ns == before


def test_bad_input_exits_2_and_writes_nothing(run_cli: Any, tmp_path: Path) -> None:
    cases = [
        (["--freeze-before", "expanded_conv_projec"], "did you mean expanded_conv_project"),
        (["--freeze-before", "999"], "no layer at index 999"),
        (["--freeze-before", "143", "--classes", "1"], "Softmax over 1 class"),
        (["--freeze-before", "143", "--dropout", "1.5"], "outside [0, 1)"),
        (["--freeze-before", "143", "--pool", "none"], "Pooling 'none' leaves the 4-D"),
        (["--freeze-before", "143", "--hidden", "12a"], "--hidden"),
    ]
    for extra, message in cases:
        result = run_cli(
            "export",
            "mobilenetv3small",
            "--weights",
            "none",
            *extra,
            "-o",
            str(tmp_path / "x.keras"),
        )
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_plan_not_fitting_the_model(run_cli: Any, cli_export: Path, tmp_path: Path) -> None:
    text = (cli_export / "m.toml").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(
        text.replace('boundary = "conv5_block1_1_conv"', 'boundary = "nope"').replace(
            "boundary_path = [143]", "boundary_path = [999]"
        )
    )
    result = run_cli("apply", str(broken), "-o", str(tmp_path / "out.keras"))
    assert result.returncode == 2
    assert "boundary nope (index 999) is not a layer of this model" in result.stderr
    # A renamed boundary is still found by its index, and kfreeze says so.
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(text.replace('boundary = "conv5_block1_1_conv"', 'boundary = "old"'))
    result = run_cli("apply", str(renamed), "-o", str(tmp_path / "out.keras"))
    assert result.returncode == 0, result.stderr
    assert "not found by name: used index 143 (conv5_block1_1_conv)" in result.stderr
    assert not (tmp_path / "garbage.toml").exists()
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("this is = = not toml")
    result = run_cli("apply", str(garbage), "-o", str(tmp_path / "g.keras"))
    assert result.returncode == 2 and "is not valid TOML" in result.stderr


def test_apply_plan_api(cli_export: Path, keras: Any) -> None:
    from kfreeze_tui import apply_plan

    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
    model = apply_plan(base, cli_export / "m.toml")
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    assert (len(model.layers), trainable) == (177, 14_996_490)
    assert model.compiled


def test_a_kill_during_save_leaves_no_partial_file(
    tmp_path: Path, run_cli: Any, small_model_file: Path
) -> None:
    import shutil

    exe = shutil.which("kfreeze")
    command = [exe] if exe else [sys.executable, "-m", "kfreeze_tui"]
    target = tmp_path / "killed.keras"
    process = subprocess.Popen(
        [*command, *EXPORT, "-o", str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        # Wait until the model is being written, then kill the process hard.
        while time.monotonic() < deadline:
            temps = [p for p in tmp_path.iterdir() if "kfreeze-tmp" in p.name]
            if temps and temps[0].stat().st_size > 1_000_000:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the export never started writing")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not target.exists()
    (temp,) = tmp_path.iterdir()  # only the hidden temp, named after the killed process
    assert temp.name.startswith(f".killed.keras.kfreeze-tmp-{process.pid}-")
    size = temp.stat().st_size
    # The next export into the folder removes it, and says what and how big.
    again = run_cli(
        "export", str(small_model_file), "--freeze-before", "block1_conv", "-o",
        str(tmp_path / "next.keras"),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert not temp.exists()
    assert (
        f"kfreeze: note: removed a temporary file that killed kfreeze runs left "
        f"({size / 1e6:,.1f} MB): {temp}\n"
    ) in again.stderr


def test_plan_opens_in_the_explorer(cli_export: Path) -> None:
    import asyncio

    from kfreeze_tui.app import make_app

    sys.path.insert(0, str(Path(__file__).parents[1] / "ui"))
    from helpers import screen_text, wait_for_explorer

    async def run() -> None:
        app = make_app(str(cli_export / "m.toml"))
        async with app.run_test(size=(130, 40)) as pilot:
            explorer = await wait_for_explorer(pilot)
            assert explorer.plan.boundary == (143,)
            assert explorer.plan.bn_policy.value == "trainable"
            assert explorer.head.dropout == 0.0
            assert "trainable 14,976,000 ||" in screen_text(pilot)

    asyncio.run(run())


def test_several_outputs_are_never_lost_silently(
    keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export says which outputs it drops, --keep-output keeps one (a misspelt name gets the
    nearest), check names a model's outputs and warns of a plan that drops one."""
    from kfreeze_tui.cli import run

    x = keras.Input((16,))
    trunk = keras.layers.Dense(32, "relu", name="trunk")(x)
    cls = keras.layers.Dense(3, "softmax", name="cls")(trunk)
    reg = keras.layers.Dense(1, name="reg")(trunk)
    source = tmp_path / "two.keras"
    keras.Model(x, [cls, reg]).save(source)
    export = ["export", str(source), "--freeze-before", "trunk", "--classes", "2"]

    assert run([*export, "-o", str(tmp_path / "a.keras"), "--plan", str(tmp_path / "a.toml")]) == 0
    out = capsys.readouterr().out
    assert "head: attaches to trunk (None, 32); replaces cls; drops outputs: reg" in out
    assert "outputs: head_output (the new head); dropped: reg" in out

    assert run(["check", str(tmp_path / "a.toml"), "--json", "--no-step"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["outputs"] == [{"name": "head_output", "shape": [None, 2]}]
    (dropped,) = [f for f in document["findings"] if f["code"] == "dropped_output"]
    assert dropped["message"].startswith("the plan drops the model's output reg:")

    assert run([*export, "-o", str(tmp_path / "bad.keras"), "--keep-output", "rge"]) == 2
    assert 'did you mean "reg"?' in capsys.readouterr().err
    assert not (tmp_path / "bad.keras").exists()

    assert run([*export, "-o", str(tmp_path / "b.keras"), "--keep-output", "reg"]) == 0
    assert "outputs: head_output (the new head), reg (kept)" in capsys.readouterr().out
    assert run(["check", str(tmp_path / "b.keras"), "--no-step"]) == 0
    assert "2 outputs: head_output (None, 2), reg (None, 1)" in capsys.readouterr().out
