"""Stages and blocks as pure functions of names, classes and shapes."""

from __future__ import annotations

from kfreeze_tui.core import grouping


def test_padding_starts_no_stage() -> None:
    shapes = [(None, 224, 224, 3), (None, 230, 230, 3), (None, 112, 112, 64), (None, 114, 114, 64)]
    assert grouping.stages(shapes) == [0, 0, 1, 1]


def test_non_spatial_and_unknown_outputs_keep_the_stage() -> None:
    shapes = [(None, 8, 8, 3), (None, 4, 4, 3), (None, 10), None, (None, None, None, 3)]
    assert grouping.stages(shapes) == [0, 1, 1, 1, 1]


def test_name_blocks() -> None:
    assert grouping.name_block("conv5_block1_1_conv", "Conv2D") == "conv5_block1"
    assert grouping.name_block("block6a_expand_conv", "Conv2D") == "block6a"
    assert grouping.name_block("block_13_expand", "Conv2D") == "block_13"
    assert grouping.name_block("conv1_pad", "ZeroPadding2D") == "conv1"
    assert grouping.name_block("expanded_conv_1_expand", "Conv2D") == "expanded_conv_1"
    # Keras's automatic names carry no block.
    assert grouping.name_block("conv2d_12", "Conv2D") is None
    assert grouping.name_block("conv2d_transpose_3", "Conv2DTranspose") is None
    assert grouping.name_block("batch_normalization_3", "BatchNormalization") is None


def test_fallback_blocks_end_at_merge_layers() -> None:
    names = [
        "conv2d",
        "batch_normalization",
        "conv2d_1",
        "batch_normalization_1",
        "mixed0",
        "conv2d_2",
        "mixed1",
    ]
    classes = [
        "Conv2D",
        "BatchNormalization",
        "Conv2D",
        "BatchNormalization",
        "Concatenate",
        "Conv2D",
        "Concatenate",
    ]
    inbound = [1, 1, 1, 1, 2, 1, 2]
    assert grouping.blocks(names, classes, inbound, [0] * 7) == [
        "mixed0",
        "mixed0",
        "mixed0",
        "mixed0",
        "mixed0",
        "mixed1",
        "mixed1",
    ]


def test_fallback_blocks_without_merges_follow_stages() -> None:
    names = ["conv2d", "max_pooling2d", "conv2d_1", "flatten", "dense"]
    classes = ["Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense"]
    stage_of = [0, 1, 1, 1, 1]
    assert grouping.blocks(names, classes, [0, 1, 1, 1, 1], stage_of) == [
        "conv2d",
        "max_pooling2d",
        "max_pooling2d",
        "max_pooling2d",
        "max_pooling2d",
    ]


def test_named_layers_inherit_a_block_they_mention() -> None:
    names = ["Conv1", "bn_Conv1", "Conv1_relu", "block_1_expand"]
    classes = ["Conv2D", "BatchNormalization", "ReLU", "Conv2D"]
    assert grouping.blocks(names, classes, [1, 1, 1, 1], [0] * 4) == [
        "Conv1",
        "Conv1",
        "Conv1",
        "block_1",
    ]
