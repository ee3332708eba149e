"""Stages and blocks as pure functions of names, classes, shapes and the graph."""

from __future__ import annotations

from kfreeze_tui.core.model import grouping


def _chain(n: int) -> list[list[int]]:
    return [[]] + [[i - 1] for i in range(1, n)]


def _stages(names, classes, shapes, inbound, has_weights=None):
    weights = has_weights or [c in ("Conv2D", "BatchNormalization", "Dense") for c in classes]
    block_of = grouping.blocks(names, classes, inbound, weights)
    return grouping.stages(names, classes, shapes, inbound, block_of), block_of


def test_vgg_pool_starts_the_next_block() -> None:
    # VGG: the pool is the last layer of its block, so the stage starts at the next conv.
    names = ["input", "block1_conv1", "block1_pool", "block2_conv1", "block2_pool", "flat"]
    classes = ["InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten"]
    shapes = [
        (None, 32, 32, 3),
        (None, 32, 32, 8),
        (None, 16, 16, 8),
        (None, 16, 16, 8),
        (None, 8, 8, 8),
        (None, 512),
    ]
    stages, _ = _stages(names, classes, shapes, _chain(6))
    assert stages.starts == (3,)  # block2_conv1; block2_pool's stage would start after it
    assert stages.of == (0, 0, 0, 1, 1, 1)
    assert stages.names == ("block1", "block2")


def test_padding_and_a_valid_trim_start_no_stage() -> None:
    names = ["input", "conv1_pad", "conv1_conv", "conv2_conv", "conv3_conv"]
    classes = ["InputLayer", "ZeroPadding2D", "Conv2D", "Conv2D", "Conv2D"]
    # 224 -> pad 230 -> stride 2 to 112 -> valid 3x3 trims to 110 -> stride 2 to 55
    shapes = [
        (None, 224, 224, 3),
        (None, 230, 230, 3),
        (None, 112, 112, 8),
        (None, 110, 110, 8),
        (None, 55, 55, 8),
    ]
    stages, _ = _stages(names, classes, shapes, _chain(5))
    assert stages.starts == (2, 4)


def test_squeeze_and_excite_is_a_side_branch() -> None:
    # x -> gap (1x1) -> conv (1x1) -> multiply(x, gate): the 1x1 gate never starts a stage.
    names = ["input", "b1_conv", "b1_se_squeeze", "b1_se_reduce", "b1_se_excite", "b1_project"]
    classes = ["InputLayer", "Conv2D", "GlobalAveragePooling2D", "Conv2D", "Multiply", "Conv2D"]
    shapes = [
        (None, 28, 28, 3),
        (None, 28, 28, 8),
        (None, 1, 1, 8),
        (None, 1, 1, 8),
        (None, 28, 28, 8),
        (None, 28, 28, 8),
    ]
    inbound = [[], [0], [1], [2], [1, 3], [4]]
    assert grouping.main_path(shapes, inbound) == [True, True, False, False, True, True]
    stages, _ = _stages(names, classes, shapes, inbound)
    assert stages.starts == ()


def test_a_residual_unit_is_one_block_and_its_stride_starts_the_stage_at_its_start() -> None:
    # x -> [a_conv (stride 2) -> a_bn], [shortcut conv2d_7 (automatic name)] -> add
    names = ["input", "stem_conv", "unit1_a_conv", "unit1_a_bn", "conv2d_7", "add_3", "relu"]
    classes = ["InputLayer", "Conv2D", "Conv2D", "BatchNormalization", "Conv2D", "Add", "ReLU"]
    shapes = [
        (None, 16, 16, 3),
        (None, 16, 16, 8),
        (None, 8, 8, 8),
        (None, 8, 8, 8),
        (None, 8, 8, 8),
        (None, 8, 8, 8),
        (None, 8, 8, 8),
    ]
    inbound = [[], [0], [1], [2], [1], [3, 4], [5]]
    stages, block_of = _stages(names, classes, shapes, inbound)
    # The graph makes one span of the unit; its automatic-named layers join the named block.
    assert block_of[2:6] == ["unit1"] * 4
    assert block_of[6] == "unit1"  # the activation after the add follows its block
    assert stages.starts == (2,)


