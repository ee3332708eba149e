"""Legacy model files, written once per session by ``tf_keras`` in a process of its own.

The ``legacy_files`` fixture is shared with every test folder through ``tests/conftest.py``.

``make_files.py`` imports ``tf_keras`` (Keras 2), writes the files and records what
``tf_keras`` computes on a fixed batch; the tests compare kfreeze's Keras 3 models with that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).parent
CUSTOM_OBJECTS = HERE / "custom_objects.py"


@dataclass
class LegacyFiles:
    """The files ``tf_keras`` wrote and what it computed with each."""

    folder: Path
    cases: dict[str, Any]
    arrays: dict[str, Any]
    #: For each argument Keras 3 dropped, the default each tf_keras class gave it.
    defaults: dict[str, dict[str, Any]]
    #: What each tf_keras activation gives on make_files.ACTIVATION_GRID.
    activations: dict[str, list[float]]

    def path(self, case: str) -> Path:
        return self.folder / self.cases[case]["file"]

    def inputs(self, case: str) -> Any:
        batch = [self.arrays[f"{case}__in{i}"] for i in range(self.cases[case]["inputs"])]
        return batch[0] if len(batch) == 1 else batch

    def output(self, case: str) -> Any:
        return self.arrays[f"{case}__out"]


@pytest.fixture(scope="session")
def legacy_files(tmp_path_factory: pytest.TempPathFactory) -> LegacyFiles:
    folder = tmp_path_factory.mktemp("legacy")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
    result = subprocess.run(
        [sys.executable, str(HERE / "make_files.py"), str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((folder / "oracle.json").read_text())
    with np.load(folder / "oracle.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return LegacyFiles(
        folder, document["cases"], arrays, document["defaults"], document["activations"]
    )
