"""The cost model: multiply-adds per layer against hand formulas, memory terms exactly, step
FLOPs that fall as the boundary moves on. (Published per-image figures of four
architectures are checked in test_architectures.py, where each is built once.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from kfreeze_tui.core import gpus
from kfreeze_tui.core.cost import (
    DtypePolicy,
    Optimizer,
    TrainingSetup,
    cost_model,
    human_bytes,
    layer_cost,
)
from kfreeze_tui.core.layers import walk
from kfreeze_tui.core.plan import BNPolicy, FreezePlan, PlanView


@pytest.fixture(scope="module")
def layer_zoo(keras: Any) -> Any:
    """One layer of each kind whose multiply-adds have a textbook formula."""
    L = keras.layers
    image = keras.Input((16, 16, 8), name="image")
    conv = L.Conv2D(12, 3, strides=2, padding="same", name="conv")(image)  # 8x8x12
    grouped = L.Conv2D(12, 3, padding="same", groups=4, name="grouped")(conv)
    depthwise = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(grouped)
    separable = L.SeparableConv2D(10, 3, padding="same", name="sep")(depthwise)
    up = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up")(separable)  # 16x16x6
    pooled = L.GlobalAveragePooling2D(name="gap")(up)
    dense = L.Dense(5, name="dense")(pooled)
    tokens = keras.Input((7, 16), name="tokens")
    attention = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(tokens, tokens)
    return keras.Model([image, tokens], [dense, attention], name="zoo")


def test_multiply_adds_per_layer_match_the_formulas(layer_zoo: Any) -> None:
    info = walk(layer_zoo)
    view = PlanView(info)
    costs = dict(zip([leaf.name for leaf in view.leaves], cost_model(view).costs, strict=True))
    # Conv2D: output positions x kernel height x width x input channels x filters.
    assert costs["conv"].macs == 8 * 8 * (3 * 3 * 8 * 12)
    # Grouped: each filter sees input_channels / groups channels.
    assert costs["grouped"].macs == 8 * 8 * (3 * 3 * (12 // 4) * 12)
    # Depthwise: one 3x3 filter per input channel and multiplier.
    assert costs["dw"].macs == 8 * 8 * (3 * 3 * 12 * 2)
    # Separable: depthwise 3x3 over 24 channels, then a 1x1 from 24 to 10.
    assert costs["sep"].macs == 8 * 8 * (3 * 3 * 24) + 8 * 8 * (24 * 10)
    # Transposed: every input position scatters a 3x3x10->6 kernel.
    assert costs["up"].macs == 8 * 8 * (3 * 3 * 10 * 6)
    assert costs["dense"].macs == 6 * 5
    # Attention over 7 tokens of 16, 2 heads of 4: Q, K, V, output projections, QK^T and AV.
    projections = 3 * 7 * (16 * 2 * 4) + 7 * (2 * 4 * 16)
    assert costs["mha"].macs == projections + 2 * 7 * 7 * (4 + 4)
    # Pooling computes no multiply-adds but touches its outputs.
    assert costs["gap"].macs == 0 and costs["gap"].elementwise == 6


def test_layer_without_weights_costs_no_macs(resnet50_info: Any) -> None:
    relu = resnet50_info.find("conv5_block1_1_relu")
    cost = layer_cost(relu, [])
    assert cost.macs == 0 and cost.outputs == 7 * 7 * 512


def test_memory_terms_are_exact(small_model: Any) -> None:
    view = PlanView(walk(small_model))
    model_costs = cost_model(view)
    plan = FreezePlan(boundary=view.info.find("block1_conv").path)
    trainable = view.totals(plan).trainable
    assert trainable > 0
    adam = model_costs.estimate(plan, TrainingSetup(batch=16, optimizer=Optimizer.ADAM))
    assert adam.trainable_params == trainable
    assert adam.memory.weights == 4 * small_model.count_params()
    assert adam.memory.gradients == 4 * trainable
    assert adam.memory.optimizer == 2 * adam.memory.gradients
    sgdm = model_costs.estimate(plan, TrainingSetup(batch=16, optimizer=Optimizer.SGDM))
    sgd = model_costs.estimate(plan, TrainingSetup(batch=16, optimizer=Optimizer.SGD))
    assert sgdm.memory.optimizer == adam.memory.gradients and sgd.memory.optimizer == 0
    double = model_costs.estimate(plan, TrainingSetup(batch=32))
    assert double.memory.activations == 2 * adam.memory.activations > 0
    assert double.memory.weights == adam.memory.weights
    mixed = model_costs.estimate(plan, TrainingSetup(batch=16, dtype=DtypePolicy.MIXED_FLOAT16))
    assert mixed.memory.activations * 2 == adam.memory.activations
    # Activations kept: from block1_conv on (its output and every later one) plus the tensor
    # that crosses into that part (pool1's output), in float32.
    names = ["pool1", "block1_conv", "block1_bn", "block1_pool", "block2_conv", "gap", "classifier"]
    elements = sum(math.prod(view.info.find(name).output_shape[1:]) for name in names)
    assert adam.memory.activations == 16 * 4 * elements
    assert adam.memory.total == sum(
        adam.memory.to_json()[k] for k in ("weights", "gradients", "optimizer", "activations")
    )


def test_head_only_keeps_no_activations_and_costs_one_forward(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    model_costs = cost_model(view)
    head_only = model_costs.estimate(FreezePlan(boundary=None), TrainingSetup(batch=8))
    assert head_only.memory.gradients == head_only.memory.optimizer == 0
    assert head_only.memory.activations == 0 and head_only.backward_flops == 0
    full = model_costs.estimate(FreezePlan(boundary=view.first_path()), TrainingSetup(batch=8))
    assert full.relative_step == pytest.approx(1.0, abs=1e-3)
    # Forward only against forward and backward (input and weight gradients): about a third.
    assert 0.3 < head_only.relative_step < 0.36
    assert head_only.forward_flops == pytest.approx(
        8 * 2 * model_costs.forward_macs_per_example, rel=0.02
    )


def test_cost_falls_as_the_boundary_moves_on(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    model_costs = cost_model(view)
    setup = TrainingSetup(batch=32)
    starts = ["conv2_block1_1_conv", "conv3_block1_1_conv", "conv4_block1_1_conv",
              "conv5_block1_1_conv"]  # fmt: skip
    estimates = [
        model_costs.estimate(FreezePlan(boundary=resnet50_info.find(n).path), setup) for n in starts
    ]
    steps = [e.relative_step for e in estimates]
    memory = [e.memory.total for e in estimates]
    assert steps == sorted(steps, reverse=True) and memory == sorted(memory, reverse=True)
    at_143 = estimates[-1]
    assert at_143.trainable_params == 14_953_472  # BatchNormalization kept frozen
    assert 0.4 < at_143.relative_step < 0.5


def test_exceptions_and_bn_policy_change_the_cost(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    model_costs = cost_model(view)
    setup = TrainingSetup(batch=4)
    boundary = resnet50_info.find("conv5_block1_1_conv").path
    base = model_costs.estimate(FreezePlan(boundary=boundary), setup)
    # Training one earlier layer as an exception: backpropagation now reaches it.
    earlier = resnet50_info.find("conv4_block1_1_conv").path
    excepted = model_costs.estimate(
        FreezePlan(boundary=boundary, exceptions=frozenset({earlier})), setup
    )
    assert excepted.memory.activations > base.memory.activations
    assert excepted.backward_flops > base.backward_flops
    trained_bn = model_costs.estimate(
        FreezePlan(boundary=boundary, bn_policy=BNPolicy.TRAINABLE), setup
    )
    assert trained_bn.memory.gradients > base.memory.gradients


def test_largest_batch(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    estimate = cost_model(view).estimate(
        FreezePlan(boundary=resnet50_info.find("conv5_block1_1_conv").path), TrainingSetup()
    )
    free = 4 << 30
    largest = estimate.largest_batch(free)
    assert estimate.fixed_bytes + largest * estimate.bytes_per_example <= free
    assert estimate.fixed_bytes + (largest + 1) * estimate.bytes_per_example > free
    assert estimate.largest_batch(estimate.fixed_bytes // 2) == 0


def test_no_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus.query() == []


def test_human_bytes() -> None:
    assert human_bytes(512 << 20) == "512 MiB"
    assert human_bytes(5.2 * (1 << 30)) == "5.2 GiB"
