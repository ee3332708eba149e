"""The cut a boundary makes, and the Keras 2 names of ResNet's layers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.cut import CutIndex
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.names import find_layer, keras2_resnet_name, parse_layer_ref
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView


def test_clean_cut_before_stage_5_of_resnet50(resnet50_info: Any) -> None:
    cut = CutIndex(resnet50_info).at((143,))
    assert cut.to_json() == {
        "boundary": "conv5_block1_1_conv",
        "crossing": ["conv4_block6_out"],
        "clean": True,
        "splits_block": None,
        "into": None,
        "inside": None,
    }
    assert cut.describe() == "clean cut: conv4_block6_out"


def test_a_cut_inside_a_residual_unit_splits_its_block(resnet50_info: Any) -> None:
    index = next(r.index for r in resnet50_info.top_level if r.name == "conv5_block1_2_conv")
    cut = CutIndex(resnet50_info).at((index,))
    # The shortcut still needs conv4_block6_out; the main branch needs conv5_block1_1_relu.
    assert set(cut.crossing) == {"conv4_block6_out", "conv5_block1_1_relu"}
    assert not cut.clean
    assert cut.splits_block == "conv5_block1"
    assert cut.describe().startswith("splits block conv5_block1: 2 tensors cross")


def test_a_boundary_at_a_residual_add_cuts_both_branches_into_it(resnet50_info: Any) -> None:
    add = resnet50_info.find("conv5_block1_add")
    cut = CutIndex(resnet50_info).at(add.path)
    # He et al.'s projection shortcut (branch 1, conv5_block1_0_*) and the main branch both
    # end in the add, and nothing after it reads them.
    assert set(cut.crossing) == {"conv5_block1_0_bn", "conv5_block1_3_bn"}
    assert cut.into == "conv5_block1_add" and cut.splits_block is None
    assert cut.brief() == "2 tensors cross into conv5_block1_add"


def test_every_block_start_of_resnet50_is_a_clean_cut(resnet50_info: Any) -> None:
    cuts = CutIndex(resnet50_info)
    top = resnet50_info.top_level
    starts = [row for prev, row in itertools.pairwise(top) if row.block != prev.block]
    assert len(starts) >= 18
    for row in starts:
        assert cuts.at(row.path).clean, row.name


def test_cut_inside_a_nested_base(wrapped_base: Any) -> None:
    info = walk(wrapped_base)
    cut = CutIndex(info).at((0, 143))  # a Sequential keeps no InputLayer in .layers
    assert cut.crossing == ("conv4_block6_out",) and cut.clean
    assert CutIndex(info).at((1,)).crossing == (info.layer((0,)).name,)


def test_a_skip_connection_past_the_boundary_is_not_clean(keras: Any) -> None:
    inputs = keras.Input((8,), name="x")
    a = keras.layers.Dense(8, name="enc1")(inputs)
    b = keras.layers.Dense(8, name="enc2")(a)
    c = keras.layers.Dense(8, name="dec")(b)
    out = keras.layers.Add(name="skip")([a, c])
    info = walk(keras.Model(inputs, out))
    cut = PlanView(info).cut(FreezePlan(boundary=(3,)))  # dec trains, enc1 feeds the add
    assert set(cut.crossing) == {"enc1", "enc2"} and not cut.clean


def test_everything_or_nothing_frozen(resnet50_info: Any) -> None:
    view = PlanView(resnet50_info)
    assert view.cut(FreezePlan(boundary=None)).describe() == "no cut: every layer frozen"
    assert view.cut(FreezePlan(boundary=(0,))).describe() == "no cut: every layer trains"


# -- Keras 2 names -----------------------------------------------------------------------

#: Keras 2.1's ResNet50 (keras/applications/resnet50.py): identity_block / conv_block with
#: stage numbers 2-5, blocks 'a'.. and branch names 'res{stage}{block}_branch{1|2a|2b|2c}'.
KERAS2_BLOCKS = {2: "abc", 3: "abcd", 4: "abcdef", 5: "abc"}


def test_documented_old_names() -> None:
    assert keras2_resnet_name("res5a_branch2a") == "conv5_block1_1_conv"
    assert keras2_resnet_name("bn5a_branch2a") == "conv5_block1_1_bn"
    assert keras2_resnet_name("res4f_branch2c") == "conv4_block6_3_conv"
    assert keras2_resnet_name("res2a_branch1") == "conv2_block1_0_conv"
    assert keras2_resnet_name("scale3d_branch2b") == "conv3_block4_2_bn"
    assert keras2_resnet_name("res4b22_branch2a") == "conv4_block23_1_conv"  # Caffe ResNet101
    assert keras2_resnet_name("bn_conv1") == "conv1_bn"
    assert keras2_resnet_name("conv5_block1_1_conv") is None
    assert keras2_resnet_name("res4c1_branch2a") is None  # only b<N> counts that way


def test_every_keras2_resnet50_name_resolves(resnet50_info: Any) -> None:
    old_names = ["conv1", "bn_conv1"]
    for stage, letters in KERAS2_BLOCKS.items():
        for letter in letters:
            branches = ["2a", "2b", "2c"] + (["1"] if letter == "a" else [])
            for branch in branches:
                old_names += [
                    f"res{stage}{letter}_branch{branch}",
                    f"bn{stage}{letter}_branch{branch}",
                ]
    found = {}
    for old in old_names:
        row, note = find_layer(resnet50_info, old)
        assert row is not None, old
        assert note and note.startswith(f"{old} is the Keras 2 name of {row.name} (index ")
        found[old] = row
    # Every convolution and batch normalization of ResNet50 has exactly one old name.
    targets = {row.name for row in found.values()}
    convs = {
        r.name for r in resnet50_info.top_level if r.class_name in ("Conv2D", "BatchNormalization")
    }
    assert targets == convs
    assert found["res5a_branch2a"].index == 143


def test_old_names_in_layer_references(resnet50_info: Any) -> None:
    notes: list[str] = []
    assert parse_layer_ref(resnet50_info, "res5a_branch2a", notes) == (143,)
    assert notes == ["res5a_branch2a is the Keras 2 name of conv5_block1_1_conv (index 143)"]
    with pytest.raises(PlanError):
        parse_layer_ref(resnet50_info, "res6a_branch2a")  # there is no stage 6


def test_plan_files_written_with_keras2_names(resnet50_info: Any, tmp_path: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.plan.head import HeadSpec, feature_layer
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.plan.planfile import document, read, resolve, to_toml

    view = PlanView(resnet50_info)
    plan = FreezePlan(boundary=(143,), exceptions=frozenset({(81,)}))
    text = to_toml(
        document("resnet50", LoadOptions(weights="none"), view, plan, HeadSpec(), CompileSpec())
    )
    # An old tutorial's plan: Keras 2 names and no paths.
    old = (
        text.replace('"conv5_block1_1_conv"', '"res5a_branch2a"')
        .replace('"conv4_block1_1_conv"', '"res4a_branch2a"')
        .replace('"conv5_block3_out"', '"res5c_relu"')
    )
    old = "\n".join(line for line in old.splitlines() if "_path" not in line)
    assert "res5a_branch2a" in old and "res4a_branch2a" in old and "res5c_relu" in old
    path = tmp_path / "old.toml"
    path.write_text(old)
    doc = read(path)
    resolved, notes = resolve(doc, resnet50_info)
    assert resolved == plan
    assert "boundary res5a_branch2a is the Keras 2 name of conv5_block1_1_conv (index 143)" in notes
    assert "exception res4a_branch2a is the Keras 2 name of conv4_block1_1_conv (index 81)" in notes
    assert feature_layer(resnet50_info, doc.head).name == "conv5_block3_out"
