"""The installed command in a pseudo-terminal that is not a plain xterm: TERM=dumb, and an
nvidia-smi that hangs while the explorer quits."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pexpect
from fakes import nvidia_smi
from test_terminal import Terminal


def _command() -> list[str]:
    exe = shutil.which("kfreeze")
    return [exe] if exe else [sys.executable, "-m", "kfreeze_tui"]


def test_a_dumb_terminal_gets_the_layer_table() -> None:
    kfreeze_command = _command()
    env = {**os.environ, "TERM": "dumb", "COLUMNS": "120", "LINES": "30"}
    child = pexpect.spawn(
        kfreeze_command[0], [*kfreeze_command[1:], "resnet50", "--weights", "none"], env=env,
        dimensions=(30, 120), timeout=180,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    output = child.before.decode()
    assert child.exitstatus == 0, output
    assert "kfreeze: note: the explorer needs a terminal that can draw full-screen" in output
    assert "conv5_block1_1_conv" in output and "Total params: 23,587,712" in output
    assert "\x1b" not in output  # no colour, no cursor movement, no alternate screen
    bare = pexpect.spawn(kfreeze_command[0], kfreeze_command[1:], env=env, timeout=60)
    bare.expect(pexpect.EOF)
    bare.close()
    said = bare.before.decode().strip()
    assert bare.exitstatus == 2
    assert said.startswith("kfreeze: error: the explorer needs a terminal that can draw")
    assert len(said.splitlines()) == 1


def test_quitting_does_not_wait_for_a_hanging_nvidia_smi(
    small_model_file: Path, tmp_path: Path
) -> None:
    kfreeze_command = _command()
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "PATH": nvidia_smi(tmp_path, "sleep 60"),  # a wedged driver
    }
    terminal = Terminal([*kfreeze_command, str(small_model_file)], env)
    try:
        terminal.wait_for(lambda text: "stem_conv" in text and "trainable" in text)
        start = time.monotonic()
        terminal.send("q")
        terminal.child.expect(pexpect.EOF, timeout=30)
        seconds = time.monotonic() - start
        assert seconds < 4, seconds  # not gpus.TIMEOUT (5 s after the screen came), nor 60 s
        terminal.child.close()
        assert terminal.child.exitstatus == 0
    finally:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)
