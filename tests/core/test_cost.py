"""The cost model: multiply-adds per layer against hand formulas, memory terms exactly, step
FLOPs that fall as the boundary moves on. (Published per-image figures of four
architectures are checked in test_architectures.py, where each is built once.)"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView
from kfreeze_tui.core.runtime import gpus
from kfreeze_tui.core.train.cost import (
    DtypePolicy,
    Optimizer,
    TrainingSetup,
    cost_model,
    human_bytes,
    layer_cost,
)


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
    # The attention layer is a container of its projections (which have no shapes of their
    # own): it is priced whole, at its first leaf, and its other leaves add nothing.
    assert "mha" not in costs
    assert costs["query"].macs == projections + 2 * 7 * 7 * (4 + 4)
    assert all(costs[name].macs == 0 for name in ("key", "value", "attention_output"))
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


# -- recurrent layers, shared layers, the model's dtype, the file as it is -----------------------


@pytest.fixture(scope="module")
def recurrent_model(keras: Any) -> Any:
    """Embedding + BiLSTM + GRU + SimpleRNN, ConvLSTM2D and ConvLSTM1D, unrolled so that a
    traced forward pass holds every step's products (for TensorFlow's own count)."""
    L = keras.layers
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = L.Embedding(500, 32, name="embed")(tokens)
    x = L.Bidirectional(L.LSTM(24, return_sequences=True, unroll=True), name="bilstm")(x)
    x = L.GRU(16, unroll=True, name="gru")(x)  # reset_after=True, Keras 3's default
    x = L.SimpleRNN(8, unroll=True, name="srnn")(L.RepeatVector(5, name="repeat")(x))
    frames = keras.Input((4, 10, 10, 2), name="frames")
    y = L.ConvLSTM2D(3, 3, return_sequences=True, unroll=True, name="convlstm2d")(frames)
    y = L.GlobalAveragePooling3D(name="gap")(y)
    signal = keras.Input((6, 12, 2), name="signal")
    z = L.ConvLSTM1D(4, 3, padding="same", unroll=True, name="convlstm1d")(signal)
    z = L.Flatten(name="flat")(z)
    out = L.Dense(3, name="out")(L.Concatenate(name="cat")([x, y, z]))
    return keras.Model([tokens, frames, signal], out, name="recurrent")


def test_recurrent_layers_cost_per_time_step(recurrent_model: Any) -> None:
    view = PlanView(walk(recurrent_model))
    costs = dict(zip([leaf.name for leaf in view.leaves], cost_model(view).costs, strict=True))
    # The Bidirectional is a container of its two LSTMs, priced whole at its first leaf.
    bilstm = view.info.find("bilstm")
    assert bilstm is not None and bilstm.is_container and bilstm.child_count == 2
    first, second = (view.leaves[i].name for i in range(*view.span(bilstm.path)))
    assert costs[second].macs == 0
    costs["bilstm"] = costs[first]
    get = recurrent_model.get_layer
    steps, embedded = 12, get("embed").output_dim
    assert costs["embed"].macs == 0  # a lookup
    # LSTM (Sak et al. 2014): 4 (i u + u^2) per step, both directions of the Bidirectional.
    u = get("bilstm").forward_layer.units
    assert costs["bilstm"].macs == 2 * steps * 4 * (embedded * u + u * u)
    # GRU (Cho et al. 2014): 3 (i u + u^2) per step, with reset_after as without; it reads
    # every step of the BiLSTM's sequence even though it returns the last one only.
    gru = get("gru")
    assert gru.cell.reset_after
    assert costs["gru"].macs == steps * 3 * (2 * u * gru.units + gru.units**2)
    srnn = get("srnn").units
    assert costs["srnn"].macs == 5 * (gru.units * srnn + srnn * srnn)
    # ConvLSTM2D: both 3x3 convolutions (input 2 -> 4 x 3 gates, state 3 -> 4 x 3) at each
    # of the 8x8 output positions ("valid"), at each of the 4 steps.
    filters = get("convlstm2d").filters
    assert costs["convlstm2d"].macs == 4 * 8 * 8 * (3 * 3 * 2 + 3 * 3 * filters) * 4 * filters
    filters = get("convlstm1d").filters
    assert costs["convlstm1d"].macs == 6 * 12 * (3 * 2 + 3 * filters) * 4 * filters
    assert costs["out"].macs == (gru.units // 2 + 3 + 12 * filters) * 3
    # Backpropagation through time keeps each step's gates, besides the outputs.
    assert costs["bilstm"].outputs == steps * 2 * u + 2 * steps * 4 * u


def test_recurrent_forward_flops_match_tensorflows_count(recurrent_model: Any) -> None:
    """The oracle: TensorFlow's graph of one forward pass (every step unrolled), its matrix
    products and convolutions counted from their shapes, and its profiler's FLOP count."""
    import tensorflow as tf

    specs = [tf.TensorSpec((1, *t.shape[1:]), t.dtype) for t in recurrent_model.inputs]
    graph = tf.function(lambda *x: recurrent_model(list(x), training=False))
    graph = graph.get_concrete_function(*specs).graph
    products = 0
    for op in graph.get_operations():
        if op.type == "MatMul":
            a, out = op.inputs[0].shape, op.outputs[0].shape
            products += a[0 if op.get_attr("transpose_a") else 1] * math.prod(out)
        elif op.type == "Conv2D":  # ConvLSTM1D runs as a Conv2D too
            kernel = op.inputs[1].shape
            products += math.prod(kernel[:3]) * math.prod(op.outputs[0].shape)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    measured = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    model_costs = cost_model(PlanView(walk(recurrent_model)))
    macs = model_costs.forward_macs_per_example
    assert macs == products
    # The profiler adds the elementwise adds and products (not the activations): kfreeze's
    # forward pass, with its elementwise estimate, is within 5 % of its total.
    assert 2 * macs <= measured <= 1.05 * 2 * macs
    forward = model_costs.estimate(FreezePlan(boundary=None), TrainingSetup(batch=1))
    assert forward.forward_flops == pytest.approx(measured, rel=0.05)


