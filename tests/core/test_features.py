"""The feature cache's verdict against Keras itself.

Shapes are compared with those of ``keras.Model(model.inputs, crossing)`` as Keras builds it;
purity with Keras's own calls: after the plan is applied (``build.apply_freeze``), the frozen
part called twice with ``training=True`` gives bitwise the same crossing tensors when the
verdict says cacheable, and an example's features do not depend on the other examples of its
batch; where it refuses (augmentation, a BatchNormalization trained by an exception), Keras's
calls do differ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from feature_oracle import per_example_shapes, run_twice

from kfreeze_tui.core.model.layers import ModelInfo, walk
from kfreeze_tui.core.plan.features import FeatureCache, feature_cache
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.core.train.build import apply_freeze
from kfreeze_tui.core.train.cost import cost_model, price_feature_cache


def _walked(model: Any) -> tuple[ModelInfo, PlanView]:
    info = walk(model, model.name)
    return info, PlanView(info)


def _at(view: PlanView, name: str, **plan: Any) -> tuple[FreezePlan, FeatureCache]:
    row = view.info.find(name)
    assert row is not None, name
    frozen = FreezePlan(boundary=row.path, **plan)
    return frozen, feature_cache(view, frozen)


def _batch(shape: tuple[int, ...], n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def _assert_pure(model: Any, view: PlanView, plan: FreezePlan, cache: FeatureCache) -> None:
    """Keras's frozen part, with the plan applied, is a pure function of each example."""
    apply_freeze(model, view, plan)
    batch = _batch(tuple(model.inputs[0].shape[1:]))
    first, second = run_twice(model, cache.tensors, batch)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    alone, _ = run_twice(model, cache.tensors, batch[:2])
    for a, b in zip(alone, first, strict=True):
        np.testing.assert_allclose(a, b[:2], rtol=1e-5, atol=1e-6)
    assert [tuple(a.shape[1:]) for a in first] == list(cache.shapes)
    assert sum(a[0].size for a in first) * 4 == cache.bytes_per_example


# -- models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet(keras: Any) -> Any:
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, include_top=False
    )


