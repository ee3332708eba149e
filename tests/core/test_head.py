"""Head defaults and every validation message, on walked real models."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.plan.head import (
    DenseSpec,
    HeadSpec,
    default_feature_layer,
    head_layers,
    resolved_pooling,
    validate,
)


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

    from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
    from kfreeze_tui.core.plan.head import new_totals
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.train.build import build_model

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


# -- the old classifier, recognised by what it is ---------------------------------------------


def _patterns(keras: Any) -> dict[str, Any]:
    """Small real models, one per way a classifier (or no classifier) ends a model."""
    layers = keras.layers
    models: dict[str, Any] = {}

    x = keras.Input((8, 8, 3))
    y = layers.Conv2D(4, 3, name="conv")(x)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dropout(0.2, name="drop")(y)
    models["gap_dropout_dense"] = keras.Model(x, layers.Dense(10, "softmax", name="cls")(y))

    x = keras.Input((8,))
    y = layers.Dense(16, name="hidden")(x)
    y = layers.Dense(10, name="logits")(y)
    models["dense_activation"] = keras.Model(x, layers.Activation("softmax", name="act")(y))

    x = keras.Input((20,), dtype="int32")
    y = layers.Embedding(100, 8, name="emb")(x)
    y = layers.Bidirectional(layers.LSTM(6), name="bilstm")(y)
    models["embedding_bilstm"] = keras.Model(x, layers.Dense(3, "softmax", name="cls")(y))

    x = keras.Input((20,), dtype="int32")
    y = layers.GRU(6, name="gru")(layers.Embedding(100, 8, name="emb")(x))
    models["embedding_gru"] = keras.Model(x, layers.Dense(3, name="cls")(y))

    x = keras.Input((8, 8, 1))
    y = layers.Dense(128, "relu", name="hidden")(layers.Flatten(name="flat")(x))
    models["flatten_hidden_dense"] = keras.Model(x, layers.Dense(10, "softmax", name="cls")(y))

    # Siamese: one encoder on two inputs, |a - b| by a plain operation, a 1-unit sigmoid.
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    encoder = keras.Sequential(
        [keras.Input((8,)), layers.Dense(16, "relu"), layers.Dense(8)], name="encoder"
    )
    distance = keras.ops.abs(layers.Subtract(name="sub")([encoder(a), encoder(b)]))
    models["siamese"] = keras.Model([a, b], layers.Dense(1, "sigmoid", name="same")(distance))

    # A feature extractor whose output is normalized features, not scores.
    x = keras.Input((8,))
    y = layers.Dense(32, name="embed")(layers.Dense(64, name="hidden")(x))
    models["normalized_features"] = keras.Model(x, layers.UnitNormalization(name="l2")(y))

    x = keras.Input((16,))
    trunk = layers.Dense(32, "relu", name="trunk")(x)
    cls = layers.Dense(3, "softmax", name="cls")(trunk)
    reg = layers.Dense(1, name="reg")(layers.Dense(8, name="reg_hidden")(trunk))
    models["two_outputs"] = keras.Model(x, [cls, reg], name="two_outputs")

    # Features that end in a ReLU Dense (an embedding model): nothing to replace.
    x = keras.Input((8,))
    y = layers.Dense(64, name="hidden")(x)
    models["relu_features"] = keras.Model(x, layers.Dense(32, "relu", name="embed")(y))

    # Outputs of one shape, listed in another order than the layers: Keras's order counts.
    x = keras.Input((16,))
    trunk = layers.Dense(32, "relu", name="trunk")(x)
    cls = layers.Dense(3, "softmax", name="cls")(trunk)
    aux = layers.Dense(3, name="aux")(layers.Dense(8, name="aux_hidden")(trunk))
    models["aux_first"] = keras.Model(x, [aux, cls], name="aux_first")
    return models


@pytest.fixture(scope="module")
def patterns(keras: Any) -> dict[str, Any]:
    return _patterns(keras)


@pytest.mark.parametrize(
    ("name", "attaches", "replaces"),
    [
        ("gap_dropout_dense", "gap (None, 4)", ["drop", "cls"]),
        ("dense_activation", "hidden (None, 16)", ["logits", "act"]),
        ("embedding_bilstm", "bilstm (None, 12)", ["cls"]),
        ("embedding_gru", "gru (None, 6)", ["cls"]),
        ("flatten_hidden_dense", "hidden (None, 128)", ["cls"]),
        ("siamese", "the input of same (None, 8)", ["same"]),
        ("normalized_features", "l2 (None, 32)", []),
        ("two_outputs", "trunk (None, 32)", ["cls"]),
        ("relu_features", "embed (None, 32)", []),
        ("aux_first", "aux_hidden (None, 8)", ["aux"]),
    ],
)
def test_the_default_head_replaces_the_old_classifier(
    patterns: dict[str, Any], name: str, attaches: str, replaces: list[str]
) -> None:
    from kfreeze_tui.core.plan.head import placement

    info = walk(patterns[name])
    found = placement(info, HeadSpec())
    assert found is not None and validate(info, HeadSpec()) == []
    assert found.attach.text == attaches
    assert [row.name for row in found.replaced] == replaces


@pytest.mark.parametrize(
    ("architecture", "attaches", "replaces"),
    [
        ("MobileNet", "GlobalAveragePooling2D", "Dropout Conv2D Reshape Activation"),
        ("MobileNetV3Small", "Activation", "Dropout Conv2D Flatten Activation"),
    ],
)
def test_keras_applications_tops(
    keras: Any, architecture: str, attaches: str, replaces: str
) -> None:
    """A 1x1 convolution on a 1x1 map, reshaped, is MobileNet's classifier (the 1x1
    convolution before MobileNetV3's dropout is features: it stays)."""
    from kfreeze_tui.core.plan.head import placement

    model = getattr(keras.applications, architecture)(
        weights=None, include_top=True, input_shape=(224, 224, 3)
    )
    found = placement(walk(model), HeadSpec())
    assert found is not None and found.attach.layer.class_name == attaches
    assert found.attach.shape == (None, 1, 1, 1024)
    assert " ".join(row.class_name for row in found.replaced) == replaces


