"""The script of a keras-hub source loads what kfreeze opened: a preset folder and a cached
preset name through ``keras_hub.models.Backbone.from_preset``, a ``.keras`` file of a
keras-hub model with ``import keras_hub`` before ``keras.saving.load_model``. Each script is
run, and its ``base`` compared with the model kfreeze loaded (parameters and weights)."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")

import hub_presets
import numpy as np

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.train.script import python_script

HEAD = HeadSpec(feature_layer="pooled_dense", pooling="none", classes=2)


@pytest.fixture(scope="module")
def bert_files(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub_script")
    backbone = hub_presets.bert()
    backbone.save_to_preset(str(folder / "presets" / "bert"))
    backbone.save(str(folder / "bert.keras"))
    return folder


def _run_script(source: str, load_options: LoadOptions, folder: Path) -> tuple[str, Any, Any]:
    """The script kfreeze writes for ``source`` into ``folder``, run; with the model kfreeze
    loaded from the same source."""
    loaded = load(source, load_options)
    view = PlanView(walk(loaded.model, loaded.source, loaded.description))
    plan = FreezePlan(boundary=view.info.find("transformer_layer_1").path)
    text = python_script(source, load_options, view, plan, HEAD, CompileSpec(), script_dir=folder)
    ast.parse(text)
    script = folder / "ft.py"
    script.write_text(text)
    namespace = runpy.run_path(str(script))
    return text, namespace, loaded.model


def _same_weights(a: Any, b: Any) -> bool:
    return len(a.weights) == len(b.weights) and all(
        np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights, strict=True)
    )


def test_the_script_of_a_preset_folder(
    bert_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bert_files)
    text, namespace, model = _run_script("presets/bert", LoadOptions(), bert_files)
    assert "import keras\nimport keras_hub" in text
    assert 'PRESET = HERE / "presets/bert"' in text
    assert "base = keras_hub.models.Backbone.from_preset(str(PRESET), load_weights=True)" in text
    assert namespace["base"].count_params() == model.count_params()
    assert _same_weights(namespace["base"], model)
    assert namespace["model"].get_layer("transformer_layer_0").trainable is False
    # --weights none: the script does not load them either.
    text, namespace, _model = _run_script("presets/bert", LoadOptions(weights="none"), bert_files)
    assert "load_weights=False" in text


def test_the_script_of_a_cached_preset_name(
    bert_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    hub_presets.put_in_kaggle_cache(bert_files / "presets" / "bert", hub_presets.builtin_handle())
    text, namespace, model = _run_script(hub_presets.BUILTIN, LoadOptions(), tmp_path)
    assert (
        f'base = keras_hub.models.Backbone.from_preset("{hub_presets.BUILTIN}", load_weights=True)'
    ) in text
    assert "PRESET" not in text and "HERE" not in text
    assert _same_weights(namespace["base"], model)


def test_the_script_of_a_keras_hub_keras_file(
    bert_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bert_files)
    text, namespace, model = _run_script("bert.keras", LoadOptions(), bert_files)
    assert "import keras\nimport keras_hub" in text
    assert "base = keras.saving.load_model(MODEL, compile=False)" in text
    assert text.index("import keras_hub") < text.index("keras.saving.load_model")
    assert _same_weights(namespace["base"], model)


def test_a_plain_keras_file_imports_no_keras_hub(
    small_model_file: Path, small_model: Any, tmp_path: Path
) -> None:
    from kfreeze_tui.core.train.script import needs_keras_hub

    assert not needs_keras_hub(str(small_model_file))
    assert not needs_keras_hub("resnet50")
