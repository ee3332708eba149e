"""LoRA counts against Keras's own ``layer.enable_lora(rank)`` on a copy of the same model.

The oracle never goes through kfreeze's apply code: each test sets the flags of a clone by
hand (the layers before the boundary frozen, BatchNormalization as the policy says), puts
LoRA on the same layers with Keras's ``enable_lora``, and reads ``trainable_weights`` and
``count_params()``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView, Reason
from kfreeze_tui.core.plan.lora import LoraSpec, check_targets, unsupported


def _size(variables: Any) -> int:
    seen: dict[int, Any] = {id(v): v for v in variables}
    return sum(math.prod(int(d) for d in v.shape) for v in seen.values())


def _keras_lora(
    keras: Any,
    model: Any,
    names: set[str],
    rank: int,
    boundary: int | None,
    bn_trainable: bool = False,
) -> Any:
    """A clone of a flat model with layers before ``boundary`` (an index of ``.layers``;
    None: all) frozen and Keras's ``enable_lora(rank)`` on the layers called ``names``."""
    clone = keras.models.clone_model(model)
    clone.trainable = True
    start = len(clone.layers) if boundary is None else boundary
    for i, layer in enumerate(clone.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and (bn_trainable or not is_bn)
    for layer in clone.layers:
        if layer.name in names:
            layer.trainable = True
            layer.enable_lora(rank)
    return clone


def _lora_names(view: PlanView, plan: FreezePlan) -> set[str]:
    assert plan.lora is not None
    return {view.leaves[pos].name for pos in view.lora_positions(plan.lora)}


@pytest.fixture(scope="module")
def mixed_model(keras: Any) -> Any:
    """Dense, Conv2D, DepthwiseConv2D, BatchNormalization, Embedding and EinsumDense."""
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(image)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    t = keras.layers.Embedding(50, 12, name="embed")(tokens)
    t = keras.layers.EinsumDense("abc,cde->abde", output_shape=(6, 2, 5), bias_axes="de",
                                 name="query")(t)  # fmt: skip
    t = keras.layers.Reshape((60,), name="flat")(t)
    t = keras.layers.Dense(7, name="value")(t)
    merged = keras.layers.Concatenate(name="merge")([x, t])
    out = keras.layers.Dense(3, name="classifier")(merged)
    return keras.Model([image, tokens], out, name="mixed")


@pytest.fixture(scope="module")
def mobilenet(keras: Any) -> Any:
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None)


def _check(keras: Any, model: Any, plan: FreezePlan, bn_trainable: bool = False) -> None:
    view = PlanView(walk(model))
    assert plan.lora is not None
    boundary = None if plan.boundary is None else view.info.layer(plan.boundary).index
    names = _lora_names(view, plan)
    assert names, "the spec must put LoRA somewhere for the test to mean anything"
    oracle = _keras_lora(keras, model, names, plan.lora.rank, boundary, bn_trainable)
    totals = view.totals(plan)
    assert totals.trainable == _size(oracle.trainable_weights)
    assert totals.total == oracle.count_params()
    # Row by row: each layer's trainable count is its Keras layer's.
    for leaf in view.leaves:
        layer = oracle.layers[leaf.index]
        assert view.trainable_in(plan, leaf.path) == _size(layer.trainable_weights), leaf.name


@pytest.mark.parametrize(
    ("targets", "boundary", "bn"),
    [
        ("all", None, BNPolicy.FROZEN),
        ("all", 5, BNPolicy.TRAINABLE),
        ("linear", None, BNPolicy.FROZEN),
        ("linear", 0, BNPolicy.FROZEN),
        ("attention", None, BNPolicy.FROZEN),
        ("conv|embed|depthwise", 3, BNPolicy.FROZEN),
    ],
)
def test_counts_equal_keras_enable_lora_on_mixed_model(
    keras: Any, mixed_model: Any, targets: str, boundary: int | None, bn: BNPolicy
) -> None:
    path = None if boundary is None else (boundary,)
    plan = FreezePlan(boundary=path, bn_policy=bn, lora=LoraSpec(3, targets))
    _check(keras, mixed_model, plan, bn_trainable=bn is BNPolicy.TRAINABLE)


def test_which_layers_each_preset_takes(mixed_model: Any) -> None:
    view = PlanView(walk(mixed_model))

    def names(targets: str) -> set[str]:
        return _lora_names(view, FreezePlan(lora=LoraSpec(2, targets)))

    # Keras 3.15: enable_lora on Dense, EinsumDense, Embedding, Conv2D; not DepthwiseConv2D
    # nor BatchNormalization (checked on the classes, not on our list).
    takes = {layer.name for layer in mixed_model.layers if hasattr(type(layer), "enable_lora")}
    assert names("all") == takes == {"conv", "embed", "query", "value", "classifier"}
    assert names("linear") == {"query", "value", "classifier"}
    assert names("attention") == {"query", "value"}
    assert names("conv|depthwise") == {"conv"}
    skipped = unsupported(view.leaves, LoraSpec(2, "conv|depthwise"))
    assert [row.name for row in skipped] == ["depthwise"]
    states = {
        leaf.name: view.lora_state(FreezePlan(lora=LoraSpec(2, "linear")), leaf.path)
        for leaf in view.leaves
    }
    assert states["query"] == "on" and states["conv"] == "off"
    assert states["depthwise"] == "unsupported" and states["bn"] == "unsupported"