def test_live_tensors_and_segments() -> None:
    inbound = [[], [0], [1], [1], [2, 3], [4]]
    assert grouping.live_after(inbound) == [1, 1, 2, 2, 1, 0]
    assert grouping.segments(inbound) == [(0, 0), (1, 1), (2, 4), (5, 5)]


def test_nasnet_cells_are_split_by_their_names() -> None:
    # Two tensors stay live between cells, so the graph alone makes one span of all of it.
    names = [
        "input",
        "stem_conv1",
        "normal_conv_1_0",
        "activation_5",
        "normal_concat_0",
        "adjust_relu_1_1",
        "normal_conv_1_1",
        "normal_concat_1",
    ]
    classes = [
        "InputLayer",
        "Conv2D",
        "Conv2D",
        "Activation",
        "Concatenate",
        "Activation",
        "Conv2D",
        "Concatenate",
    ]
    inbound = [[], [0], [1], [2], [1, 3], [1], [4, 5], [4, 6]]
    blocks = grouping.blocks(
        names, classes, inbound, [False, True, True, False, False, False, True, False]
    )
    assert blocks[2:5] == ["cell_0"] * 3
    assert blocks[5:8] == ["cell_1"] * 3


def test_name_blocks() -> None:
    assert grouping.name_block("conv5_block1_1_conv", "Conv2D") == "conv5_block1"
    assert grouping.name_block("block6a_expand_conv", "Conv2D") == "block6a"
    assert grouping.name_block("block_13_expand", "Conv2D") == "block_13"
    assert grouping.name_block("conv1_pad", "ZeroPadding2D") == "conv1"
    assert grouping.name_block("expanded_conv_1_expand", "Conv2D") == "expanded_conv_1"
    assert grouping.name_block("block35_10_conv", "Conv2D") == "block35_10"
    assert grouping.name_block("mixed_6a", "Concatenate") == "mixed_6a"
    assert grouping.name_block("separable_conv_1_reduction_left1_reduce_4", "SeparableConv2D") == (
        "cell_reduce_4"
    )
    assert grouping.name_block("conv_pw_7_bn", "BatchNormalization") == "block_7"
    assert grouping.name_block("mixed9_1", "Concatenate") == "mixed10"  # inside mixed10
    # Keras's automatic names carry no block.
    assert grouping.name_block("conv2d_12", "Conv2D") is None
    assert grouping.name_block("conv2d_transpose_3", "Conv2DTranspose") is None
    assert grouping.name_block("batch_normalization_3", "BatchNormalization") is None


def test_automatic_layers_group_as_conv_units() -> None:
    names = [
        "input",
        "conv2d",
        "batch_normalization",
        "activation",
        "max_pooling2d",
        "conv2d_1",
        "activation_1",
    ]
    classes = [
        "InputLayer",
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Conv2D",
        "Activation",
    ]
    weights = [False, True, True, False, False, True, False]
    assert grouping.blocks(names, classes, _chain(7), weights) == [
        "input",
        "conv2d",
        "conv2d",
        "conv2d",
        "max_pooling2d",
        "conv2d_1",
        "conv2d_1",
    ]


def test_named_layers_inherit_a_block_they_mention() -> None:
    names = ["Conv1", "bn_Conv1", "Conv1_relu", "block_1_expand"]
    classes = ["Conv2D", "BatchNormalization", "ReLU", "Conv2D"]
    assert grouping.blocks(names, classes, _chain(4), [True, True, False, True]) == [
        "Conv1",
        "Conv1",
        "Conv1",
        "block_1",
    ]


def test_stage_numbering_that_disagrees_with_the_graph_is_not_used() -> None:
    # ResNetV2 downsamples in the last block of a stage: conv2_block2 lies in the 4x4 stage,
    # so "conv2" would name two stages; the stages keep generic names.
    names = ["input", "conv2_block1_conv", "conv2_block2_conv", "conv3_block1_conv"]
    classes = ["InputLayer", "Conv2D", "Conv2D", "Conv2D"]
    shapes = [(None, 8, 8, 3), (None, 8, 8, 8), (None, 4, 4, 8), (None, 4, 4, 8)]
    stages, _ = _stages(names, classes, shapes, _chain(4))
    assert stages.starts == (2,)
    assert stages.names == ("stage 0", "stage 1")
