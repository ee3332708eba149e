"""Fixtures for the UI tests: real models, opened in the real app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def named_resnet_file(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet50 (random weights) saved as resnet50.keras with fixed layer names.

    Keras names an unnamed input ``input_layer``, ``input_layer_1``... depending on how many
    models the process built before; snapshots need the same names on every run.
    """
    inputs = keras.Input((224, 224, 3), name="input_layer")
    model = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inputs)
    path = tmp_path_factory.mktemp("snap") / "resnet50.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def named_resnet(named_resnet_file: Path) -> Any:
    from kfreeze_tui.core.model.loading import load

    return load(str(named_resnet_file))


@pytest.fixture(scope="session")
def small_loaded(small_model_file: Path) -> Any:
    from kfreeze_tui.core.model.loading import load

    return load(str(small_model_file))


@pytest.fixture(scope="session")
def wrapped_loaded(wrapped_base: Any) -> Any:
    from kfreeze_tui.core.model.loading import LoadedModel

    return LoadedModel(model=wrapped_base, source="wrapped", description="wrapped ResNet50")
