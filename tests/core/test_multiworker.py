"""The exported script's ``--strategy multiworker`` and ``mirrored`` on real tf.distribute
workers: two processes on 127.0.0.1 that find each other through ``TF_CONFIG`` (Keras 3's own
model.fit fails there, keras-team/keras issue 20585: the script trains with a loop of its
own), and MirroredStrategy in one process, checked against model.fit of the script exported
without a strategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Two phases of one epoch each: the head alone, then block2_conv and the head.
PHASES = ("--phase", "head:1:1e-2", "--phase", "block2_conv:1:1e-2")
#: Trainable in no phase (BatchNormalization frozen in every one): bitwise unchanged.
FROZEN = ("stem_conv", "stem_bn", "block1_conv", "block1_bn")
TIMEOUT = 150  # seconds for a run of the script (both workers)

#: Imports the exported script as its docstring says (which builds the model under its
#: strategy), trains every phase one epoch on 32 random examples (the same on every worker:
#: seed 0) and writes every weight before and after training, and the history.
DRIVER = """
import json, sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, {folder!r})
import {module} as script

out, start = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
if start:  # begin from another run's weights (the head is initialised at random)
    begin = np.load(start)
    for w in script.model.weights:
        w.assign(begin["before|" + w.path])
before = {{w.path: w.numpy() for w in script.model.weights}}
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 32, 32, 3)).astype("float32")
y = rng.integers(0, 3, size=(32,))
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
history = script.train(data, data.take(1), epochs=1, verbose=2)
arrays = {{"before|" + path: value for path, value in before.items()}}
arrays.update({{"after|" + w.path: w.numpy() for w in script.model.weights}})
np.savez(out, **arrays)
trainable = [w.path for w in script.model.trainable_weights]
with open(out + ".json", "w") as f:
    json.dump({{"history": history, "trainable": trainable}}, f)
"""


#: Runs the exported script as a program (``python SCRIPT ARGS``, through runpy), then
#: writes every weight of its model after training.
MAIN = """
import json, runpy, sys
import numpy as np

out, script, *args = sys.argv[1:]
sys.argv = [script, *args]
model = runpy.run_path(script, run_name="__main__")["model"]
np.savez(out, **{"after|" + w.path: w.numpy() for w in model.weights})
with open(out + ".json", "w") as f:
    json.dump({"trainable": [w.path for w in model.trainable_weights]}, f)
"""


def _images(folder: Path, keras: Any) -> Path:
    """Three class folders of eight random 32x32 images each."""
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (folder / name).mkdir(parents=True)
        for index in range(8):
            pixels = rng.integers(0, 256, (32, 32, 3)).astype("uint8")
            keras.utils.save_img(folder / name / f"{index}.png", pixels)
    return folder


def _export(run_cli: Any, model_file: Path, folder: Path, name: str, *extra: str) -> Path:
    """The script of the small CNN with PHASES and no dropout, written to FOLDER/NAME.py."""
    folder.mkdir(exist_ok=True)
    result = run_cli(
        "export", str(model_file), *PHASES, "--classes", "3", "--dropout", "0",
        "-o", str(folder / f"{name}.keras"), "--script", str(folder / f"{name}.py"), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    driver = folder / f"run_{name}.py"
    driver.write_text(DRIVER.format(folder=str(folder), module=name))
    return driver


def _free_ports(count: int) -> list[int]:
    """Ports of 127.0.0.1 free now: each bound to port 0 (the system picks), all held until
    every one is picked so that none is given twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _environment(tf_config: dict[str, Any] | None) -> dict[str, str]:
    """This environment, CPU only, with no proxy (gRPC would send 127.0.0.1 through one)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in {"http_proxy", "https_proxy", "all_proxy", "grpc_proxy"}
    }
    env.pop("TF_CONFIG", None)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", NO_PROXY="127.0.0.1,localhost")
    env["no_proxy"] = env["NO_PROXY"]
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _run(driver: Path, outs: list[Path], configs: list[dict[str, Any] | None], *args: str) -> None:
    """Run the driver once per output (each with its TF_CONFIG) at the same time; fail with
    each one's last error lines if one fails or they are not all done in TIMEOUT seconds."""
    logs = [out.with_suffix(".log") for out in outs]
    with ExitStack() as stack:
        processes = []
        for out, log, config in zip(outs, logs, configs, strict=True):
            handle = stack.enter_context(log.open("w"))
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(driver), str(out), *args],
                    cwd=out.parent,
                    env=_environment(config),
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + TIMEOUT
        try:
            for process in processes:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            late = [p for p in processes if p.poll() is None]
            for process in late:  # stragglers: a worker waits for ever for a dead peer
                process.kill()
                process.wait()
    tails = "\n".join(
        f"--- {log.name} (exit {p.returncode}):\n{log.read_text()[-2500:]}"
        for log, p in zip(logs, processes, strict=True)
    )
    assert not late, f"{len(late)} of {len(processes)} runs not done in {TIMEOUT} s\n{tails}"
    assert all(p.returncode == 0 for p in processes), tails


