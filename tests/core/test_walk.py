"""The layer walk on real Keras models: indices, shapes, counts, stages, blocks, nesting."""

from __future__ import annotations

import math
from typing import Any

from kfreeze_tui.core.model.layers import walk


def _keras_trainable_count(model: Any) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def test_resnet50_index_143_is_first_conv_of_stage_5(resnet50: Any, resnet50_info: Any) -> None:
    info = resnet50_info
    assert len(info.layers) == 175 == len(resnet50.model.layers)
    layer = info.layers[143]
    assert layer.index == 143 and layer.path == (143,)
    assert layer.name == "conv5_block1_1_conv" == resnet50.model.layers[143].name
    assert layer.class_name == "Conv2D"
    assert layer.output_shapes == ((None, 7, 7, 512),)
    assert layer.params == 524_800
    assert layer.inbound == ("conv4_block6_out",)
    assert layer.block == "conv5_block1"


def test_resnet50_totals_equal_keras(resnet50: Any, resnet50_info: Any) -> None:
    model = resnet50.model
    assert resnet50_info.total_params == model.count_params() == 23_587_712
    assert resnet50_info.trainable_params == _keras_trainable_count(model)
    assert resnet50_info.non_trainable_params == model.count_params() - _keras_trainable_count(
        model
    )
    assert sum(row.params for row in resnet50_info.top_level) == model.count_params()


def test_resnet50_stage_starts(resnet50_info: Any) -> None:
    starts = [
        row.index
        for row in resnet50_info.layers[1:]
        if row.stage != resnet50_info.layers[row.index - 1].stage
    ]
    assert starts == [2, 6, 39, 81, 143]
    sizes = [resnet50_info.layers[i].output_shape[1] for i in starts]
    assert sizes == [112, 56, 28, 14, 7]


def test_resnet50_blocks(resnet50_info: Any) -> None:
    blocks = list(dict.fromkeys(row.block for row in resnet50_info.layers))
    input_name = resnet50_info.layers[0].name  # input_layer, input_layer_3, ...: session order
    assert blocks[:4] == [input_name, "conv1", "pool1", "conv2_block1"]
    assert blocks[-3:] == ["conv5_block1", "conv5_block2", "conv5_block3"]
    assert len(blocks) == 3 + 16  # 3 stem groups + 3+4+6+3 bottleneck blocks


def test_resnet50_with_top(keras: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadOptions, load

    loaded = load("ResNet50", LoadOptions(weights="none", include_top=True))
    info = walk(loaded.model)
    assert len(info.layers) == 177
    assert info.layers[-1].name == "predictions"
    assert info.layers[-1].output_shapes == ((None, 1000),)
    assert info.layers[-1].params == 2048 * 1000 + 1000
    assert info.total_params == loaded.model.count_params() == 25_636_712
    # The classifier is not spatial: it stays in the last stage.
    assert info.layers[-1].stage == info.layers[143].stage == 5


def test_sequential_wrapper_holds_base_at_index_0(wrapped_base: Any) -> None:
    info = walk(wrapped_base)
    top = info.top_level
    assert [row.class_name for row in top] == ["Functional", "GlobalAveragePooling2D", "Dense"]
    base = top[0]
    assert base.is_container and base.child_count == 175 and base.index == 0
    inner = info.children((0,))
    assert len(inner) == 175
    assert inner[143].path == (0, 143) and inner[143].path_text == "0.143"
    assert inner[143].name == "conv5_block1_1_conv" and inner[143].depth == 1
    # Depth first: the container is followed by its 175 layers, then the head.
    assert info.layers[1].path == (0, 0) and info.layers[176].path == (1,)
    assert info.total_params == wrapped_base.count_params()
    assert base.params == wrapped_base.layers[0].count_params()
    assert top[2].inbound == (top[1].name,)


def test_convnext_nested_stem(keras: Any) -> None:
    model = keras.applications.ConvNeXtTiny(
        weights=None, include_top=False, input_shape=(224, 224, 3)
    )
    info = walk(model)
    containers = [row for row in info.layers if row.is_container]
    assert containers, "ConvNeXt nests Sequential stems"
    stem = containers[0]
    assert stem.class_name == "Sequential" and stem.depth == 0
    assert stem.output_shapes == ((None, 56, 56, 96),)
    children = info.children(stem.path)
    assert [c.name for c in children] == [layer.name for layer in model.layers[stem.index].layers]
    assert all(c.depth == 1 and c.path[:-1] == stem.path for c in children)
    assert sum(c.params for c in children) == stem.params
    assert info.total_params == model.count_params()
    assert any(row.block.endswith("stage_0_block_0") for row in info.top_level)


def test_multi_input_multi_output(multi_io_model: Any) -> None:
    info = walk(multi_io_model)
    assert info.input_shapes == ((None, 16, 16, 3), (None, 4))
    assert info.output_shapes == ((None, 3), (None, 16, 16, 1))
    inner = info.find("two_headed")
    assert inner is not None and inner.is_container
    assert inner.output_shapes == ((None, 16, 16, 4), (None, 4))
    merge = info.find("merge")
    assert merge is not None and set(merge.inbound) == {"two_headed", "meta"}
    assert info.total_params == multi_io_model.count_params()


def test_unknown_dims_are_none(keras: Any) -> None:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, name="down")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalMaxPooling2D()(x))
    info = walk(model)
    assert info.find("down").output_shapes == ((None, None, None, 4),)
    assert {row.stage for row in info.layers} == {0}


def test_trainable_state_comes_from_weights_not_flags(keras: Any, tmp_path: Any) -> None:
    inner = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, name="d1"), keras.layers.Dense(4, name="d2")],
        name="inner",
    )
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    inner.trainable = False
    info = walk(model)
    assert not info.find("inner").trainable
    assert not info.find("d1").trainable and info.find("d1").trainable_params == 0
    assert info.find("head").trainable
    assert info.trainable_params == 4 * 2 + 2 == _keras_trainable_count(model)

    path = tmp_path / "frozen_inner.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    again = walk(reloaded)
    assert again.trainable_params == _keras_trainable_count(reloaded)
    # Whatever the flags say after the round trip, the walk reports what training updates.
    for row in again.layers:
        if row.has_weights:
            assert row.trainable == (row.trainable_params > 0)
    assert not again.find("d1").trainable and not again.find("inner").trainable


def test_walk_keeps_no_keras_objects(resnet50_info: Any) -> None:
    import dataclasses

    allowed = (int, str, bool, float, type(None), tuple)

    def check(value: Any) -> None:
        if dataclasses.is_dataclass(value):
            for item in dataclasses.fields(value):
                if not item.name.startswith("_"):
                    check(getattr(value, item.name))
        elif isinstance(value, tuple):
            for item in value:
                check(item)
        else:
            assert isinstance(value, allowed), type(value)

    check(resnet50_info)


def test_weights_of_a_layer(resnet50_info: Any) -> None:
    bn = resnet50_info.find("conv5_block1_1_bn")
    assert bn.is_batch_norm
    shapes = {w.name.rsplit("/", 1)[-1]: w.shape for w in bn.weights}
    assert shapes == {
        "gamma": (512,),
        "beta": (512,),
        "moving_mean": (512,),
        "moving_variance": (512,),
    }
    assert bn.trainable_params == 1024 and bn.non_trainable_params == 1024
