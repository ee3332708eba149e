"""The progress line of a long load on standard error: redrawn in place and erased on a
terminal, one plain line otherwise, never on standard output.

The probe layer (tests/conftest.py) runs inside the load at a known point (three of the
five layers made), so what the line says there is known without timing anything.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.cli.progress_line import LoadProgressLine
from kfreeze_tui.core.model.loading import load


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_and_erased_before_the_load_returns(
    probe_layer: Any, probe_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    with LoadProgressLine(terminal, in_place=True, delay=0, interval=3600) as line:
        written: list[str] = []

        def during(stage: str) -> None:
            line.tick()
            line.tick()  # the same text is not drawn twice
            written.append(terminal.getvalue())

        monkeypatch.setattr(probe_layer, "during", staticmethod(during))
        load(str(probe_model_file))
        after_load = terminal.getvalue()
    assert re.fullmatch(r"\r\x1b\[KLoading probe\.keras: 3 of 5 layers, \d+ s", written[0])
    assert re.search(r"\r\x1b\[KLoading probe\.keras: connecting 3 of 5 layers, \d+ s$", written[1])
    assert re.search(r"reading weights, 3 of 5 layers, \d+ s\r\x1b\[K$", after_load)  # erased
    assert terminal.getvalue() == after_load  # nothing more once the load is over


def test_elsewhere_one_plain_line_per_load(
    probe_layer: Any, probe_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    with LoadProgressLine(log, in_place=False, delay=0, interval=3600) as line:
        monkeypatch.setattr(probe_layer, "during", staticmethod(lambda _stage: line.tick()))
        load(str(probe_model_file))
        assert re.fullmatch(r"Loading probe\.keras: 3 of 5 layers, \d+ s\n", log.getvalue())
        load(str(probe_model_file))
    assert log.getvalue().count("\n") == 2 and "\r" not in log.getvalue()


def test_a_quick_load_shows_nothing(
    probe_layer: Any, probe_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    with LoadProgressLine(terminal, in_place=True, delay=600, interval=3600) as line:
        monkeypatch.setattr(probe_layer, "during", staticmethod(lambda _stage: line.tick()))
        load(str(probe_model_file))
    assert terminal.getvalue() == ""


def test_kfreeze_layers_json_keeps_the_progress_on_stderr(
    probe_layer: Any,
    probe_model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from kfreeze_tui.cli import run

    monkeypatch.setenv("KFREEZE_PROGRESS_DELAY", "0")
    stderr = os.dup(2)  # the test's capture of standard error

    def hold_until_the_line_is_written(_stage: str) -> None:
        deadline = time.monotonic() + 60
        while os.fstat(stderr).st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    monkeypatch.setattr(probe_layer, "during", staticmethod(hold_until_the_line_is_written))
    try:
        code = run(["layers", str(probe_model_file), "--json", "--no-cache"])
    finally:
        os.close(stderr)
    out, err = capfd.readouterr()
    assert code == 0, err
    assert [row["name"] for row in json.loads(out)["layers"]][3] == "probe"  # stdout is JSON
    assert err.startswith("Loading probe.keras: ") and err.count("\n") == 1, err
    assert not [t for t in threading.enumerate() if t.name == "kfreeze-progress"]
