"""Head defaults and every validation message, on walked real models."""

from __future__ import annotations

from typing import Any

import pytest

from kfreeze_tui.core.head import (
    DenseSpec,
    HeadSpec,
    default_feature_layer,
    head_layers,
    resolved_pooling,
    validate,
)
from kfreeze_tui.core.layers import walk


@pytest.fixture(scope="module")
def resnet_top_info(keras: Any) -> Any:
    model = keras.applications.ResNet50(weights=None, include_top=True)
    return walk(model)


def test_default_feature_layer_is_the_output(resnet50_info: Any) -> None:
    layer = default_feature_layer(resnet50_info)
    assert layer.name == "conv5_block3_out"
    assert resolved_pooling(resnet50_info, HeadSpec()) == "avg"


def test_a_classifier_top_attaches_before_the_classifier(resnet_top_info: Any) -> None:
    layer = default_feature_layer(resnet_top_info)
    assert layer.name == "avg_pool" and layer.output_shape == (None, 2048)
    assert resolved_pooling(resnet_top_info, HeadSpec()) == "none"
    assert validate(resnet_top_info, HeadSpec()) == []


def test_head_layers_preview(resnet50_info: Any) -> None:
    head = HeadSpec(hidden=(DenseSpec(256),), dropout=0.3, classes=5)
    layers = head_layers(resnet50_info, head)
    assert [(h.class_name, h.output_shape, h.params) for h in layers] == [
        ("GlobalAveragePooling2D", (None, 2048), 0),
        ("Dense", (None, 256), 2048 * 256 + 256),
        ("Dropout", (None, 256), 0),
        ("Dense", (None, 5), 256 * 5 + 5),
    ]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (HeadSpec(classes=0), "Classes must be at least 1"),
        (HeadSpec(classes=1), "Softmax over 1 class always outputs 1.0"),
        (HeadSpec(dropout=1.0), "Dropout 1 is outside [0, 1)"),
        (HeadSpec(dropout=-0.1), "outside [0, 1)"),
        (HeadSpec(pooling="none"), "Pooling 'none' leaves the 4-D feature map (None, 7, 7, 2048)"),
        (
            HeadSpec(feature_layer="conv5_block3_outt"),
            "is not a layer of the model (did you mean conv5_block3_out",
        ),
        (HeadSpec(pooling="median"), "Pooling 'median' is not one of"),
        (HeadSpec(activation="relu"), "Activation 'relu' is not one of"),
        (HeadSpec(hidden=(DenseSpec(0),)), "Hidden layer 1 has 0 units"),
        (HeadSpec(hidden=(DenseSpec(8, "sigmoidal"),)), "unknown activation 'sigmoidal'"),
    ],
)
def test_validation_messages(resnet50_info: Any, head: HeadSpec, expected: str) -> None:
    problems = validate(resnet50_info, head)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert head_layers(resnet50_info, head) == []


def test_pooling_a_flat_feature(resnet_top_info: Any) -> None:
    problems = validate(resnet_top_info, HeadSpec(pooling="avg"))
    assert problems and "needs a 3-D or 4-D feature map" in problems[0]
    assert "flat features" in validate(resnet_top_info, HeadSpec(pooling="flatten"))[0]


def test_flatten_needs_known_dims(keras: Any) -> None:
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    problems = validate(walk(model), HeadSpec(pooling="flatten"))
    assert "Flatten needs known dimensions" in problems[0]


@pytest.mark.parametrize("include_top", [False, True])
def test_new_totals_equal_the_built_model(keras: Any, include_top: bool) -> None:
    import math

    from kfreeze_tui.core.build import CompileSpec, build_model
    from kfreeze_tui.core.head import new_totals
    from kfreeze_tui.core.plan import FreezePlan, PlanView

    model = keras.applications.MobileNetV3Small(
        weights=None, include_top=include_top, input_shape=(224, 224, 3)
    )
    view = PlanView(walk(model))
    plan = FreezePlan(boundary=view.info.top_level[100].path)
    head = HeadSpec(hidden=(DenseSpec(32),), classes=4)
    expected = new_totals(view, plan, head)
    built = build_model(model, view, plan, head, CompileSpec(enabled=False))
    trainable = sum(math.prod(v.shape) for v in built.trainable_weights)
    assert expected is not None
    assert (expected.total, expected.trainable) == (built.count_params(), trainable)
    assert new_totals(view, plan, HeadSpec(classes=0)) is None
