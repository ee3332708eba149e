"""Export with LoRA of a keras-hub backbone (a tiny BERT preset, LoRA on keras-hub's attention
targets), and the ViT file that keras-hub 0.32 could not load back: the deployable file loads
in a fresh process with keras_hub imported, the script rebuilds the LoRA model with
keras-hub's own LoRA count and trains it one step."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")

import hub_presets
import numpy as np
from lora_probe import run_facts

from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.export import ExportRequest, rejected_config_keys

RANK = 4
BERT_HEAD = HeadSpec(feature_layer="pooled_dense", pooling="none", classes=2)


@pytest.fixture(scope="module")
def folder(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lora_export_hub")
    hub_presets.bert().save_to_preset(str(folder / "bert"))
    hub_presets.vit().save_to_preset(str(folder / "vit"))
    return folder


def _keras_hub_oracle(folder: Path) -> int:
    """Trainable parameters as keras-hub's own ``backbone.enable_lora`` makes them (every
    other weight frozen), plus the head's Dense(2) on the 32 pooled features."""
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(folder / "bert"))
    backbone.enable_lora(RANK)
    return sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) + 32 * 2 + 2


_FRESH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_hub
    from lora_probe import deploy_and_step
    folder = sys.argv[1]
    x = {
        "token_ids": np.arange(32).reshape(2, 16) % 1000,
        "segment_ids": np.zeros((2, 16), "int32"),
        "padding_mask": np.ones((2, 16), "int32"),
    }
    facts, _ = deploy_and_step(folder, "bert_out", x, np.array([0, 1]))
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    # The file's backbone part against the preset's own backbone (its weights unchanged).
    vit = keras.saving.load_model(folder + "/vit_out.keras")
    features = keras.Model(vit.inputs, vit.get_layer("vit_encoder").output)
    preset = keras_hub.models.Backbone.from_preset(folder + "/vit")
    difference = np.asarray(features(images)) - np.asarray(preset(images))
    facts["vit_vs_preset"] = float(np.max(np.abs(difference)))
    print("FACTS " + json.dumps(facts))
    """
)


def test_bert_lora_and_vit_files_load_in_a_fresh_process(folder: Path, keras: Any) -> None:
    bert = ModelSession(load(str(folder / "bert"), LoadOptions()))
    plan = FreezePlan(boundary=None, lora=LoraSpec(RANK, "attention"))
    request = ExportRequest(
        model_path=folder / "bert_out.keras", script_path=folder / "bert_out.py"
    )
    result = bert.export(LoadOptions(), plan, BERT_HEAD, CompileSpec(), request)
    assert [f.what for f in result.files] == ["model", "LoRA adapters", "script"]
    oracle = _keras_hub_oracle(folder)
    assert result.verification.trainable_params == oracle
    assert "4 of 4 LoRA B matrices moved" in "; ".join(result.verification.checks)
    assert not [w for w in bert.model.weights if "lora" in w.path]  # the session's model
    # ViT frozen before its encoder: the patching layer's config, as keras-hub 0.32 writes
    # it, does not load back in a functional model; the export leaves out what it refuses.
    vit = ModelSession(load(str(folder / "vit"), LoadOptions()))
    vit_plan = FreezePlan(boundary=vit.info.find("vit_encoder").path)
    vit_request = ExportRequest(model_path=folder / "vit_out.keras")
    vit_result = vit.export(
        LoadOptions(), vit_plan, HeadSpec(classes=3), CompileSpec(), vit_request
    )
    checks = "; ".join(vit_result.verification.checks)
    assert "vit_patching_and_embedding.num_patches" in checks
    facts = run_facts(_FRESH, str(folder))
    assert facts["deployed_lora"] == []
    assert facts["script_trainable"] == oracle
    assert facts["deployed_vs_script"] < 1e-5
    assert facts["b_count"] == 4 and facts["b_moved"] == 4
    assert facts["frozen_changed"] == 0
    assert facts["vit_vs_preset"] < 1e-5


def test_the_rule_finds_only_keys_a_constructor_refuses(keras: Any) -> None:
    import keras_hub  # noqa: F401

    vit = hub_presets.vit()
    patching = vit.get_layer("vit_patching_and_embedding")
    assert rejected_config_keys(patching) == {"num_patches", "num_positions"}
    # The rule's premise, checked against keras-hub itself: the full config is refused,
    # the config without those keys rebuilds the layer.
    config = patching.get_config()
    with pytest.raises(TypeError):
        type(patching).from_config(config)
    for key in ("num_patches", "num_positions"):
        config.pop(key)
    assert type(patching).from_config(config).get_config() == patching.get_config()
    bert = hub_presets.bert()
    assert all(not rejected_config_keys(layer) for layer in bert.layers)
    assert not rejected_config_keys(keras.layers.Dense(3, name="d"))
