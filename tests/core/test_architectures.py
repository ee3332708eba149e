# ruff: noqa: E501  (the table keeps one architecture a line)
"""Stage starts, blocks and cuts on every keras.applications architecture.

Each architecture is built once (``weights=None``, its default input size) and walked. The
table below is the expected first layer of every stage after the first, by index in
``model.layers`` and, where Keras gives the layer a name of the architecture's own (not an
automatic ``conv2d_203`` that depends on what the process built before), by name. The
expectations come from the architectures' definitions: a stage starts at the block that
halves the main path's resolution (VGG: the block after ``blockN_pool``; EfficientNet:
``blockNa``, whose depthwise convolution strides; ResNet: ``convN_block1``; ResNetV2: the
last block of the previous stage, which strides at its end).

Building all 40 costs about two minutes on two cores.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from feature_oracle import per_example_shapes

from kfreeze_tui.core.model import catalog, grouping
from kfreeze_tui.core.model.cut import CutIndex
from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo
from kfreeze_tui.core.plan.features import feature_cache
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.train.cost import TrainingSetup, cost_model

EXPECTED_STAGE_STARTS: dict[str, str] = {
    "ConvNeXtBase": "2:convnext_base_stem 24:convnext_base_downsampling_block_0 46:convnext_base_downsampling_block_1 236:convnext_base_downsampling_block_2",
    "ConvNeXtLarge": "2:convnext_large_stem 24:convnext_large_downsampling_block_0 46:convnext_large_downsampling_block_1 236:convnext_large_downsampling_block_2",
    "ConvNeXtSmall": "2:convnext_small_stem 24:convnext_small_downsampling_block_0 46:convnext_small_downsampling_block_1 236:convnext_small_downsampling_block_2",
    "ConvNeXtTiny": "2:convnext_tiny_stem 24:convnext_tiny_downsampling_block_0 46:convnext_tiny_downsampling_block_1 110:convnext_tiny_downsampling_block_2",
    "ConvNeXtXLarge": "2:convnext_xlarge_stem 24:convnext_xlarge_downsampling_block_0 46:convnext_xlarge_downsampling_block_1 236:convnext_xlarge_downsampling_block_2",
    "DenseNet121": "2:conv1_conv 6:pool1 53:conv3_block1_0_bn 141:conv4_block1_0_bn 313:conv5_block1_0_bn",
    "DenseNet169": "2:conv1_conv 6:pool1 53:conv3_block1_0_bn 141:conv4_block1_0_bn 369:conv5_block1_0_bn",
    "DenseNet201": "2:conv1_conv 6:pool1 53:conv3_block1_0_bn 141:conv4_block1_0_bn 481:conv5_block1_0_bn",
    "EfficientNetB0": "4:stem_conv 17:block2a_expand_conv 46:block3a_expand_conv 75:block4a_expand_conv 162:block6a_expand_conv",
    "EfficientNetB1": "4:stem_conv 29:block2a_expand_conv 73:block3a_expand_conv 117:block4a_expand_conv 234:block6a_expand_conv",
    "EfficientNetB2": "4:stem_conv 29:block2a_expand_conv 73:block3a_expand_conv 117:block4a_expand_conv 234:block6a_expand_conv",
    "EfficientNetB3": "4:stem_conv 29:block2a_expand_conv 73:block3a_expand_conv 117:block4a_expand_conv 264:block6a_expand_conv",
    "EfficientNetB4": "4:stem_conv 29:block2a_expand_conv 88:block3a_expand_conv 147:block4a_expand_conv 324:block6a_expand_conv",
    "EfficientNetB5": "4:stem_conv 41:block2a_expand_conv 115:block3a_expand_conv 189:block4a_expand_conv 396:block6a_expand_conv",
    "EfficientNetB6": "4:stem_conv 41:block2a_expand_conv 130:block3a_expand_conv 219:block4a_expand_conv 456:block6a_expand_conv",
    "EfficientNetB7": "4:stem_conv 53:block2a_expand_conv 157:block3a_expand_conv 261:block4a_expand_conv 558:block6a_expand_conv",
    "EfficientNetV2B0": "3:stem_conv 9:block2a_expand_conv 21:block3a_expand_conv 33:block4a_expand_conv 149:block6a_expand_conv",
    "EfficientNetV2B1": "3:stem_conv 14:block2a_expand_conv 33:block3a_expand_conv 52:block4a_expand_conv 198:block6a_expand_conv",
    "EfficientNetV2B2": "3:stem_conv 14:block2a_expand_conv 33:block3a_expand_conv 52:block4a_expand_conv 198:block6a_expand_conv",
    "EfficientNetV2B3": "3:stem_conv 14:block2a_expand_conv 33:block3a_expand_conv 52:block4a_expand_conv 228:block6a_expand_conv",
    "EfficientNetV2L": "2:stem_conv 24:block2a_expand_conv 71:block3a_expand_conv 118:block4a_expand_conv 549:block6a_expand_conv",
    "EfficientNetV2M": "2:stem_conv 19:block2a_expand_conv 52:block3a_expand_conv 85:block4a_expand_conv 396:block6a_expand_conv",
    "EfficientNetV2S": "2:stem_conv 14:block2a_expand_conv 40:block3a_expand_conv 66:block4a_expand_conv 287:block6a_expand_conv",
    "InceptionResNetV2": "1 10 17 261 595",
    "InceptionV3": "1 10 17 87 229",
    "MobileNet": "1:conv1 11:conv_dw_2 24:conv_dw_4 37:conv_dw_6 74:conv_dw_12",
    "MobileNetV2": "1:Conv1 9:block_1_expand 27:block_3_expand 54:block_6_expand 116:block_13_expand",
    "MobileNetV3Large": "2:conv 11:expanded_conv_1_expand 29:expanded_conv_3_expand 74:expanded_conv_6_expand 139:expanded_conv_12_expand",
    "MobileNetV3Small": "2:conv 6:expanded_conv_depthwise 17:expanded_conv_1_expand 35:expanded_conv_3_expand 109:expanded_conv_8_expand",
    "NASNetLarge": "1:stem_conv1 3 54:adjust_avg_pool_1_stem_2 384 711",
    "NASNetMobile": "1:stem_conv1 3 54:adjust_avg_pool_1_stem_2 294 531",
    "ResNet101": "2:conv1_conv 6:pool1_pool 39:conv3_block1_1_conv 81:conv4_block1_1_conv 313:conv5_block1_1_conv",
    "ResNet101V2": "2:conv1_conv 4:pool1_pool 28:conv2_block3_preact_bn 74:conv3_block4_preact_bn 329:conv4_block23_preact_bn",
    "ResNet152": "2:conv1_conv 6:pool1_pool 39:conv3_block1_1_conv 121:conv4_block1_1_conv 483:conv5_block1_1_conv",
    "ResNet152V2": "2:conv1_conv 4:pool1_pool 28:conv2_block3_preact_bn 118:conv3_block8_preact_bn 516:conv4_block36_preact_bn",
    "ResNet50": "2:conv1_conv 6:pool1_pool 39:conv3_block1_1_conv 81:conv4_block1_1_conv 143:conv5_block1_1_conv",
    "ResNet50V2": "2:conv1_conv 4:pool1_pool 28:conv2_block3_preact_bn 74:conv3_block4_preact_bn 142:conv4_block6_preact_bn",
    "VGG16": "4:block2_conv1 7:block3_conv1 11:block4_conv1 15:block5_conv1",
    "VGG19": "4:block2_conv1 7:block3_conv1 12:block4_conv1 17:block5_conv1",
    "Xception": "1:block1_conv1 7:block2_sepconv1 16:block3_sepconv1_act 26:block4_sepconv1_act 116:block13_sepconv1_act",
}

#: Published multiply-adds of one forward pass at the default size (no top), and where they
#: come from. kfreeze's cost model must agree within 5 %.
PUBLISHED_MACS: dict[str, float] = {
    "ResNet50": 3.9e9,  # He et al. 2015, "Deep Residual Learning", table 1: 3.8 x 10^9 (3.9 G)
    "MobileNetV2": 0.30e9,  # Sandler et al. 2018, table 4: 300M multiply-adds
    "EfficientNetB0": 0.39e9,  # Tan and Le 2019, table 2: 0.39B FLOPs (multiply-adds)
    "VGG16": 15.3e9,  # Simonyan and Zisserman 2014 (convolutions only): 15.3 G
}

#: NASNet's cells read the outputs of the two cells before them, so from the first cell on
#: no cut between cells is clean.
TWO_INPUT_CELLS = {"NASNetLarge", "NASNetMobile"}


def _build(name: str) -> tuple[Any, ModelInfo]:
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.model.loading import LoadOptions, load

    loaded = load(name, LoadOptions(weights="none"))
    return loaded.model, walk(loaded.model, loaded.source)


def _stage_starts(info: ModelInfo) -> list[LayerInfo]:
    top = info.top_level
    return [row for prev, row in itertools.pairwise(top) if row.stage != prev.stage]


def test_the_table_covers_every_architecture_keras_offers() -> None:
    assert sorted(EXPECTED_STAGE_STARTS) == sorted(a.name for a in catalog.architectures())


@pytest.mark.parametrize("name", sorted(EXPECTED_STAGE_STARTS))
def test_stage_starts_blocks_and_cuts(name: str, keras: Any) -> None:
    model, info = _build(name)
    top = info.top_level
    starts = _stage_starts(info)
    expected = [item.split(":") for item in EXPECTED_STAGE_STARTS[name].split()]
    assert [row.index for row in starts] == [int(item[0]) for item in expected]
    for row, item in zip(starts, expected, strict=True):
        if len(item) == 2:
            assert row.name == item[1]

    # Every stage start is the start of a block, never padding, never a side branch.
    position_of = {row.name: row.index for row in top}
    inbound = [[position_of[n] for n in row.inbound if n in position_of] for row in top]
    main = grouping.main_path([row.output_shape for row in top], inbound)
    skipped = grouping.PADDING_CLASSES | grouping.PREPROCESSING_CLASSES
    for row in starts:
        before = [r for r in top[: row.index] if r.block == row.block]
        assert all(r.class_name in skipped for r in before), f"{row.name} is inside a block"
        assert row.class_name not in grouping.PADDING_CLASSES
        assert main[row.index], f"{row.name} is on a side branch"

    # The cut before every stage start is clean: one tensor crosses it.
    # So is the cut before every block start but NASNet's.
    cuts = CutIndex(info)
    for row in starts:
        cut = cuts.at(row.path)
        if name in TWO_INPUT_CELLS and row.index > 3:
            # Each cell reads the two cells before it, and the next cell starts adjusting
            # the older one before the current cell ends: 2 or 3 tensors cross.
            assert 2 <= len(cut.crossing) <= 3, (row.name, cut)
        else:
            assert cut.clean and len(cut.crossing) == 1, (row.name, cut)

    # The cost model prices every architecture; full fine-tuning is the unit of relative_step
    # and training from a later stage start costs less.
    view = PlanView(info)
    model_costs = cost_model(view)
    assert model_costs.forward_macs_per_example > 0
    setup = TrainingSetup(batch=8)
    full = model_costs.estimate(FreezePlan(boundary=view.first_path()), setup)
    assert full.relative_step == pytest.approx(1.0, abs=1e-3)
    last = model_costs.estimate(FreezePlan(boundary=starts[-1].path), setup)
    assert last.relative_step < 1.0 and last.memory.total < full.memory.total
    if name in PUBLISHED_MACS:
        published = PUBLISHED_MACS[name]
        assert abs(model_costs.forward_macs_per_example - published) <= 0.05 * published

    if name not in TWO_INPUT_CELLS:
        block_starts = [r for prev, r in itertools.pairwise(top) if r.block != prev.block]
        unclean = [r.name for r in block_starts if not cuts.at(r.path).clean]
        assert not unclean, f"blocks of {name} that start inside a unit: {unclean}"

    # Blocks are runs: no block name comes back after another block started.
    runs = [
        row.block
        for prev, row in zip((None, *top), top, strict=False)
        if prev is None or prev.block != row.block
    ]
    assert len(runs) == len(set(runs)), f"a block of {name} is split in two"

    _check_feature_cache(model, info, starts)

    if name == "EfficientNetB0":
        assert {"block4a_expand_conv", "block6a_expand_conv"} <= {row.name for row in starts}
        assert [row.stage_name for row in starts][-2:] == ["block4-5", "block6-7"]
    if name == "VGG16":
        assert [row.name for row in starts][-2:] == ["block4_conv1", "block5_conv1"]
    if name == "ResNet50":
        assert [row.stage_name for row in starts] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    if name in TWO_INPUT_CELLS:
        cells = [block for block in runs if block.startswith("cell_")]
        assert cells[:3] == ["cell_stem_1", "cell_stem_2", "cell_0"]
        reductions = [cell for cell in cells if cell.startswith("cell_reduce_")]
        assert len(reductions) == 2
        # 2 stem cells, 2 reduction cells and 3 stacks of 4 (Mobile) or 6 (Large) normal cells.
        assert len(cells) == 4 + 3 * (4 if name == "NASNetMobile" else 6)


def _check_feature_cache(model: Any, info: ModelInfo, starts: list[LayerInfo]) -> None:
    """At every stage start (and head only), the feature cache's verdict; where cacheable,
    its tensors' shapes are those of ``keras.Model(model.inputs, crossing)``'s outputs as
    Keras builds them, and bytes are their elements x 4 (float32)."""
    view = PlanView(info)
    weighted_before = {
        row.path: any(leaf.own_has_weights for leaf in view.leaves[: view.span(row.path)[0]])
        for row in starts
    }
    plans = [FreezePlan(boundary=None)] + [FreezePlan(boundary=row.path) for row in starts]
    for plan in plans:
        cache = feature_cache(view, plan)
        if plan.boundary is not None and not weighted_before[plan.boundary]:
            assert not cache.cacheable and "nothing is frozen" in cache.reason, cache
            continue
        # No augmentation, no exception, fixed input size: every such cut can be cached.
        assert cache.cacheable, (plan.boundary, cache)
        labels = cache.tensors
        if plan.boundary is not None:
            assert labels == view.cut(plan).crossing
        shapes = per_example_shapes(model, labels)
        assert list(cache.shapes) == shapes, (labels, cache.shapes, shapes)
        assert cache.bytes_per_example == 4 * sum(math.prod(s) for s in shapes)  # type: ignore[misc]