@pytest.mark.parametrize(
    ("name", "keep"),
    [("gap_dropout_dense", ()), ("siamese", ()), ("two_outputs", ()), ("two_outputs", ("reg",))],
)
def test_new_totals_equal_keras_on_every_pattern(
    patterns: dict[str, Any], name: str, keep: tuple[str, ...]
) -> None:
    from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
    from kfreeze_tui.core.plan.head import new_totals
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.train.build import build_model

    model = patterns[name]
    view = PlanView(walk(model))
    plan = FreezePlan(boundary=view.info.top_level[2].path)
    head = HeadSpec(hidden=(DenseSpec(4),), classes=2, activation="sigmoid", keep=keep)
    expected = new_totals(view, plan, head)
    built = build_model(model, view, plan, head, CompileSpec(enabled=False))
    trainable = sum(math.prod(v.shape) for v in built.trainable_weights)
    assert expected is not None
    assert (expected.total, expected.trainable) == (built.count_params(), trainable)
    assert built.output_names == ["head_output", *keep]
    # The head never goes on top of the old scores: its input is the attached features.
    assert built.get_layer("head_dense_1").input.shape[-1] != 1


def test_outputs_to_replace_and_keep(patterns: dict[str, Any]) -> None:
    from kfreeze_tui.core.plan.head import model_outputs, placement

    info = walk(patterns["two_outputs"])
    assert [row.name for row in model_outputs(info)] == ["cls", "reg"]
    aux_first = patterns["aux_first"]
    assert [row.name for row in model_outputs(walk(aux_first))] == aux_first.output_names
    default = placement(info, HeadSpec())
    assert default is not None
    assert default.lines() == [
        "attaches to trunk (None, 32)",
        "replaces cls",
        "drops outputs: reg",
    ]
    kept = placement(info, HeadSpec(keep=("reg",)))
    assert kept is not None and kept.new_outputs == ("head_output", "reg")
    assert kept.lines()[-1] == "keeps: reg"
    other = placement(info, HeadSpec(replace="reg"))
    assert other is not None and [row.name for row in other.replaced] == ["reg"]
    assert [row.name for row in other.dropped] == ["cls"]
    assert validate(info, HeadSpec(keep=("rge",))) == [
        "The output 'rge' to keep is not an output of the model (its outputs: cls, reg); "
        'did you mean "reg"?'
    ]
    assert "cannot keep it too" in validate(info, HeadSpec(keep=("cls",)))[0]
    assert "'clss' to replace" in validate(info, HeadSpec(replace="clss"))[0]


def test_a_plan_carries_the_outputs_and_refuses_a_misspelt_one(
    patterns: dict[str, Any], tmp_path: Any
) -> None:
    from dataclasses import replace

    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.plan.planfile import check_outputs, document, read, to_toml

    view = PlanView(walk(patterns["two_outputs"]))
    doc = document("two.keras", LoadOptions(), view, FreezePlan(), HeadSpec(), CompileSpec())
    text = to_toml(doc)
    assert 'replace = "cls"\nkeep = []' in text and "dropped (here: reg)" in text
    path = tmp_path / "two.toml"
    path.write_text(text.replace("keep = []", 'keep = ["rge"]'))
    misspelt = read(path)
    assert misspelt.head.keep == ("rge",)
    with pytest.raises(PlanError, match=r"keep 'rge' is not an output .* did you mean \"reg\""):
        check_outputs(misspelt, view.info)
    check_outputs(replace(misspelt, head=replace(misspelt.head, keep=("reg",))), view.info)
