"""The catalog follows the installed Keras and knows every architecture's input size."""

from __future__ import annotations

import inspect
from typing import Any

from kfreeze_tui.core.model import catalog


def test_catalog_matches_keras_applications(keras: Any) -> None:
    offered = {
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and inspect.isfunction(getattr(keras.applications, name))
    }
    names = {arch.name for arch in catalog.architectures()}
    assert names == offered
    assert len(names) >= 40


def test_every_architecture_has_a_known_default_size() -> None:
    missing = [a.name for a in catalog.architectures() if a.name not in catalog.DEFAULT_SIZES]
    assert missing == []


def test_default_sizes() -> None:
    sizes = {a.name: a.default_size for a in catalog.architectures()}
    assert sizes["ResNet50"] == 224
    assert sizes["InceptionV3"] == 299 and sizes["Xception"] == 299
    assert sizes["EfficientNetB7"] == 600 and sizes["EfficientNetV2L"] == 480
    assert sizes["NASNetLarge"] == 331


def test_default_size_is_what_keras_builds_with_include_top(keras: Any) -> None:
    # With include_top and no input shape Keras uses the architecture's own default size.
    for name in ("InceptionV3", "EfficientNetB1"):
        model = getattr(keras.applications, name)(weights=None, include_top=True)
        assert tuple(model.input_shape[1:3]) == (catalog.find(name).default_size,) * 2


def test_names_ignore_case() -> None:
    assert catalog.find("resnet50").name == "ResNet50"
    assert catalog.find("EFFICIENTNET_V2L").name == "EfficientNetV2L"
    assert catalog.find("resnet5") is None
    assert catalog.closest("resnet5")[0] == "ResNet50"
    assert catalog.find("ResNet50").module.endswith("applications.resnet")
