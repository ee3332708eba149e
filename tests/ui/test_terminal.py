"""End to end: the installed `kfreeze` command in a pseudo-terminal, read through pyte."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest

COLUMNS, LINES = 110, 32


class Terminal:
    """A pseudo-terminal running a command, with a pyte screen that follows its output."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        cwd: Path | None = None,
        size: tuple[int, int] = (COLUMNS, LINES),
    ) -> None:
        columns, lines = size
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        env = {**env, "COLUMNS": str(columns), "LINES": str(lines)}
        self.child = pexpect.spawn(
            command[0], command[1:], dimensions=(lines, columns), env=env, timeout=5, cwd=cwd
        )
        self.raw = b""

    def pump(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.raw += data
            self.stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if predicate(self.text):
                return self.text
            if not self.child.isalive():
                break
        raise AssertionError(f"the screen never matched; it shows:\n{self.text}")

    def send(self, keys: str) -> None:
        for key in keys:
            self.child.send(key)
            time.sleep(0.05)
            self.pump()


@pytest.fixture
def kfreeze_command() -> list[str]:
    exe = shutil.which("kfreeze")
    return [exe] if exe else [sys.executable, "-m", "kfreeze_tui"]


def test_kfreeze_resnet50_in_a_terminal(kfreeze_command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # kfreeze must silence TensorFlow by itself
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # empty: the first open is a cold one
    terminal = Terminal([*kfreeze_command, "resnet50", "--weights", "none"], env, cwd=tmp_path)
    try:
        # The first frame comes before TensorFlow is imported.
        first = terminal.wait_for(lambda text: "Opening resnet50" in text, timeout=30)
        assert "Importing TensorFlow" in first or "Building ResNet50" in first
        terminal.wait_for(lambda text: "trainable" in text and "conv1_conv" in text)
        terminal.send("]]]]]f")
        text = terminal.wait_for(lambda text: "14,953,472" in text)
        assert "frozen 8,634,240" in text
        assert "boundary at 143 conv5_block1_1_conv" in text
        for noise in ("WARNING", "I0000", "absl", "cuda", "oneDNN"):
            assert noise not in text, noise
        terminal.send("b")
        terminal.wait_for(lambda text: "14,976,000" in text)
        # Export with the keyboard alone: e, then Enter for the default file names.
        terminal.send("e")
        terminal.wait_for(lambda text: "resnet50_finetune.keras" in text)
        terminal.send("\r")
        terminal.wait_for(lambda text: "Verified by loading it back" in text, timeout=180)
        assert (tmp_path / "resnet50_finetune.keras").is_file()
        assert (tmp_path / "resnet50_finetune.toml").is_file()
        assert (tmp_path / "resnet50_finetune.py").is_file()
        terminal.send("\r")
        terminal.send("F")  # a change after the export: quitting asks again
        terminal.send("q")
        terminal.wait_for(lambda text: "Quit without exporting?" in text)
        terminal.send("y")
        terminal.child.expect(pexpect.EOF, timeout=30)
        terminal.child.close()
        assert terminal.child.exitstatus == 0
        # TensorFlow's start-up lines never reached the terminal, not even between frames.
        assert b"absl::InitializeLog" not in terminal.raw
        assert b"cudart_stub" not in terminal.raw
    finally:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)
    # The second open comes from the layer-table cache the first one wrote; at 80x24 the
    # footer still shows Help and Quit.
    again = Terminal(
        [*kfreeze_command, "resnet50", "--weights", "none"], env, cwd=tmp_path, size=(80, 24)
    )
    try:
        text = again.wait_for(lambda text: "trainable" in text and "conv1_conv" in text)
        assert "Importing TensorFlow" not in text
        footer = again.wait_for(lambda text: "q Quit" in text.splitlines()[-1])
        assert "? Help" in footer.splitlines()[-1]
        again.send("q")
        again.child.expect(pexpect.EOF, timeout=30)
        again.child.close()
        assert again.child.exitstatus == 0
    finally:
        if again.child.isalive():
            again.child.terminate(force=True)


def test_explorer_refuses_a_pipe(kfreeze_command: list[str]) -> None:
    import subprocess

    result = subprocess.run(
        [*kfreeze_command, "resnet50"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "the explorer needs a terminal" in result.stderr