def _load(out: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Every weight before and after training, by path, and the history and trainables."""
    with np.load(out) as arrays:
        before = {k.split("|", 1)[1]: arrays[k] for k in arrays.files if k.startswith("before|")}
        after = {k.split("|", 1)[1]: arrays[k] for k in arrays.files if k.startswith("after|")}
    return before, after, json.loads(Path(f"{out}.json").read_text())


def _check_training(
    before: dict[str, np.ndarray], after: dict[str, np.ndarray], with_head: bool = True
) -> None:
    """The never-trainable layers' weights are bitwise unchanged; the others moved (the
    head's only when BEFORE has it)."""
    frozen = [path for path in before if path.split("/")[0] in FROZEN]
    assert len(frozen) == 2 + 4 + 2 + 4  # kernels, biases, BatchNorm's four
    for path in frozen:
        assert np.array_equal(before[path], after[path]), f"{path} changed"
    head = ("head_output/kernel", "head_output/bias") if with_head else ()
    for path in ("block2_conv/kernel", *head):
        assert not np.allclose(before[path], after[path]), f"{path} did not train"


def test_multiworker_script_trains_on_two_workers(
    run_cli: Any, small_model_file: Path, tmp_path: Path, keras: Any
) -> None:
    """python ft.py DATA --val DATA --epochs 1 --save out.keras on each of two workers."""
    _export(run_cli, small_model_file, tmp_path, "ft", "--strategy", "multiworker")
    script = tmp_path / "ft.py"
    assert "tf.distribute.MultiWorkerMirroredStrategy()" in script.read_text()
    data = _images(tmp_path / "data", keras)
    main = tmp_path / "main.py"
    main.write_text(MAIN)
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    configs: list[dict[str, Any] | None] = [
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        for index in range(2)
    ]
    outs = []
    for index in range(2):  # each worker in a folder of its own, as on two machines
        (tmp_path / f"worker{index}").mkdir()
        outs.append(tmp_path / f"worker{index}" / "weights.npz")
    args = (str(script), str(data), "--val", str(data), "--epochs", "1", "--save", "out.keras")
    _run(main, outs, configs, *args)
    (_, after0, run0), (_, after1, _) = (_load(out) for out in outs)
    # The same weights on both workers at the end, and the same metrics (the cluster's).
    assert after0.keys() == after1.keys()
    for path in after0:
        assert np.array_equal(after0[path], after1[path]), f"{path} ended apart"
    logs = [out.with_suffix(".log").read_text() for out in outs]
    epochs = [[line for line in log.splitlines() if line.startswith("Epoch ")] for log in logs]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1], logs  # one line per phase
    assert "val_loss: " in epochs[0][1]
    # The layers no phase trains are bitwise the source model's; block2_conv trained.
    source = {w.path: w.numpy() for w in keras.saving.load_model(small_model_file).weights}
    _check_training(source, after0, with_head=False)
    # After phase 2, block2_conv and the head train (block2_conv has no BatchNorm).
    assert {p.split("/")[0] for p in run0["trainable"]} == {"block2_conv", "head_output"}
    # The chief alone saved, what it trained; the other worker said so.
    saved = keras.saving.load_model(tmp_path / "worker0" / "out.keras")
    for weight in saved.weights:
        assert np.array_equal(weight.numpy(), after0[weight.path]), weight.path
    assert not (tmp_path / "worker1" / "out.keras").exists()
    assert "saved nothing: out.keras is the chief's to write" in logs[1]


def test_mirrored_script_trains_as_fit_does(
    run_cli: Any, small_model_file: Path, tmp_path: Path
) -> None:
    mirrored = _export(run_cli, small_model_file, tmp_path, "mirrored", "--strategy", "mirrored")
    plain = _export(run_cli, small_model_file, tmp_path, "plain")
    assert "fit_distributed(" in mirrored.with_name("mirrored.py").read_text()
    assert "fit_distributed" not in plain.with_name("plain.py").read_text()
    ours, reference = tmp_path / "mirrored.npz", tmp_path / "plain.npz"
    _run(mirrored, [ours], [None])
    # Keras's own model.fit (the script without a strategy), from the same weights.
    _run(plain, [reference], [None], str(ours))
    before, after, run = _load(ours)
    _check_training(before, after)
    fit_before, fit_after, fit_run = _load(reference)
    for path in before:
        assert np.array_equal(before[path], fit_before[path])
        np.testing.assert_allclose(after[path], fit_after[path], rtol=1e-5, atol=1e-6)
    assert run["history"].keys() == fit_run["history"].keys()
    for key, values in run["history"].items():
        assert values == pytest.approx(fit_run["history"][key], rel=1e-4), key
