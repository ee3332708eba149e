"""Plan arithmetic (no Keras) checked against what Keras reports once the plan is applied."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView, Reason
from kfreeze_tui.core.train.build import apply_freeze, set_trainable
from kfreeze_tui.core.train.snippet import freeze_snippet


def keras_trainable(model: Any) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


@pytest.fixture(scope="module")
def resnet(keras: Any) -> Any:
    """A ResNet50 of this module's own: the tests here change its flags."""
    return keras.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))


@pytest.fixture(scope="module")
def resnet_view(resnet: Any) -> PlanView:
    return PlanView(walk(resnet))


@pytest.fixture(scope="module")
def nested(keras: Any) -> Any:
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(96, 96, 3), alpha=0.35
    )
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    outputs = keras.layers.Dense(3, name="out")(x)
    return keras.Model(inputs, outputs, name="nested_mobilenet")


def test_resnet50_boundary_143_counts(resnet_view: PlanView) -> None:
    plan = FreezePlan(boundary=(143,))
    totals = resnet_view.totals(plan)
    assert (totals.trainable, totals.non_trainable) == (14_953_472, 8_634_240)
    assert resnet_view.batch_norms_after_boundary(plan) == 10
    trained = resnet_view.totals(plan.with_bn_policy(BNPolicy.TRAINABLE))
    assert (trained.trainable, trained.non_trainable) == (14_976_000, 8_611_712)


@pytest.mark.parametrize("policy", list(BNPolicy))
@pytest.mark.parametrize("boundary", [(0,), (2,), (39,), (81,), (143,), (174,), None])
def test_counts_equal_keras_after_apply(
    resnet: Any, resnet_view: PlanView, boundary: Any, policy: BNPolicy
) -> None:
    plan = FreezePlan(boundary=boundary, bn_policy=policy)
    apply_freeze(resnet, resnet_view, plan)
    assert resnet_view.totals(plan).trainable == keras_trainable(resnet)
    for leaf in resnet_view.leaves:
        assert resnet.layers[leaf.index].trainable == resnet_view.leaf_trainable(plan, leaf.path)


def test_exceptions_equal_keras(resnet: Any, resnet_view: PlanView) -> None:
    plan = FreezePlan(boundary=(81,))
    plan = plan.toggled_exception((10,))  # a conv before the boundary: trains
    plan = plan.toggled_exception((143,))  # a conv after it: frozen
    plan = plan.toggled_exception((144,))  # a BatchNormalization after it: trains
    apply_freeze(resnet, resnet_view, plan)
    assert resnet_view.totals(plan).trainable == keras_trainable(resnet)
    assert resnet.layers[10].trainable and not resnet.layers[143].trainable
    assert resnet.layers[144].trainable
    assert resnet_view.reason(plan, (10,)) is Reason.EXCEPTION
    assert resnet_view.reason(plan, (145,)) is Reason.AFTER_BOUNDARY
    assert resnet_view.reason(plan, (9,)) is Reason.BEFORE_BOUNDARY
    bn = resnet_view.info.find("conv4_block1_1_bn")
    assert bn.index > 81 and resnet_view.reason(plan, bn.path) is Reason.BN_POLICY
    # Toggling twice removes the exception.
    assert plan.toggled_exception((10,)).toggled_exception((10,)) == plan


@pytest.mark.parametrize("inner", [0, 30, 100])
@pytest.mark.parametrize("policy", list(BNPolicy))
def test_nested_counts_equal_keras(nested: Any, inner: int, policy: BNPolicy) -> None:
    view = PlanView(walk(nested))
    base_path = next(row.path for row in view.info.layers if row.is_container)
    plan = FreezePlan(boundary=(*base_path, inner), bn_policy=policy)
    apply_freeze(nested, view, plan)
    assert view.totals(plan).trainable == keras_trainable(nested)
    # The container's row adds up its layers.
    base = nested.layers[base_path[0]]
    assert view.trainable_in(plan, base_path) == keras_trainable(base)
    if inner == 0:
        assert view.reason(plan, base_path) is Reason.CONTAINER


def test_nested_boundary_after_the_base_freezes_it_whole(nested: Any) -> None:
    view = PlanView(walk(nested))
    gap = view.info.find("gap")
    plan = FreezePlan(boundary=gap.path)
    apply_freeze(nested, view, plan)
    base = next(layer for layer in nested.layers if hasattr(layer, "layers"))
    assert not base.trainable and keras_trainable(base) == 0
    assert view.totals(plan).trainable == keras_trainable(nested)


def test_plan_from_model_reproduces_the_loaded_state(resnet: Any, resnet_view: PlanView) -> None:
    plan = FreezePlan(boundary=(81,), bn_policy=BNPolicy.FROZEN).toggled_exception((150,))
    apply_freeze(resnet, resnet_view, plan)
    again = PlanView(walk(resnet))
    recovered = again.plan_from_model()
    for leaf in again.leaves:
        if leaf.has_weights:
            assert again.leaf_trainable(recovered, leaf.path) == leaf.trainable
    assert again.totals(recovered).trainable == keras_trainable(resnet)


def test_fresh_model_gets_the_default_plan(resnet_view: PlanView, keras: Any) -> None:
    model = keras.applications.MobileNetV3Small(weights=None, include_top=False)
    plan = PlanView(walk(model)).plan_from_model()
    assert plan == FreezePlan(boundary=(0,), bn_policy=BNPolicy.FROZEN)


@pytest.mark.parametrize("boundary", [(143,), (0,), None])
def test_snippet_reproduces_the_plan(keras: Any, boundary: Any) -> None:
    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    view = PlanView(walk(model))
    plan = FreezePlan(boundary=boundary).toggled_exception((150,))
    if boundary is None:
        plan = FreezePlan(boundary=None)
    code = freeze_snippet(view, plan)
    if boundary == (143,):
        assert "for layer in base.layers[:143]:" in code
        assert '"conv5_block1_1_conv"' in code
    namespace = {"model": model}
    exec(compile(code, "snippet", "exec"), namespace)
    assert keras_trainable(model) == view.totals(plan).trainable


def test_snippet_for_a_nested_base(nested: Any) -> None:
    view = PlanView(walk(nested))
    base_path = next(row.path for row in view.info.layers if row.is_container)
    plan = FreezePlan(boundary=(*base_path, 30))
    set_trainable(nested, True)  # other tests froze some of its layers
    code = freeze_snippet(view, plan)
    assert f"base = model.layers[{base_path[0]}]" in code
    exec(compile(code, "snippet", "exec"), {"model": nested})
    assert keras_trainable(nested) == view.totals(plan).trainable
