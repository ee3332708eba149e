"""``kfreeze layers`` on keras-hub sources: a preset folder, a preset name in the local cache
(twice: the second run reads the layer-table cache), and the sentences for a name that is not
cached and for keras-hub missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")

import hub_presets


@pytest.fixture(scope="module")
def bert_preset(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("hub_cli") / "bert_preset"
    backbone = hub_presets.bert()
    backbone.save_to_preset(str(folder))
    return folder, backbone.count_params()


def test_layers_of_a_preset_folder(run_cli: Any, bert_preset: tuple[Path, int]) -> None:
    import keras_hub

    folder, params = bert_preset
    result = run_cli("layers", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["total_params"] == params
    expected = keras_hub.models.Backbone.from_preset(str(folder), load_weights=False)
    top = [row["name"] for row in document["layers"] if len(row["path"]) == 1]
    assert top == [layer.name for layer in expected.layers]
    table = run_cli("layers", str(folder), "--weights", "none")
    assert table.returncode == 0, table.stderr
    assert "transformer_layer_1" in table.stdout and f"Total params: {params:,}" in table.stdout


def test_layers_of_a_cached_preset_name(
    run_cli: Any, bert_preset: tuple[Path, int], tmp_path: Path
) -> None:
    folder, params = bert_preset
    env = {"KAGGLEHUB_CACHE": str(tmp_path / "kagglehub")}
    missing = run_cli("layers", hub_presets.BUILTIN, env=env)
    assert missing.returncode == 2
    assert missing.stdout == ""
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not in the local cache (looked in" in lines[0]
    assert str(tmp_path / "kagglehub") in lines[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAGGLEHUB_CACHE", env["KAGGLEHUB_CACHE"])
        hub_presets.put_in_kaggle_cache(folder, hub_presets.builtin_handle())
    first = run_cli("layers", hub_presets.BUILTIN, "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["total_params"] == params
    again = run_cli("layers", hub_presets.BUILTIN, "--json", env=env)  # from the table cache
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(first.stdout)


def test_without_keras_hub(
    run_cli: Any, bert_preset: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_presets.hide_keras_hub(monkeypatch)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # a table cached with keras-hub aside
    result = run_cli("layers", str(bert_preset[0]), "--weights", "none", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "keras-hub is not installed" in lines[0] and "pip install 'kfreeze[hub]'" in lines[0]


def test_models_lists_the_cached_presets(
    run_cli: Any, bert_preset: tuple[Path, int], tmp_path: Path
) -> None:
    env = {
        "KAGGLEHUB_CACHE": str(tmp_path / "kagglehub"),
        "HF_HUB_CACHE": str(tmp_path / "huggingface"),
        "COLUMNS": "200",
    }
    # Nothing cached: the architectures alone, as before.
    empty = run_cli("models", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "keras-hub" not in empty.stdout
    entries = json.loads(run_cli("models", "--json", env=env).stdout)
    assert {entry["kind"] for entry in entries} == {"architecture"}
    handle = hub_presets.builtin_handle()  # keras-hub's own table: where from_preset looks
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        hub_presets.put_in_kaggle_cache(bert_preset[0], handle)
        hub_presets.put_in_hf_cache(bert_preset[0], "someone/tiny-bert")
    table = run_cli("models", env=env)
    assert table.returncode == 0, table.stderr
    assert "2 keras-hub presets in the local cache" in table.stdout
    row = next(line for line in table.stdout.splitlines() if hub_presets.BUILTIN in line)
    assert handle in row
    assert "hf://someone/tiny-bert" in table.stdout
    assert "ResNet50" in table.stdout  # the architectures stay
    entries = json.loads(run_cli("models", "--json", env=env).stdout)
    cached = [entry for entry in entries if entry["kind"] == "keras-hub preset (cached)"]
    assert [(entry["name"], entry["handle"]) for entry in cached] == [
        (hub_presets.BUILTIN, handle),
        ("hf://someone/tiny-bert", "hf://someone/tiny-bert"),
    ]
    assert cached[0]["family"] == "bert"
    assert all(entry["kind"] == "architecture" for entry in entries[: -len(cached)])
    # What it lists opens: `kfreeze layers HANDLE`.
    opened = run_cli("layers", cached[0]["handle"], "--json", env=env)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["total_params"] == bert_preset[1]
