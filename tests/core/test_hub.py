"""keras-hub models open offline: preset folders, ``.keras`` files of keras-hub models and
preset names already in the local cache; what is not cached, or keras-hub missing, is one
sentence. The oracle is keras-hub itself: kfreeze opens what ``Backbone.from_preset`` opens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")

import hub_presets

from kfreeze_tui.core.errors import LoadError
from kfreeze_tui.core.model import cache, hub
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.model.source import SourceKind, resolve

PRESET_WEIGHTS = LoadOptions()  # the default: the preset's own weights
RANDOM = LoadOptions(weights="none")


@pytest.fixture(scope="module")
def saved(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three tiny backbones, each saved as a preset folder; BERT also as a ``.keras`` file."""
    folder = tmp_path_factory.mktemp("hub")
    out: dict[str, Any] = {}
    for name, build in (
        ("bert", hub_presets.bert),
        ("gemma", hub_presets.gemma),
        ("vit", hub_presets.vit),
    ):
        backbone = build()
        backbone.save_to_preset(str(folder / name))
        out[name] = backbone
    out["bert"].save(str(folder / "bert.keras"))
    out["folder"] = folder
    return out


@pytest.fixture
def kaggle_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty kagglehub cache of the test's own (and Hugging Face's)."""
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "huggingface"))
    return tmp_path / "kagglehub"


def _weights(model: Any) -> list[Any]:
    return [w.numpy() for w in model.weights]


def _same_weights(a: Any, b: Any) -> bool:
    import numpy as np

    return len(a.weights) == len(b.weights) and all(
        np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True)
    )


def test_the_rules(saved: dict[str, Any], tmp_path: Path, kaggle_cache: Path) -> None:
    preset = saved["folder"] / "bert"
    assert resolve(str(preset)).kind is SourceKind.PRESET_DIR
    # A folder with a config.json keras-hub cannot read stays a plain folder.
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"name": "not a preset"}))
    assert resolve(str(other)).kind is SourceKind.FOLDER
    # Nor does an unzipped .keras archive of a plain Keras model (its config has a
    # registered_name too, which keras-hub alone would take for a preset).
    (other / "config.json").write_text(
        json.dumps({"module": "keras", "class_name": "Functional", "registered_name": None})
    )
    assert resolve(str(other)).kind is SourceKind.FOLDER
    assert resolve("kaggle://keras/bert/keras/bert_tiny_en_uncased/3").kind is (
        SourceKind.PRESET_NAME
    )
    assert resolve("hf://someone/model").kind is SourceKind.PRESET_NAME
    # A bare name is a preset name only when it is in the cache.
    assert resolve(hub_presets.BUILTIN).kind is SourceKind.UNKNOWN
    hub_presets.put_in_kaggle_cache(preset, hub_presets.builtin_handle())
    assert resolve(hub_presets.BUILTIN).kind is SourceKind.PRESET_NAME
    assert resolve("resnet50").kind is SourceKind.ARCHITECTURE


@pytest.mark.parametrize("name", ["bert", "gemma", "vit"])
def test_a_preset_folder_opens_as_keras_hub_opens_it(saved: dict[str, Any], name: str) -> None:
    import keras_hub

    folder = saved["folder"] / name
    expected = keras_hub.models.Backbone.from_preset(str(folder))
    loaded = load(str(folder), PRESET_WEIGHTS)
    assert type(loaded.model) is type(expected)
    assert loaded.model.count_params() == saved[name].count_params()
    assert _same_weights(loaded.model, saved[name])
    assert not loaded.random_weights
    info = walk(loaded.model, loaded.source, loaded.description, loaded.random_weights)
    assert info.total_params == saved[name].count_params()
    assert [row.name for row in info.children(())] == [layer.name for layer in expected.layers]
    assert "keras-hub preset" in loaded.description


def test_weights_none_skips_the_preset_weights(saved: dict[str, Any]) -> None:
    loaded = load(str(saved["folder"] / "bert"), RANDOM)
    assert loaded.random_weights and "random weights" in loaded.description
    assert loaded.model.count_params() == saved["bert"].count_params()
    assert not _same_weights(loaded.model, saved["bert"])


def test_a_weights_file_is_refused_for_a_preset(saved: dict[str, Any]) -> None:
    with pytest.raises(LoadError, match="cannot be given to the keras-hub preset") as caught:
        load(str(saved["folder"] / "bert"), LoadOptions(weights="w.weights.h5"))
    assert caught.value.kind == "usage"


def test_a_task_preset_opens_its_backbone(
    keras: Any, saved: dict[str, Any], tmp_path: Path
) -> None:
    import keras_hub

    task = keras_hub.models.BertTextClassifier(
        backbone=hub_presets.bert(), num_classes=3, preprocessor=None
    )
    task.save_to_preset(str(tmp_path / "task"))
    assert (tmp_path / "task" / "task.json").is_file()
    loaded = load(str(tmp_path / "task"), PRESET_WEIGHTS)
    assert isinstance(loaded.model, keras_hub.models.BertBackbone)
    assert _same_weights(loaded.model, task.backbone)
    assert "backbone of a task preset" in loaded.description


def test_a_keras_file_of_a_keras_hub_model(saved: dict[str, Any]) -> None:
    import keras
    import keras_hub  # noqa: F401  (bare Keras needs it imported to read the file)
    import numpy as np

    path = saved["folder"] / "bert.keras"
    expected = keras.saving.load_model(str(path), compile=False)
    loaded = load(str(path), RANDOM)
    assert type(loaded.model) is type(expected)
    assert loaded.model.count_params() == expected.count_params()
    assert _same_weights(loaded.model, expected)
    inputs = {
        "token_ids": np.array([[1, 2, 3, 4]]),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    got, want = loaded.model(inputs), expected(inputs)
    assert np.allclose(got["pooled_output"], want["pooled_output"])


def test_a_cached_builtin_name_opens_what_keras_hub_opens_offline(
    saved: dict[str, Any], kaggle_cache: Path
) -> None:
    import keras_hub

    handle = hub_presets.builtin_handle()
    cached = hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", handle)
    assert kaggle_cache in cached.parents
    expected = keras_hub.models.Backbone.from_preset(hub_presets.BUILTIN)  # the oracle
    loaded = load(hub_presets.BUILTIN, PRESET_WEIGHTS)
    assert loaded.model.count_params() == expected.count_params()
    assert _same_weights(loaded.model, expected)
    assert handle in loaded.description
    # The full handle, with or without its version, opens the same folder.
    assert hub.locate(handle).folder == cached
    unversioned = handle.rsplit("/", 1)[0]
    located = hub.locate(unversioned)
    assert located.folder == cached
    assert located.note is not None and "the newest in the cache" in located.note


def test_what_is_not_cached_is_one_sentence(saved: dict[str, Any], kaggle_cache: Path) -> None:
    with pytest.raises(LoadError) as caught:
        load(hub_presets.BUILTIN, PRESET_WEIGHTS)
    assert caught.value.kind == "hub-not-cached"
    assert "is not in the local cache (looked in" in caught.value.sentence
    assert str(kaggle_cache) in caught.value.sentence
    with pytest.raises(LoadError) as caught:
        load("hf://someone/tiny-bert", PRESET_WEIGHTS)
    assert caught.value.kind == "hub-not-cached"
    assert "models--someone--tiny-bert" in caught.value.sentence
    # Another version in the cache: named in the hint.
    handle = hub_presets.builtin_handle()
    version = int(handle.rsplit("/", 1)[1])
    older = f"{handle.rsplit('/', 1)[0]}/{version - 1}"
    hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", older)
    with pytest.raises(LoadError) as caught:
        load(hub_presets.BUILTIN, PRESET_WEIGHTS)
    assert f"keras-hub's table names version {version}" in caught.value.sentence
    assert f"has version {version - 1}: open that as {older}" in caught.value.sentence
    # A plain typo is still unknown.
    with pytest.raises(LoadError) as caught:
        load("bert_tiny_en_uncasd", PRESET_WEIGHTS)
    assert caught.value.kind == "unknown"


def test_a_hugging_face_snapshot_in_the_cache(saved: dict[str, Any], kaggle_cache: Path) -> None:
    """The layout of the Hugging Face cache (refs/main naming the snapshot), as
    ``huggingface_hub.try_to_load_from_cache`` reads it: the oracle for where it looks."""
    huggingface_hub = pytest.importorskip("huggingface_hub")

    hub_presets.put_in_hf_cache(saved["folder"] / "bert", "someone/tiny-bert", "abc123")
    repo = Path(hub.hf_cache()) / "models--someone--tiny-bert"
    found = huggingface_hub.try_to_load_from_cache(
        "someone/tiny-bert", "config.json", cache_dir=str(hub.hf_cache())
    )
    assert found == str(repo / "snapshots" / "abc123" / "config.json")
    loaded = load("hf://someone/tiny-bert", PRESET_WEIGHTS)
    assert _same_weights(loaded.model, saved["bert"])


@pytest.fixture
def without_keras_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    hub_presets.hide_keras_hub(monkeypatch)


def test_without_keras_hub_the_extra_is_named(
    saved: dict[str, Any], without_keras_hub: None
) -> None:
    assert not hub.installed()
    for source in (saved["folder"] / "bert", saved["folder"] / "bert.keras"):
        with pytest.raises(LoadError) as caught:
            load(str(source), PRESET_WEIGHTS)
        assert caught.value.kind == "hub-missing"
        assert "keras-hub is not installed" in caught.value.sentence
        assert "pip install 'kfreeze[hub]'" in caught.value.sentence


def test_the_cache_key_of_a_preset_folder(saved: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "bert"
    shutil.copytree(saved["folder"] / "bert", folder)
    key = cache.key_for(str(folder), PRESET_WEIGHTS)
    assert key is not None and key["kind"] == "preset"
    assert key == cache.key_for(str(folder), PRESET_WEIGHTS)
    assert key != cache.key_for(str(folder), RANDOM)
    weights = folder / "model.weights.h5"
    weights.write_bytes(weights.read_bytes() + b"\0")  # any file of the folder changes it
    assert key != cache.key_for(str(folder), PRESET_WEIGHTS)


def test_the_cache_key_of_a_cached_name(saved: dict[str, Any], kaggle_cache: Path) -> None:
    assert cache.key_for(hub_presets.BUILTIN, PRESET_WEIGHTS) is None  # unknown: not cached
    hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", hub_presets.builtin_handle())
    key = cache.key_for(hub_presets.BUILTIN, PRESET_WEIGHTS)
    assert key is not None and key["name"] == hub_presets.BUILTIN
    # Another version arriving in the cache may change what the name opens: a new key.
    older = hub_presets.builtin_handle().rsplit("/", 1)[0] + "/1"
    hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", older)
    assert key != cache.key_for(hub_presets.BUILTIN, PRESET_WEIGHTS)


def test_a_version_kagglehub_downloaded_whole(saved: dict[str, Any], kaggle_cache: Path) -> None:
    """``kagglehub.model_download(handle)`` marks the version complete, not each file: its
    folder opens too."""
    handle = hub_presets.builtin_handle()
    cached = hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", handle, whole=True)
    assert not (cached.parent / ".complete").exists()  # no file-by-file markers
    assert resolve(hub_presets.BUILTIN).kind is SourceKind.PRESET_NAME
    loaded = load(hub_presets.BUILTIN, PRESET_WEIGHTS)
    assert _same_weights(loaded.model, saved["bert"])
    # A folder without any marker is a download that did not finish: not cached.
    (cached.parent / f"{cached.name}.complete").unlink()
    with pytest.raises(LoadError, match="is not in the local cache"):
        hub.locate(handle)


def test_the_cached_presets_are_listed_without_importing(
    saved: dict[str, Any], kaggle_cache: Path, tmp_path: Path
) -> None:
    """What ``kfreeze models`` and the picker list: every preset in both caches, each with a
    handle that opens its folder; what is not a complete keras-hub preset is left out."""
    assert hub.cached_presets() == []  # empty caches: nothing
    handle = hub_presets.builtin_handle()  # keras-hub's own table: the outside reference
    older = f"{handle.rsplit('/', 1)[0]}/{int(handle.rsplit('/', 1)[1]) - 1}"
    hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", older)
    newest = hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", handle, whole=True)
    mine = hub_presets.put_in_kaggle_cache(saved["folder"] / "vit", "kaggle://me/vit/keras/tiny/1")
    snapshot = hub_presets.put_in_hf_cache(saved["folder"] / "gemma", "someone/tiny-gemma")
    # Left out: a download that did not finish (no marker), a Transformers model in the HF
    # cache, and a Kaggle folder that is not a preset.
    unfinished = hub_presets.put_in_kaggle_cache(saved["folder"] / "bert", "keras/x/keras/y/1")
    (unfinished.parent / ".complete").rename(unfinished.parent / "gone")
    hf_other = tmp_path / "transformers"
    hf_other.mkdir()
    (hf_other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    hub_presets.put_in_hf_cache(hf_other, "someone/plain-bert")
    not_preset = tmp_path / "data"
    not_preset.mkdir()
    (not_preset / "config.json").write_text("{}")
    hub_presets.put_in_kaggle_cache(not_preset, "me/data/other/v/1")

    listed = hub.cached_presets()
    assert [(c.name, c.handle, c.folder) for c in listed] == [
        (hub_presets.BUILTIN, handle, newest),
        ("hf://someone/tiny-gemma", "hf://someone/tiny-gemma", snapshot),
        ("me/vit/keras/tiny", "kaggle://me/vit/keras/tiny/1", mine),
    ]
    assert listed[0].family == "bert" and listed[1].family is None
    for preset in listed:  # each handle opens the folder listed
        assert hub.locate(preset.handle).folder == preset.folder