def test_toggles_and_exceptions_equal_keras(keras: Any, mixed_model: Any) -> None:
    """Toggled layers (the UI's ``L``) and boundary exceptions, together."""
    view = PlanView(walk(mixed_model))
    by_name = {leaf.name: leaf.path for leaf in view.leaves}
    spec = LoraSpec(2, "linear", frozenset({by_name["value"], by_name["conv"]}))
    plan = FreezePlan(
        boundary=by_name["gap"],
        exceptions=frozenset({by_name["conv"], by_name["classifier"], by_name["embed"]}),
        lora=spec,
    )
    assert _lora_names(view, plan) == {"query", "classifier", "conv"}
    assert view.reason(plan, by_name["conv"]) is Reason.LORA
    names = _lora_names(view, plan)
    oracle = _keras_lora(keras, mixed_model, names, 2, view.info.layer(by_name["gap"]).index)
    oracle.get_layer("embed").trainable = True  # the exception that is not LoRA
    assert view.totals(plan).trainable == _size(oracle.trainable_weights)
    assert view.totals(plan).total == oracle.count_params()
    # A toggle on a layer that cannot take LoRA changes nothing.
    toggled = plan.with_lora(spec.toggled(by_name["depthwise"]))
    assert view.totals(toggled) == view.totals(plan)


@pytest.mark.parametrize(
    ("targets", "boundary"), [("all", None), ("linear", None), ("block_1.*", None), ("all", 60)]
)
def test_counts_equal_keras_on_mobilenetv2(
    keras: Any, mobilenet: Any, targets: str, boundary: int | None
) -> None:
    path = None if boundary is None else (boundary,)
    _check(keras, mobilenet, FreezePlan(boundary=path, lora=LoraSpec(4, targets)))


@pytest.mark.parametrize(
    ("name", "size"), [("ResNet50", 64), ("Xception", 71)]
)  # fmt: skip
def test_counts_equal_keras_on_applications(keras: Any, name: str, size: int) -> None:
    model = getattr(keras.applications, name)(input_shape=(size, size, 3), weights=None)
    _check(keras, model, FreezePlan(boundary=None, lora=LoraSpec(8, "all")))


def test_apply_lora_gives_keras_counts_on_nested_model(keras: Any, mixed_model: Any) -> None:
    """apply_freeze + apply_lora on a model whose LoRA layers sit inside a frozen nested
    model: the container must train for its LoRA layers' adapters to count."""
    from kfreeze_tui.core.train.build import apply_freeze, apply_lora

    def make() -> Any:
        inner = keras.models.clone_model(mixed_model)
        inputs = [keras.Input((16, 16, 3)), keras.Input((6,), dtype="int32")]
        return keras.Model(inputs, keras.layers.Dense(2, name="top")(inner(inputs)), name="outer")

    model = make()
    view = PlanView(walk(model))
    plan = FreezePlan(boundary=None, lora=LoraSpec(2, "linear"))
    apply_freeze(model, view, plan)
    apply_lora(model, view, plan)
    totals = view.totals(plan)
    assert totals.trainable == _size(model.trainable_weights) > 0
    assert totals.total == model.count_params()
    layers = [*model.layers, *model.layers[2].layers]
    enabled = {layer.name for layer in layers if getattr(layer, "lora_enabled", False)}
    assert enabled == {"query", "value", "classifier", "top"}
    # Walking the model with LoRA on sees it on, and counts it once.
    again = PlanView(walk(model))
    assert {row.name for row in again.leaves if row.lora_enabled} == enabled
    assert again.info.total_params == totals.total
    assert again.totals(plan).trainable == totals.trainable
    assert again.totals(plan).total == totals.total


def test_bad_targets_are_one_sentence(mixed_model: Any) -> None:
    view = PlanView(walk(mixed_model))
    with pytest.raises(PlanError, match="not a valid regular expression"):
        check_targets(view.leaves, LoraSpec(2, "x("))
    with pytest.raises(PlanError, match="matches no layer name"):
        check_targets(view.leaves, LoraSpec(2, "nothing_here"))
    with pytest.raises(PlanError, match="cannot take LoRA"):
        check_targets(view.leaves, LoraSpec(2, "depthwise|bn"))
    with pytest.raises(PlanError, match="at least 1"):
        check_targets(view.leaves, LoraSpec(0, "all"))
    check_targets(view.leaves, LoraSpec(2, "attention"))