@pytest.fixture(scope="module")
def shared_models(keras: Any) -> dict[str, Any]:
    """A Dense used on two inputs, and a siamese model: a nested encoder used on two."""
    L = keras.layers
    pa, pb = keras.Input((3,), name="pa"), keras.Input((3,), name="pb")
    shared = L.Dense(5, name="shared")
    dense = keras.Model([pa, pb], L.Add(name="add")([shared(pa), shared(pb)]), name="shared")
    inner = keras.Input((8,), name="enc_in")
    encoder = keras.Model(inner, L.Dense(6, name="enc_dense")(inner), name="encoder")
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    proj = L.Dense(4, name="proj")  # shared too, after the encoder
    diff = L.Subtract(name="diff")([proj(encoder(a)), proj(encoder(b))])
    siamese = keras.Model([a, b], L.Dense(1, name="dist")(diff), name="siamese")
    return {"dense": dense, "siamese": siamese}


def test_a_layer_called_twice_costs_twice(shared_models: dict[str, Any]) -> None:
    setup = TrainingSetup(batch=2)
    view = PlanView(walk(shared_models["dense"]))
    model_costs = cost_model(view)
    assert model_costs.forward_macs_per_example == 2 * 3 * 5
    full = model_costs.estimate(FreezePlan(boundary=view.first_path()), setup)
    # Kept: both inputs, both calls' outputs and the sum, at 4 bytes.
    assert full.memory.activations == 2 * 4 * (3 + 3 + 5 + 5 + 5)
    view = PlanView(walk(shared_models["siamese"]))
    model_costs = cost_model(view)
    # The encoder's Dense runs once per call of the encoder, the projection once per call.
    assert model_costs.forward_macs_per_example == 2 * 8 * 6 + 2 * 6 * 4 + 4 * 1
    full = model_costs.estimate(FreezePlan(boundary=view.first_path()), setup)
    # Backpropagation starts at the encoder's Dense: both inputs cross into it (the
    # encoder's input, once per call), then every output of every call.
    assert full.memory.activations == 2 * 4 * (8 + 8 + 6 + 6 + 4 + 4 + 4 + 1)
    # From the projection on: both of the encoder's outputs cross into the trained part.
    at_proj = model_costs.estimate(FreezePlan(boundary=view.info.find("proj").path), setup)
    assert view.cut(FreezePlan(boundary=view.info.find("proj").path)).crossing == (
        "encoder",
        "encoder (call 2)",
    )
    assert at_proj.memory.activations == 2 * 4 * (6 + 6 + 4 + 4 + 4 + 1)


