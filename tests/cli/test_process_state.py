"""``kfreeze_tui.cli.run`` inside another program: a command may import TensorFlow (which sets
its environment, points descriptor 2 at a log and raises the recursion limit), yet once it
returns the process is as it was: the same standard streams, file descriptors, environment
and recursion limit. The tests run the commands in this process and rely on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = """
import json, os, sys

def state():
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return {
        "streams": [id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)],
        "fds": fds,
        "environ": dict(os.environ),
        "limit": sys.getrecursionlimit(),
    }

from kfreeze_tui.cli import run

states = [state()]
for _ in range(2):
    code = run(["layers", sys.argv[1], "--json", "--no-cache"])
    states.append(state())
states.append("keras" in sys.modules and "tensorflow" in sys.modules)
print(json.dumps([code, *states]), file=sys.stderr)
"""


def _same_except_new_fds(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["streams"] == before["streams"]
    assert after["environ"] == before["environ"]
    assert after["limit"] == before["limit"]
    # Every descriptor open before still points where it did (0, 1 and 2 included); the
    # ones TensorFlow opens for itself when it is first imported stay TensorFlow's.
    assert {fd: after["fds"].get(fd) for fd in before["fds"]} == before["fds"]


def test_a_command_leaves_the_process_as_it_found_it(small_model_file: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "CUDA_VISIBLE_DEVICES": "3"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(small_model_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**env, "PYTHONPATH": ":".join(sys.path)},
    )
    code, fresh, first, second, imported = json.loads(result.stderr.strip().splitlines()[-1])
    assert code == 0 and imported, result.stderr
    assert [json.loads(line)["model"] for line in result.stdout.splitlines()] == ["small_cnn"] * 2
    assert fresh["limit"] < 20_000  # the command raised it for Keras, and put it back
    assert fresh["environ"]["CUDA_VISIBLE_DEVICES"] == "3"
    _same_except_new_fds(fresh, first)
    assert second == first  # a second command opens nothing it does not close


def test_a_command_in_this_process_leaves_it_as_it_was(small_model_file: Path, capsys: Any) -> None:
    import os

    from kfreeze_tui.cli import run

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_500)  # the command raises it for Keras while it runs
    before = (sys.stdout, sys.stderr, dict(os.environ), sys.getrecursionlimit())
    fds = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)}
    try:
        assert run(["layers", str(small_model_file), "--json", "--no-cache"]) == 0
        assert (sys.stdout, sys.stderr, dict(os.environ), sys.getrecursionlimit()) == before
    finally:
        sys.setrecursionlimit(limit)
    assert {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)} == fds
    assert json.loads(capsys.readouterr().out)["model"] == "small_cnn"
