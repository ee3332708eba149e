"""Start-up and memory of the TUI against plain Keras, measured in the same run.

    python benchmarks/startup.py [--runs 3]

Runs the installed `kfreeze resnet50 --weights none` in a pseudo-terminal and measures:

* first frame: time until the loading view is on the terminal, against the time of
  ``python -c "import keras"`` (target <= 0.25);
* interactive: time until ResNet50's tree and counts are on the terminal, against a bare
  script that imports Keras, builds ResNet50 at 224 and walks its layers (target <= 1.15);
* peak memory (VmHWM) with ResNet50 open, against the same bare script (target <= 1.2);
* reopen: the same as "interactive" when the layer-table cache already holds ResNet50's
  table, against the same bare script (target <= 0.35).

The first-open runs pass ``--no-cache``; the cache lives in a temporary folder
(``XDG_CACHE_HOME``) that one untimed run fills before the reopen runs.

Each figure is the median of --runs runs; the two sides alternate so that load on the
machine hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pexpect

BARE_SCRIPT = """
import os, resource, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
import keras
model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
rows = [(i, l.name, type(l).__name__, l.output.shape, l.count_params(), l.trainable)
        for i, l in enumerate(model.layers)]
print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stdout


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def tui_run(command: list[str]) -> tuple[float, float, int]:
    """Seconds to the first frame, seconds to the interactive tree, peak KiB."""
    env = {**os.environ, "TERM": "xterm-256color"}
    start = time.perf_counter()
    child = pexpect.spawn(command[0], command[1:], dimensions=(40, 120), env=env)
    raw = b""
    first = interactive = None
    while interactive is None:
        with contextlib.suppress(pexpect.TIMEOUT):  # nothing new on the terminal yet
            raw += child.read_nonblocking(65536, timeout=0.01)
        now = time.perf_counter() - start
        if first is None and b"Opening" in raw:
            first = now
        if b"trainable " in raw and b"conv1_conv" in raw:  # the status headline
            interactive = now
        if now > 120:
            raise RuntimeError("the tree never appeared")
    peak = vm_hwm_kib(child.pid)
    child.send("q")
    child.expect(pexpect.EOF, timeout=30)
    # From the cache the tree can be ready before the loading view was ever drawn.
    return first if first is not None else interactive, interactive, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    exe = shutil.which("kfreeze")
    kfreeze = [exe] if exe else [sys.executable, "-m", "kfreeze_tui"]
    import_keras: list[float] = []
    bare: list[float] = []
    bare_peak: list[int] = []
    first: list[float] = []
    interactive: list[float] = []
    tui_peak: list[int] = []
    reopen: list[float] = []
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="kfreeze-bench-cache-")
    tui_run([*kfreeze, "resnet50", "--weights", "none"])  # fills the cache
    for _ in range(runs):
        reopen.append(tui_run([*kfreeze, "resnet50", "--weights", "none"])[1])
        import_keras.append(timed([sys.executable, "-c", "import keras"])[0])
        seconds, out = timed([sys.executable, "-c", BARE_SCRIPT])
        bare.append(seconds)
        bare_peak.append(int(out.split("peak_kib")[1].split()[0]))
        f, i, p = tui_run([*kfreeze, "resnet50", "--weights", "none", "--no-cache"])
        first.append(f)
        interactive.append(i)
        tui_peak.append(p)
    med = statistics.median
    print(f"runs: {runs} (medians)")
    print(f"import keras:               {med(import_keras):6.2f} s")
    print(f"bare keras script:          {med(bare):6.2f} s, peak {med(bare_peak) / 1024:6.0f} MiB")
    print(f"kfreeze first frame:        {med(first):6.2f} s")
    print(
        f"kfreeze tree interactive:   {med(interactive):6.2f} s, peak "
        f"{med(tui_peak) / 1024:6.0f} MiB"
    )
    print(f"kfreeze reopen (cached):    {med(reopen):6.2f} s")
    print(f"first frame / import keras  = {med(first) / med(import_keras):.2f}  (target <= 0.25)")
    print(f"interactive / bare script   = {med(interactive) / med(bare):.2f}  (target <= 1.15)")
    print(f"peak memory / bare script   = {med(tui_peak) / med(bare_peak):.2f}  (target <= 1.2)")
    print(f"reopen / bare script        = {med(reopen) / med(bare):.2f}  (target <= 0.35)")


if __name__ == "__main__":
    main()