@pytest.fixture(scope="module")
def mixed_export(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN built under mixed_float16, exported by kfreeze with a freeze boundary."""
    from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.session import ModelSession
    from kfreeze_tui.core.train.export import ExportRequest

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        L = keras.layers
        inputs = keras.Input((16, 16, 3), name="image")
        x = L.Conv2D(8, 3, name="stem_conv")(inputs)
        x = L.BatchNormalization(name="stem_bn")(x)
        x = L.Conv2D(8, 3, name="top_conv")(x)
        x = L.BatchNormalization(name="top_bn")(x)
        model = keras.Model(inputs, L.GlobalAveragePooling2D(name="gap")(x), name="mixed")
    finally:
        keras.config.set_dtype_policy(before)
    session = ModelSession(LoadedModel(model, "mixed", "mixed"))
    assert session.info.dtype_policy == "mixed_float16"
    assert session.training.dtype is DtypePolicy.MIXED_FLOAT16  # the explorer's default
    path = tmp_path_factory.mktemp("mixed") / "mixed_out.keras"
    plan = FreezePlan(boundary=session.info.find("top_conv").path)  # top_bn kept frozen
    session.export(LoadOptions(), plan, HeadSpec(classes=3), CompileSpec(), ExportRequest(path))
    return path


def cost_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``kfreeze cost ... --json`` in this process."""
    from kfreeze_tui.cli import run

    code = run(["cost", *args, "--json", "--no-cache"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)  # type: ignore[no-any-return]


def test_cost_of_a_file_as_it_is_in_its_own_dtype(
    mixed_export: Path, small_model_file: Path, keras: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    document = cost_json(capsys, str(mixed_export))
    assert (document["dtype"], document["dtype_from"]) == ("mixed_float16", "the model's policy")
    as_is = document["rows"][0]
    assert as_is["label"] == "as the file is"
    assert [row["label"] for row in document["rows"]][1] == "head only"
    loaded = keras.saving.load_model(mixed_export)
    trainable = sum(math.prod(v.shape) for v in loaded.trainable_weights)
    assert as_is["trainable_params"] == trainable
    told = cost_json(capsys, str(mixed_export), "--dtype", "float32")
    assert (told["dtype"], told["dtype_from"]) == ("float32", "--dtype")
    assert told["rows"][0]["memory"]["activations"] == 2 * as_is["memory"]["activations"]
    # A file with nothing frozen trains its BatchNormalization too, unlike kfreeze's default.
    document = cost_json(capsys, str(small_model_file))
    loaded = keras.saving.load_model(small_model_file)
    trainable = sum(math.prod(v.shape) for v in loaded.trainable_weights)
    assert document["rows"][0]["trainable_params"] == trainable
    assert document["dtype"] == "float32"


def test_each_output_of_a_nested_model_that_crosses_is_kept(keras: Any) -> None:
    """A nested model with two outputs, each read by a trained layer: both cross into the
    trained part, each counted once, with the element counts Keras gives its tensors."""
    inner_in = keras.Input((8, 8, 3))
    fmap = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)
    pooled = keras.layers.GlobalAveragePooling2D(name="inner_gap")(fmap)
    inner = keras.Model(inner_in, [fmap, pooled], name="two_headed")
    image = keras.Input((8, 8, 3), name="image")
    fmap, pooled = inner(image)
    mask = keras.layers.Conv2D(1, 1, name="mask_out")(fmap)
    model = keras.Model(image, [mask, keras.layers.Dense(3, name="class_out")(pooled)])
    assert [layer.name for layer in model.layers][-2:] == ["mask_out", "class_out"]
    view = PlanView(walk(model))

    def elements(tensor: Any) -> int:
        return math.prod(int(d) for d in tensor.shape[1:])

    fmap_size, pooled_size = elements(fmap), elements(pooled)
    mask_size, class_size = (elements(t) for t in model.outputs)
    setup = TrainingSetup(batch=1)
    # From mask_out: both of the nested model's outputs cross.
    plan = FreezePlan(boundary=view.info.find("mask_out").path)
    assert set(view.cut(plan).crossing) == {"two_headed", "two_headed (output 2)"}
    kept = cost_model(view).estimate(plan, setup).memory.activations
    assert kept == 4 * (fmap_size + pooled_size + mask_size + class_size)
    # From class_out: only the second (mask_out, which reads the first, is frozen).
    plan = FreezePlan(boundary=view.info.find("class_out").path)
    assert view.cut(plan).crossing == ("two_headed (output 2)",)
    kept = cost_model(view).estimate(plan, setup).memory.activations
    assert kept == 4 * (pooled_size + class_size)