def _conv_bn(keras: Any, augment: str = "", dropout_first: bool = False) -> Any:
    """Conv, BatchNorm, (Dropout), conv, BatchNorm, Dropout, classifier; with ``augment``
    ``before``/``after``/``nested``, RandomFlip and RandomRotation before the first
    convolution, after the first block, or in a nested Sequential before it."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    x = inputs
    if augment == "before":
        x = layers.RandomFlip(name="flip")(x)
        x = layers.RandomRotation(0.2, name="rotate")(x)
    if augment == "nested":
        x = keras.Sequential(
            [layers.RandomFlip(name="flip"), layers.RandomRotation(0.2, name="rotate")],
            name="augmentation",
        )(x)
    x = layers.Conv2D(8, 3, padding="same", name="c1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    if dropout_first:
        x = layers.Dropout(0.5, name="drop1")(x)
    if augment == "after":
        x = layers.RandomFlip(name="flip")(x)
        x = layers.RandomRotation(0.2, name="rotate")(x)
    x = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.5, name="drop2")(x)
    outputs = layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"conv_bn_{augment or 'plain'}")


# -- purity oracle -----------------------------------------------------------------------------


def test_mobilenet_stage_start_is_pure(mobilenet: Any) -> None:
    _, view = _walked(mobilenet)
    plan, cache = _at(view, "block_6_expand")
    assert cache.cacheable, cache
    assert cache.tensors == ("block_5_add",)
    assert cache.describe() == "features cacheable: 4x4x16, 1.0 KiB per example"
    assert cache.to_json()["bytes_per_example"] == 4 * 4 * 16 * 4
    _assert_pure(mobilenet, view, plan, cache)


def test_mobilenet_head_only_caches_what_the_head_reads(mobilenet: Any) -> None:
    _, view = _walked(mobilenet)
    cache = feature_cache(view, FreezePlan(boundary=None))
    assert cache.cacheable and cache.tensors == ("out_relu",)
    assert list(cache.shapes) == [tuple(mobilenet.output.shape[1:])]
    # The head named elsewhere: what it reads is cached.
    named = feature_cache(
        view, FreezePlan(boundary=None), HeadSpec(feature_layer="block_16_project")
    )
    assert named.tensors == ("block_16_project",)
    assert list(named.shapes) == per_example_shapes(mobilenet, ("block_16_project",))


def test_conv_bn_model_is_pure_with_batch_norm_frozen(keras: Any) -> None:
    model = _conv_bn(keras)
    _, view = _walked(model)
    plan, cache = _at(view, "c2")
    assert cache.cacheable and cache.tensors == ("relu1",)
    assert cache.describe() == "features cacheable: 16x16x8, 8.0 KiB per example"
    _assert_pure(model, view, plan, cache)


def test_dropout_before_the_boundary_is_off_in_the_cache(keras: Any) -> None:
    model = _conv_bn(keras, dropout_first=True)
    _, view = _walked(model)
    plan, cache = _at(view, "c2")
    assert cache.cacheable
    assert "dropout before the boundary is off when features are cached" in cache.reason
    apply_freeze(model, view, plan)
    import keras as k

    part = k.Model(model.inputs[0], model.get_layer("drop1").output)
    batch = _batch((16, 16, 3))
    # The features are computed in inference mode, where Keras's Dropout is the identity.
    assert np.array_equal(np.asarray(part(batch, training=False)), np.asarray(part(batch)))
    assert np.array_equal(
        np.asarray(part(batch, training=False)),
        np.asarray(k.Model(model.inputs[0], model.get_layer("relu1").output)(batch, training=True)),
    )


def test_batch_norm_trained_by_an_exception_refuses(keras: Any) -> None:
    model = _conv_bn(keras)
    _, view = _walked(model)
    bn1 = view.info.find("bn1")
    assert bn1 is not None
    plan, _ = _at(view, "c2")
    plan = plan.toggled_exception(bn1.path)
    cache = feature_cache(view, plan)
    assert not cache.cacheable and cache.bytes_per_example == 0 and cache.tensors == ()
    assert "BatchNormalization bn1 before the boundary trains" in cache.reason
    assert cache.describe().startswith("features not cacheable: BatchNormalization bn1")
    # Keras agrees: in training mode, an example's features depend on its batch.
    apply_freeze(model, view, plan)
    batch = _batch((16, 16, 3))
    alone, _ = run_twice(model, ("relu1",), batch[:2])
    together, _ = run_twice(model, ("relu1",), batch)
    assert not np.allclose(alone[0], together[0][:2], atol=1e-4)


def test_augmentation_before_the_boundary_refuses(keras: Any) -> None:
    model = _conv_bn(keras, augment="before")
    _, view = _walked(model)
    plan, cache = _at(view, "c2")
    assert not cache.cacheable
    assert cache.reason == "RandomFlip (flip) before the boundary changes its output every epoch"
    apply_freeze(model, view, plan)
    first, second = run_twice(model, ("relu1",), _batch((16, 16, 3)))
    assert not np.array_equal(first[0], second[0])  # Keras draws again on every call


def test_augmentation_in_a_nested_model_refuses(keras: Any) -> None:
    model = _conv_bn(keras, augment="nested")
    _, view = _walked(model)
    _, cache = _at(view, "c2")
    assert not cache.cacheable
    assert cache.reason.startswith("RandomFlip (flip) before the boundary")


def test_augmentation_after_the_boundary_is_cacheable(keras: Any) -> None:
    model = _conv_bn(keras, augment="after")
    _, view = _walked(model)
    plan, cache = _at(view, "flip")
    assert cache.cacheable and cache.tensors == ("relu1",)
    _assert_pure(model, view, plan, cache)
    # The boundary after the augmentation: it runs before the cut again.
    _, later = _at(view, "c2")
    assert not later.cacheable and "RandomRotation (rotate)" not in later.reason
    assert later.reason.startswith("RandomFlip (flip)")


# -- refusals ----------------------------------------------------------------------------------


def test_nothing_frozen_and_exceptions_and_lora_refuse(keras: Any) -> None:
    model = _conv_bn(keras)
    _, view = _walked(model)
    _, first = _at(view, "c1")
    assert not first.cacheable and first.reason == "nothing is frozen before the boundary"
    assert feature_cache(view, FreezePlan(boundary=view.first_path())).reason == (
        "nothing is frozen before the boundary"
    )
    c1 = view.info.find("c1")
    assert c1 is not None
    plan, _ = _at(view, "c2")
    trained = feature_cache(view, plan.toggled_exception(c1.path))
    assert trained.reason == "Conv2D c1 before the boundary trains (an exception)"
    lora = feature_cache(view, plan.with_lora(LoraSpec(rank=2, targets="c1")))
    assert lora.reason == "c1 before the boundary takes LoRA (it trains)"
    # An exception that freezes a layer after the boundary changes nothing.
    c2 = view.info.find("c2")
    assert c2 is not None
    assert feature_cache(view, plan.toggled_exception(c2.path)).cacheable
    # Head only with an exception that trains a layer: nothing is frozen whole.
    head_only = FreezePlan(boundary=None).toggled_exception(c1.path)
    assert not feature_cache(view, head_only).cacheable


def test_inside_a_subclassed_layer_refuses(keras: Any) -> None:
    inputs = keras.Input((6, 16), name="tokens")
    x = keras.layers.Dense(16, name="embed")(inputs)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(x, x)
    outputs = keras.layers.Dense(3, name="out")(x)
    info, view = _walked(keras.Model(inputs, outputs))
    key = next(row for row in info.layers if row.path[:-1] == info.find("mha").path)  # type: ignore[union-attr]
    cache = feature_cache(view, FreezePlan(boundary=info.layers[info.layers.index(key) + 1].path))
    assert not cache.cacheable
    assert cache.reason == "a partial freeze inside the subclassed layer mha"
    # Before the layer, the cut is clean and cacheable.
    _, before = _at(view, "mha")
    assert before.cacheable and before.shapes == ((6, 16),)


def test_variable_shape_refuses(keras: Any) -> None:
    inputs = keras.Input((None, 8), name="sequence")
    x = keras.layers.Dense(8, name="d1")(inputs)
    outputs = keras.layers.Dense(2, name="d2")(x)
    _, view = _walked(keras.Model(inputs, outputs))
    _, cache = _at(view, "d2")
    assert not cache.cacheable
    assert cache.reason == "features of shape (None, None, 8) vary with the input"


def test_several_crossing_tensors_and_an_input_read_after_the_cut(keras: Any) -> None:
    inputs = keras.Input((8,), name="x")
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(5, name="b")(a)
    c = keras.layers.Dense(4, name="c")(b)
    joined = keras.layers.Concatenate(name="join")([a, c, inputs])
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(joined))
    _, view = _walked(model)
    plan, cache = _at(view, "c")
    assert cache.cacheable and set(cache.tensors) == {"x", "a", "b"}
    assert list(cache.shapes) == per_example_shapes(model, cache.tensors)
    assert cache.bytes_per_example == 4 * (8 + 4 + 5)
    assert cache.describe() == "features cacheable: 3 tensors, 68 B per example"
    _assert_pure(model, view, plan, cache)


def test_mixed_precision_halves_the_bytes(keras: Any) -> None:
    inputs = keras.Input((8,), name="x")
    x = keras.layers.Dense(16, name="a", dtype="mixed_float16")(inputs)
    x = keras.layers.Dense(2, name="b", dtype="mixed_float16")(x)
    model = keras.Model(inputs, x)
    info, view = _walked(model)
    assert info.dtype_policy == "mixed_float16"
    _, cache = _at(view, "b")
    assert cache.dtype == "float16" == model.get_layer("a").output.dtype
    assert cache.bytes_per_example == 16 * 2


# -- the published example and the pricing ------------------------------------------------------


def test_resnet50_conv5_is_the_issue_example(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    _, cache = _at(view, "conv5_block1_1_conv")
    assert cache.describe() == "features cacheable: 14x14x1024, 784 KiB per example"
    assert cache.tensors == ("conv4_block6_out",)


def test_pricing_the_cache(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    plan, cache = _at(view, "conv5_block1_1_conv")
    document = price_feature_cache(view, plan, examples=1000, epochs=10)
    assert document["cacheable"] and document["disk_bytes"] == 1000 * cache.bytes_per_example
    flops = document["flops"]
    # One epoch without the cache is what a step at batch 1 costs, per example.
    from kfreeze_tui.core.train.cost import TrainingSetup

    step = cost_model(view).estimate(plan, TrainingSetup(batch=1))
    assert flops["full_epoch"] == 1000 * step.step_flops
    # The feature pass is the frozen part's forward pass; the rest is the cached epoch.
    assert flops["feature_pass"] + flops["cached_epoch"] == flops["full_epoch"]
    expected = 10 * flops["full_epoch"] / (flops["feature_pass"] + 10 * flops["cached_epoch"])
    assert document["speedup_estimate"] == pytest.approx(expected, abs=0.01)
    assert document["speedup_estimate"] > 1
    refused = price_feature_cache(view, FreezePlan(boundary=view.first_path()), 1000, 10)
    assert refused["cacheable"] is False and refused["disk_bytes"] == 0
    assert refused["flops"] is None and refused["speedup_estimate"] is None
    assert math.isclose(
        refused["bytes_per_example"], 0
    )  # the issue's required keys are always there
