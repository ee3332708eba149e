"""The walk into keras-hub backbones built offline (tiny BERT, Gemma, ViT): every parameter
counted once, plans applied as planned (a container's own weights included), transformer
blocks as blocks and embeddings / encoder / pooling as stages."""

from __future__ import annotations

import math
from typing import Any

import hub_presets
import numpy as np
import pytest
from planned import assert_trains_as_planned
from sublayer_outputs import agrees, shapes_when_run

from kfreeze_tui.core.model.layers import ModelInfo, walk
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.train.build import apply_freeze, flags_restored, layer_at

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def backbones(keras: Any) -> dict[str, Any]:
    return {"bert": hub_presets.bert(), "gemma": hub_presets.gemma(), "vit": hub_presets.vit()}


@pytest.fixture(scope="module")
def infos(backbones: dict[str, Any]) -> dict[str, ModelInfo]:
    return {name: walk(model) for name, model in backbones.items()}


def _size(variables: Any) -> int:
    return sum(math.prod(v.shape) for v in variables)


@pytest.mark.parametrize("name", ["bert", "gemma", "vit"])
def test_counts_equal_keras(
    name: str, backbones: dict[str, Any], infos: dict[str, ModelInfo]
) -> None:
    model, info = backbones[name], infos[name]
    view = PlanView(info)
    assert info.total_params == model.count_params()
    assert sum(leaf.own_trainable_size for leaf in view.leaves) == model.count_params()
    # The tree goes below model.layers, as summary() does not.
    assert len(info.layers) > len(model.layers)
    assert max(row.depth for row in info.layers) >= 2


@pytest.mark.parametrize("name", ["bert", "gemma", "vit"])
def test_every_boundary_trains_the_planned_weights(
    name: str, backbones: dict[str, Any], infos: dict[str, ModelInfo]
) -> None:
    model, info = backbones[name], infos[name]
    view = PlanView(info)
    with flags_restored(model):
        for leaf in view.leaves[:: max(1, len(view.leaves) // 12)] + view.leaves[-2:]:
            assert_trains_as_planned(model, view, FreezePlan(boundary=leaf.path), leaf.path_text)


def test_vits_class_token_is_the_patching_layers_own_and_freezes_alone(
    backbones: dict[str, Any], infos: dict[str, ModelInfo]
) -> None:
    model, info = backbones["vit"], infos["vit"]
    patching = info.find("vit_patching_and_embedding")
    assert patching is not None and patching.is_container and patching.own_weight_count == 1
    token = patching.own_weights[0]
    view = PlanView(info)
    inside = info.children(patching.path)[0].path  # patch_embedding: the token before it
    with flags_restored(model):
        apply_freeze(model, view, FreezePlan(boundary=inside))
        paths = {v.path for v in model.trainable_weights}
        assert token.name not in paths
        assert any(p.startswith(f"{patching.name}/patch_embedding") for p in paths)
        apply_freeze(model, view, FreezePlan(boundary=patching.path))
        assert token.name in {v.path for v in model.trainable_weights}


def test_transformer_layers_are_blocks_and_stages(infos: dict[str, ModelInfo]) -> None:
    bert = infos["bert"]
    top = {row.name: row for row in bert.top_level}
    assert top["transformer_layer_0"].block == "transformer_layer_0"
    assert top["transformer_layer_1"].block == "transformer_layer_1"
    assert top["token_embedding"].stage_name == "embeddings"
    assert top["transformer_layer_0"].stage_name == "encoder"
    assert top["pooled_dense"].stage_name == "pooling"
    gemma = {row.name: row for row in infos["gemma"].top_level}
    assert gemma["decoder_block_0"].block != gemma["decoder_block_1"].block
    assert gemma["decoder_block_1"].stage_name == "encoder"
    assert gemma["final_normalization"].stage_name == "output"
    vit = {row.name: row for row in infos["vit"].top_level}
    assert vit["vit_patching_and_embedding"].stage_name == "embeddings"
    assert vit["vit_encoder"].stage_name == "encoder"


def test_a_boundary_inside_a_bert_block_exports_with_its_load_step(
    keras: Any, run_cli: Any, tmp_path: Any
) -> None:
    """A boundary at the value projection of transformer_layer_0's attention: the exported
    script's load() gives the file the flags plain Keras gives with the query and key
    projections frozen by hand (Keras keeps no sublayer flag in the file)."""
    import ast
    import subprocess
    import sys

    import hub_presets

    source = tmp_path / "bert.keras"
    hub_presets.bert().save(str(source))
    result = run_cli(
        "export", str(source), "--feature-layer", "pooled_dense", "--pool", "none",
        "--classes", "2", "-o", str(tmp_path / "out.keras"), "--script", str(tmp_path / "ft.py"),
        "--freeze-before", "transformer_layer_0/self_attention_layer/value",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "freezes part of transformer_layer_0" in result.stderr
    reference = hub_presets.bert()
    attention = reference.get_layer("transformer_layer_0")._self_attention_layer
    attention._query_dense.trainable = False
    attention._key_dense.trainable = False
    expected = sorted(
        v.path for v in reference.trainable_weights if v.path.startswith("transformer_layer_0/")
    )
    assert any("/value/" in path for path in expected)
    assert not any("/query/" in path for path in expected)
    probe = (
        "import runpy\n"
        f"script = runpy.run_path({str(tmp_path / 'ft.py')!r}, run_name='not_main')\n"
        "model = script['load']('out.keras')\n"
        "print(sorted(v.path for v in model.trainable_weights\n"
        "             if v.path.startswith('transformer_layer_0/')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert ast.literal_eval(run.stdout.strip().splitlines()[-1]) == expected


def _inputs(name: str) -> Any:
    rng = np.random.default_rng(0)
    if name == "vit":
        return rng.normal(size=(2, 32, 32, 3)).astype("float32")
    tokens = rng.integers(1, 100, size=(2, 7)).astype("int32")
    mask = np.ones((2, 7), "int32")
    if name == "bert":
        return {"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": mask}
    return {"token_ids": tokens, "padding_mask": mask}


@pytest.mark.parametrize("name", ["bert", "gemma", "vit"])
def test_sublayer_shapes_are_those_keras_makes_when_it_runs(
    name: str, backbones: dict[str, Any], infos: dict[str, ModelInfo]
) -> None:
    model, info = backbones[name], infos[name]
    inside = [row for row in info.layers if len(row.path) > 1]
    layers = [layer_at(model, row.path) for row in inside]
    actual = shapes_when_run(model, _inputs(name), layers)
    known = 0
    for row, layer in zip(inside, layers, strict=True):
        if not row.output_shapes or id(layer) not in actual:
            continue
        ran = actual[id(layer)]
        # A layer called several times (a shared norm) is shown by its first call.
        assert agrees(row.output_shapes[0], ran[0]), (
            row.path_text,
            row.name,
            row.output_shapes,
            ran,
        )
        known += 1
    # Every sublayer with weights that ran shows a shape, but Gemma's RMSNormalization,
    # which has no compute_output_shape (Keras raises NotImplementedError): it stays "?".
    unknown = {
        r.class_name
        for r, layer in zip(inside, layers, strict=True)
        if r.has_weights and not r.is_container and id(layer) in actual and not r.output_shapes
    }
    assert unknown == ({"RMSNormalization"} if name == "gemma" else set())
    assert known >= 8