# The "LoRA share" of keras.applications models without their top: the trainable-kind
# parameters of layers whose class has enable_lora, out of all trainable-kind parameters.
PUBLISHED = [
    ("ResNet50", 64, 1.00),
    ("MobileNetV2", 96, 0.96),
    ("EfficientNetB0", 64, 0.94),
    ("Xception", 71, 0.05),
    pytest.param(
        "ConvNeXtTiny",
        64,
        0.95,
        marks=pytest.mark.xfail(
            strict=True,
            reason="the issue's 95 % is not reproduced: LoRA reaches 99.9 % of ConvNeXtTiny "
            "(depthwise convolutions are Conv2D with groups, pointwise ones Dense); counting "
            "only model.layers, without the stem and downsampling Conv2Ds that sit in nested "
            "Sequential models (5.6 %), gives 94.3 %, near the published figure",
        ),
    ),
]


@pytest.mark.parametrize(("name", "size", "share"), PUBLISHED)
def test_published_lora_shares(keras: Any, name: str, size: int, share: float) -> None:
    model = getattr(keras.applications, name)(
        input_shape=(size, size, 3), weights=None, include_top=False
    )
    coverage = PlanView(walk(model)).coverage()
    # The same share from Keras alone: every variable created trainable, by layer class.
    # (Nothing is frozen in a new model, so its trainable weights are all of that kind.)
    reachable = total = 0
    for layer in model.layers:
        size_ = _size(layer.trainable_weights)
        total += size_
        reachable += size_ if hasattr(type(layer), "enable_lora") else 0
    assert (coverage.reachable, coverage.total) == (reachable, total)
    assert round(coverage.fraction, 2) == share


def test_planview_stays_fast_with_lora(keras: Any, mobilenet: Any) -> None:
    """Per-row counts under LoRA 'all' use prefix sums: every row of MobileNetV2 costs no
    more than a few times the same without LoRA."""
    import time

    view = PlanView(walk(mobilenet))
    plain = FreezePlan(boundary=view.leaves[60].path)
    with_lora = plain.with_lora(LoraSpec(4, "all", frozenset({view.leaves[10].path})))

    def rows(plan: FreezePlan) -> float:
        start = time.perf_counter()
        for _ in range(5):
            for row in view.info.layers:
                view.trainable_in(plan, row.path)
            view.totals(plan)
        return time.perf_counter() - start

    rows(with_lora)  # the first call builds the tables
    assert rows(with_lora) < 5 * rows(plain) + 0.01
    assert re.fullmatch(r"\d+", str(view.adapters(with_lora)))


def test_cost_prices_lora(mixed_model: Any) -> None:
    """Adapters in the weights, gradients and Adam's two slots of what trains; activations
    kept from the first LoRA layer on, even with everything else frozen."""
    from kfreeze_tui.core.train.cost import TrainingSetup, cost_model

    view = PlanView(walk(mixed_model))
    costs = cost_model(view)
    setup = TrainingSetup(batch=4)
    frozen = FreezePlan(boundary=None)
    last_only = FreezePlan(boundary=None, lora=LoraSpec(2, "classifier"))
    everywhere = FreezePlan(boundary=None, lora=LoraSpec(2, "all"))
    base = costs.estimate(frozen, setup)
    last = costs.estimate(last_only, setup)
    wide = costs.estimate(everywhere, setup)
    assert base.memory.activations == 0 and base.trainable_params == 0
    for plan, estimate in ((last_only, last), (everywhere, wide)):
        totals = view.totals(plan)
        assert estimate.memory.weights == 4 * totals.total
        assert estimate.memory.gradients == 4 * totals.trainable
        assert estimate.memory.optimizer == 8 * totals.trainable
    # LoRA on the last layer keeps only what it reads; LoRA from the first conv keeps more.
    assert 0 < last.memory.activations < wide.memory.activations
    assert 0 < last.backward_flops < wide.backward_flops
    # A LoRA layer's weight gradient costs less than training its kernel.
    full_classifier = costs.estimate(
        FreezePlan(boundary=None, exceptions=frozenset({view.leaves[-1].path})), setup
    )
    assert last.backward_flops < full_classifier.backward_flops


def test_applying_again_keeps_lora_kernels_frozen(keras: Any, mixed_model: Any) -> None:
    """A second set-up (the next phase) sets ``trainable`` on layers whose LoRA is on, which
    in Keras 3.15 makes their kernels trainable again; apply_lora freezes them once more."""
    from kfreeze_tui.core.train.build import apply_freeze, apply_lora

    model = keras.models.clone_model(mixed_model)
    view = PlanView(walk(model))
    first = FreezePlan(boundary=None, lora=LoraSpec(2, "linear"))
    second = FreezePlan(boundary=view.leaves[0].path, lora=LoraSpec(2, "linear"))
    for plan in (first, second):
        apply_freeze(model, view, plan)
        apply_lora(model, view, plan)
        assert _size(model.trainable_weights) == view.totals(plan).trainable
        assert model.count_params() == view.totals(plan).total
    kernels = [v.path for v in model.trainable_weights if v.path.endswith("/kernel")]
    assert "query/kernel" not in kernels and "conv/kernel" in kernels
