"""How far a load has got: read from Keras's own stack while it loads, at known points.

A probe layer (tests/conftest.py) runs a function while Keras makes it from its config,
calls it on its input and gives it its weights; the function asks, from inside the load, what
kfreeze would show at that moment. The probe is the fourth of five layers, so the answers are
known without timing anything.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.model import load_progress
from kfreeze_tui.core.model.loading import load
from kfreeze_tui.core.runtime.keras_private import load_position


def _record(probe_layer: Any, monkeypatch: pytest.MonkeyPatch, ask: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        probe_layer, "during", staticmethod(lambda stage: seen.setdefault(stage, ask()))
    )
    return seen


def test_keras_still_loads_where_the_position_is_read(
    keras: Any, probe_layer: Any, probe_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record(probe_layer, monkeypatch, lambda: load_position(threading.get_ident()))
    keras.saving.load_model(probe_model_file)
    # Three layers before the probe: made, connected, given weights.
    assert seen == {
        "layers": ("layers", 3, 5),
        "connecting": ("connecting", 3, 5),
        "weights": ("weights", 3, 5),
    }, "Keras's functional_from_config or _load_container_state changed"
    assert load_position(threading.get_ident()) is None  # not loading


def test_a_sequential_and_a_nested_model_count_the_outer_layers(
    keras: Any, probe_layer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequential = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4), probe_layer(), keras.layers.Dense(2)]
    )
    sequential.save(tmp_path / "seq.keras")
    inputs = keras.Input((4,))
    nested = keras.Model(inputs, keras.layers.Dense(1)(sequential(inputs)))
    nested.save(tmp_path / "nested.keras")
    seen = _record(probe_layer, monkeypatch, lambda: load_position(threading.get_ident()))
    keras.saving.load_model(tmp_path / "seq.keras")
    # Sequential's config lists its input layer: the probe is the third of four.
    assert seen["layers"] == ("layers", 2, 4), "Keras's Sequential.from_config changed"
    seen.clear()
    keras.saving.load_model(tmp_path / "nested.keras")
    # Inside the nested model, the outer model's count: its input is made, not the rest.
    assert seen["layers"] == ("layers", 1, 3)


def test_a_load_in_progress_says_what_it_is_and_ends(
    probe_layer: Any, probe_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record(probe_layer, monkeypatch, load_progress.current)
    ended: list[bool] = []
    remove = load_progress.on_load_end(lambda: ended.append(load_progress.current() is None))
    try:
        load(str(probe_model_file))
    finally:
        remove()
    layers = seen["layers"]
    assert (layers.verb, layers.name, layers.total) == ("Loading", "probe.keras", 5)
    assert layers.text().startswith("Loading probe.keras: 3 of 5 layers, ")
    assert seen["connecting"].detail().startswith("connecting 3 of 5 layers, ")
    assert seen["weights"].detail().startswith("reading weights, 3 of 5 layers, ")
    assert ended == [True]  # told once, when the load was over
    assert load_progress.current() is None


def test_the_total_alone_when_keras_is_elsewhere() -> None:
    status = load_progress.LoadStatus("Loading", "big.keras", 0.0, 12.7, total=3000)
    assert status.text() == "Loading big.keras: 3,000 layers, 12 s"
    assert load_progress.LoadStatus("Building", "VGG16", 0.0, 2.2).text() == "Building VGG16: 2 s"
    sequential = {"class_name": "Sequential", "config": {"layers": [{}, {}]}}
    assert load_progress.top_level_count(sequential) == 2
    assert load_progress.top_level_count({"config": [{}, {}, {}]}) == 3  # Keras 1
    assert load_progress.top_level_count({"class_name": "Odd"}) is None


def test_the_delay_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFREEZE_PROGRESS_DELAY", "0")
    assert load_progress.progress_delay() == 0
    for wrong in ("soon", "-1"):
        monkeypatch.setenv("KFREEZE_PROGRESS_DELAY", wrong)
        assert load_progress.progress_delay() == load_progress.DEFAULT_DELAY
        assert load_progress.progress_delay(in_place=False) == load_progress.PLAIN_DELAY
    monkeypatch.delenv("KFREEZE_PROGRESS_DELAY")
    # Into a pipe, a line stays in the log: only a long load is worth one.
    assert load_progress.progress_delay(in_place=False) > load_progress.progress_delay()
