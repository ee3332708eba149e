"""What a user does with a LoRA export, run in a fresh process (a test starts it with
:func:`run_facts`): load the deployable file, build the model as the script does, compare
them, and train one step. Imports nothing of kfreeze, so the process sees only Keras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


def deploy_and_step(folder: str, stem: str, x: Any, y: Any) -> tuple[dict[str, Any], Any]:
    """Facts about ``FOLDER/STEM.keras`` and the model ``FOLDER/STEM.py`` builds, after one
    training step on ``(x, y)``; and that model."""
    import runpy
    import warnings

    import keras
    import numpy as np

    warnings.simplefilter("ignore")
    facts: dict[str, Any] = {}
    deployed = keras.saving.load_model(f"{folder}/{stem}.keras")
    facts["deployed_lora"] = [w.path for w in deployed.weights if "lora" in w.path]
    namespace = runpy.run_path(f"{folder}/{stem}.py")
    model = namespace["model"]
    facts["script_trainable"] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    facts["deployed_vs_script"] = float(np.max(np.abs(deployed(x) - model(x))))
    lora_b = [w for w in model.weights if w.path.endswith("lora_kernel_b")]
    frozen = [w for w in model.weights if not w.trainable]
    before_b = [w.numpy().copy() for w in lora_b]
    before_frozen = [w.numpy().copy() for w in frozen]
    model.train_on_batch(x, y)
    moved = (not np.array_equal(w.numpy(), b) for w, b in zip(lora_b, before_b, strict=True))
    facts["b_moved"] = sum(moved)
    facts["b_count"] = len(lora_b)
    facts["frozen_changed"] = sum(
        not np.array_equal(w.numpy(), b) for w, b in zip(frozen, before_frozen, strict=True)
    )
    return facts, namespace


def run_facts(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh Python, with this folder importable, and return the dict it
    prints as ``FACTS {json}``."""
    run = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r})\n{code}", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("FACTS "))
    return dict(json.loads(line.removeprefix("FACTS ")))
