"""Without keras-hub, a source written as a keras-hub preset (``bert_tiny_en_uncased``, a
``kaggle://`` or ``hf://`` handle) gets one sentence naming the extra, not the sentence for
an unknown name. Runs with or without keras-hub installed: it is hidden from the import
system, as an environment without it sees it."""

from __future__ import annotations

from typing import Any

import hub_presets
import pytest

from kfreeze_tui.core.errors import LoadError
from kfreeze_tui.core.model import hub
from kfreeze_tui.core.model.loading import LoadOptions, load

RANDOM = LoadOptions(weights="none")


@pytest.fixture
def without_keras_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    hub_presets.hide_keras_hub(monkeypatch)
    assert not hub.installed()


@pytest.mark.parametrize(
    "source",
    [
        "bert_tiny_en_uncased",
        "llama3.2_1b",
        "esm2_t6_8M",
        "kaggle://keras/bert/keras/bert_tiny_en_uncased/3",
        "kaggle://keras/bert/keras/bert_tiny_en_uncased",
        "hf://keras/bert_tiny_en_uncased",
    ],
)
def test_a_preset_name_names_the_extra(source: str, without_keras_hub: None) -> None:
    with pytest.raises(LoadError) as caught:
        load(source, RANDOM)
    assert caught.value.kind == "hub-missing"
    assert "looks like a keras-hub preset, and keras-hub is not installed" in (
        caught.value.sentence
    )
    assert "pip install 'kfreeze[hub]'" in caught.value.sentence
    assert "neither" not in caught.value.sentence


def test_a_typo_of_an_architecture_keeps_its_suggestions(without_keras_hub: None) -> None:
    with pytest.raises(LoadError) as caught:
        load("resnet_5", RANDOM)  # written as a preset name: both readings are offered
    assert caught.value.kind == "hub-missing"
    assert "did you mean ResNet50" in caught.value.sentence
    with pytest.raises(LoadError) as caught:
        load("resnet5", RANDOM)  # not written as one: the sentence for an unknown name
    assert caught.value.kind == "unknown"
    assert "keras-hub" not in caught.value.sentence
    with pytest.raises(LoadError) as caught:
        load("./bert_tiny_en_uncased", RANDOM)  # a path: missing, whatever its name
    assert caught.value.kind == "missing"


def test_the_command_line_says_it_in_one_line(run_cli: Any, without_keras_hub: None) -> None:
    result = run_cli("layers", "bert_tiny_en_uncased")
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "kfreeze: error: 'bert_tiny_en_uncased' looks like a keras-hub preset, and keras-hub "
        "is not installed: install it with pip install 'kfreeze[hub]'."
    ]
