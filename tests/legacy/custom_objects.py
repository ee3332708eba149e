"""The custom classes of the legacy test files, for ``--custom-objects`` (Keras 3)."""

from __future__ import annotations

import sys
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).parent))

from legacy_custom import (
    make_custom_layer_class,
    make_custom_model_class,
    make_subclassed_class,
)

Scale = make_custom_layer_class(keras)
TransferModel = make_custom_model_class(keras)
CIFAR10Model = make_subclassed_class(keras)
