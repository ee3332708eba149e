"""Picker, loading, error screen, the offline fallback, resizing, NO_COLOR, big models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions
from kfreeze_tui.screens.error import ErrorScreen
from kfreeze_tui.screens.explorer import ExplorerScreen
from kfreeze_tui.screens.picker import PickerScreen, find_model_files


async def test_picker_filters_and_opens(tmp_path: Path, small_model_file: Path) -> None:
    target = tmp_path / "models" / "mine.keras"
    target.parent.mkdir()
    target.write_bytes(small_model_file.read_bytes())
    app = make_app(options=LoadOptions(weights="none"), root=tmp_path)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        picker = app.screen
        await wait_for(pilot, lambda: any(c.kind == "file" for c in picker.choices))
        text = screen_text(pilot)
        assert "models/mine.keras" in text
        row = next(line for line in text.splitlines() if "ConvNeXtBase" in line)
        assert "224x224x3" in row and "259" in row and "87,566,464" in row  # known counts
        for char in "efficientnetv2":
            await pilot.press(char)
        assert {c.source for c in picker.shown} == {
            f"EfficientNetV2{s}" for s in ("B0", "B1", "B2", "B3", "S", "M", "L")
        }
        await pilot.press("escape")
        for char in "mine":
            await pilot.press(char)
        assert [c.source for c in picker.shown] == ["models/mine.keras"]
        await pilot.press("enter")
        explorer = await wait_for_explorer(pilot)
        assert explorer.session.info.name == "small_cnn"


async def test_picker_opens_an_architecture(tmp_path: Path) -> None:
    app = make_app(options=LoadOptions(weights="none"), root=tmp_path)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        for char in "mobilenetv3small":
            await pilot.press(char)
        await pilot.press("enter")
        explorer = await wait_for_explorer(pilot)
        assert explorer.session.info.name == "MobileNetV3Small"
        assert "RANDOM WEIGHTS" in screen_text(pilot)


def test_find_model_files_skips_weights_hidden_and_venvs(tmp_path: Path) -> None:
    for relative in (
        "a.keras",
        "b.h5",
        "c.weights.h5",
        ".hidden/d.keras",
        "venv/e.keras",
        "x/y/f.keras",
        "notes.txt",
    ):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = {p.relative_to(tmp_path).as_posix() for p in find_model_files(tmp_path)}
    assert found == {"a.keras", "b.h5", "x/y/f.keras"}


async def test_load_failure_shows_error_screen_and_goes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app("missing.keras", root=tmp_path)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        text = screen_text(pilot)
        assert "missing.keras does not exist" in text
        assert "Check the path" in text
        assert "Traceback" not in text
        await pilot.press("r")  # not offered for a missing file: nothing happens
        assert isinstance(app.screen, ErrorScreen)
        await pilot.press("l")
        assert app.screen.query_one("#error-log").display
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))


async def test_offline_download_offers_random_weights(
    keras: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty Keras cache, so the imagenet weights must be downloaded (no network here).
    from keras.src.backend import config

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    app = make_app("mobilenetv3small", LoadOptions(weights="imagenet"), root=tmp_path)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        text = screen_text(pilot)
        assert "could not download the imagenet weights for MobileNetV3Small" in text
        assert "random weights" in text
        await pilot.press("r")
        explorer = await wait_for_explorer(pilot)
        assert explorer.session.random_weights
        assert "RANDOM WEIGHTS" in screen_text(pilot)


async def test_resize_to_80x24_keeps_the_essentials(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=(140, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert explorer.query_one("#side-pane").display
        for _ in range(5):
            await pilot.press("right_square_bracket")
        await pilot.press("f")
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert explorer.has_class("-narrow")
        text = screen_text(pilot)
        lines = text.splitlines()
        assert len(lines) == 24 and max(len(line) for line in lines) <= 80
        # The cursor row, the counts and the boundary stay on screen.
        assert "conv5_block1_1_conv" in text
        assert "trainable 14,953,472" in text and "Boundary 143" in text
        assert any("143" in line and "(None, 7, 7, 512)" in line for line in lines)
        await pilot.press("j", "k")  # still responsive
        await pilot.resize_terminal(140, 40)
        await pilot.pause(0.2)
        assert not explorer.has_class("-narrow")


async def test_no_color_keeps_frozen_rows_distinct(
    resnet50: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(loaded=resnet50)
    assert app.no_color
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        for _ in range(5):
            await pilot.press("right_square_bracket")
        await pilot.press("f", "k", "k")
        lines = screen_text(pilot).splitlines()
        # Without colour the state is still spelled out on every row.
        assert any("conv4_block6_3_conv" in line and "frozen" in line for line in lines)
        assert any("143" in line and "train" in line for line in lines)
        del explorer


@pytest.fixture(scope="module")
def deep_model(keras: Any) -> LoadedModel:
    """A user model of 3,000 layers: 1,500 Dense + ReLU pairs."""
    inputs = keras.Input((8,), name="x")
    x = inputs
    for i in range(1500):
        x = keras.layers.Dense(8, name=f"block{i}_dense")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    model = keras.Model(inputs, x, name="deep")
    return LoadedModel(model=model, source="deep", description="deep: 3,001 layers")


async def test_3000_layer_model(deep_model: LoadedModel) -> None:
    app = make_app(loaded=deep_model)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        assert len(explorer.session.info.layers) == 3001
        await pilot.press("G")
        assert table.current_layer.name == "block1499_relu"
        await pilot.press("f")
        assert explorer.plan.boundary == (3000,)
        await pilot.press("pageup", "pageup", "right_curly_bracket")
        assert "trainable 0 ||" in screen_text(pilot)  # only a ReLU is after the boundary


def test_an_unexpected_error_is_one_sentence(
    small_loaded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual import on

    from kfreeze_tui.app import KFreezeApp, run_app

    monkeypatch.delenv("KFREEZE_DEBUG", raising=False)

    class Crashing(KFreezeApp):
        @on(KFreezeApp.ModelReady)
        def _crash(self) -> None:
            raise RuntimeError("boom")

    app = Crashing(loaded=small_loaded)
    assert run_app(app, headless=True) == 1
    assert app.crash_log is not None
    trace = app.crash_log.read_text()
    assert "Traceback" in trace and "RuntimeError: boom" in trace
    printed = " ".join(capsys.readouterr().err.split())
    assert "kfreeze: error: unexpected RuntimeError: boom (this is a bug in kfreeze" in printed
    assert str(app.crash_log) in printed
    assert "Traceback" not in printed and "locals" not in printed
    app.crash_log.unlink()


async def test_reopen_from_the_cache_builds_the_model_only_when_needed(
    keras: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.session import open_session

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    open_session("vgg16", LoadOptions(weights="none"))  # the first open fills the cache
    app = make_app("vgg16", LoadOptions(weights="none"))
    async with app.run_test(size=(120, 36)) as pilot:
        explorer = await wait_for_explorer(pilot)
        session = explorer.session
        assert session.from_cache and not session.model_loaded
        assert "block5_conv1" in screen_text(pilot) or "block1_conv1" in screen_text(pilot)
        await pilot.press("G", "enter")  # block5_pool; the detail asks Keras for the config
        await wait_for(pilot, lambda: '"pool_size"' in screen_text(pilot), timeout=120)
        assert session.model_loaded


async def test_user_text_is_not_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app("[red]x[/red].keras", root=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        text = screen_text(pilot)
        assert "Cannot open [red]x[/red].keras" in text
        assert "[red]x[/red].keras does not exist" in text


async def test_a_stale_cached_table_is_refreshed_and_the_model_reopened(
    small_model_file: Path, resnet50_info: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kfreeze_tui.core.model import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = str(small_model_file)
    cache.write(cache.key_for(source, LoadOptions()), resnet50_info)  # not this file's table
    app = make_app(source)
    async with app.run_test(size=(120, 36)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert explorer.session.from_cache and len(explorer.session.info.layers) == 175
        await pilot.press("G", "enter")  # the detail needs the model: it loads, and differs
        # The failed worker is reported (one sentence), and the model is opened again.
        await wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, ExplorerScreen) and len(app.screen.session.info.layers) == 11
            ),
            timeout=120,
        )
        assert "cached layer table was out of date: refreshed and reopened" in screen_text(pilot)


async def test_the_loading_view_shows_how_far_a_long_load_has_got(
    probe_layer: Any, probe_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from kfreeze_tui.screens.loading import LoadingScreen

    monkeypatch.setenv("KFREEZE_PROGRESS_DELAY", "0")
    reached, release = threading.Event(), threading.Event()

    def hold(stage: str) -> None:  # the load stops at the probe until the test has looked
        if stage == "layers":
            reached.set()
            release.wait(60)

    monkeypatch.setattr(probe_layer, "during", staticmethod(hold))
    app = make_app(str(probe_model_file), LoadOptions(), use_cache=False)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, reached.is_set)
            screen = app.screen
            assert isinstance(screen, LoadingScreen)
            screen.show_progress()  # what the view's timer does every quarter second
            await pilot.pause()
            lines = screen_text(pilot).splitlines()
            row = next(i for i, line in enumerate(lines) if "Loading probe.keras" in line)
            assert re.search(r"3 of 5 layers, \d+ s", lines[row + 1]), lines[row : row + 2]
            release.set()
            explorer = await wait_for_explorer(pilot)
            assert explorer.session.info.name == "probed"
    finally:
        release.set()
