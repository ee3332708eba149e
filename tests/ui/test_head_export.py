"""The head pane and the export dialog, driven with the keyboard in the real app."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, type_into, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.screens.export import ExportRunScreen, ExportScreen


async def test_head_pane_edits_and_validates(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=(130, 44)) as pilot:
        explorer = await wait_for_explorer(pilot)
        text = screen_text(pilot)
        assert "New head on conv5_block3_out" in text and "(default)" in text
        assert "GlobalAveragePooling2D" in text
        await type_into(pilot, "#head-classes", "5")
        assert explorer.head.classes == 5
        assert "Dense (None, 5) 10,245" in screen_text(pilot)
        await type_into(pilot, "#head-hidden", "256")
        assert explorer.head.hidden[0].units == 256
        await type_into(pilot, "#head-classes", "1")
        assert "Softmax over 1 class" in screen_text(pilot)
        # Cycle the output activation to sigmoid: the problem goes away.
        explorer.query_one("#head-activation").focus()
        await pilot.press("right")
        assert explorer.head.activation == "sigmoid"
        assert "Softmax over 1 class" not in screen_text(pilot)
        await type_into(pilot, "#head-dropout", "abc")
        assert "Dropout must be a number" in screen_text(pilot)
        await pilot.press("e")  # typed into the field, not an export
        assert not isinstance(app.screen, ExportScreen)
        await pilot.press("escape")  # back to the tree
        assert app.focused is explorer.table
        await pilot.press("e")
        assert not isinstance(app.screen, ExportScreen)  # refused: the head has a problem


async def test_c_attaches_the_head_to_the_cursor_layer(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=(130, 44)) as pilot:
        explorer = await wait_for_explorer(pilot)
        for _ in range(4):
            await pilot.press("right_square_bracket")  # stage 4 start, 14x14
        await pilot.press("k", "k", "k")  # the last layer of stage 3
        layer = explorer.table.current_layer
        await pilot.press("c")
        assert explorer.head.feature_layer == layer.name
        assert f"New head on {layer.name}" in screen_text(pilot)


async def test_the_pane_says_which_outputs_stay_and_changes_them(keras: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadedModel

    x = keras.Input((16,))
    trunk = keras.layers.Dense(32, "relu", name="trunk")(x)
    cls = keras.layers.Dense(3, "softmax", name="cls")(keras.layers.Dropout(0.1)(trunk))
    reg = keras.layers.Dense(1, name="reg")(trunk)
    model = keras.Model(x, [cls, reg], name="two_outputs")
    app = make_app(loaded=LoadedModel(model, "two_outputs", "two outputs"))
    async with app.run_test(size=(130, 44)) as pilot:
        explorer = await wait_for_explorer(pilot)
        text = screen_text(pilot)
        assert "New head on trunk (None, 32) (default)" in text
        assert "replaces dropout" in text and "drops outputs: reg" in text
        await pilot.press("tab")  # the first field of the pane: the first output's
        assert app.focused is explorer.query_one("#head-output-0")
        await pilot.press("tab", "right")  # reg: drop -> keep
        assert explorer.head.keep == ("reg",)
        text = screen_text(pilot)
        assert "keeps: reg" in text and "drops outputs" not in text
        await pilot.press("right")  # reg: keep -> head; cls is dropped
        assert (explorer.head.replace, explorer.head.keep) == ("reg", ())
        assert "replaces reg" in screen_text(pilot)
        assert "drops outputs: cls" in screen_text(pilot)
        # The keys that change a field are in the help, with the pane's other keys.
        await pilot.press("escape", "question_mark")
        assert "on an output of the model: head, keep, drop" in screen_text(pilot)


async def test_export_dialog_writes_a_verified_model(
    small_loaded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keras: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("j", "j", "j", "j", "f")  # boundary at block1_conv
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        assert "small_cnn_finetune.keras" in screen_text(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
        run = app.screen
        await wait_for(pilot, lambda: run.done, timeout=120)
        text = screen_text(pilot)
        assert "Verified by loading it back" in text, text
        assert "small_cnn_finetune.toml" in text and "small_cnn_finetune.py" in text
        await pilot.press("enter")
        assert app.screen is explorer and not explorer.dirty
        # Quitting after an export does not ask.
        expected = explorer.session.view.totals(explorer.plan).trainable
    model = keras.saving.load_model(tmp_path / "small_cnn_finetune.keras")
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    head = 32 * 10 + 10  # the classifier top is replaced by a Dense(10) on its pooled input
    assert trainable == expected - (32 * 5 + 5) + head


async def test_export_asks_before_replacing(
    small_loaded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "small_cnn_finetune.keras"
    existing.write_bytes(b"keep me")
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_explorer(pilot)
        await pilot.press("e")
        assert "exists: will ask before replacing" in screen_text(pilot)
        await pilot.press("enter")
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("n")
        assert isinstance(app.screen, ExportScreen)
        assert existing.read_bytes() == b"keep me"
        await pilot.press("enter", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
        run = app.screen
        await wait_for(pilot, lambda: run.done, timeout=120)
        assert "Verified" in screen_text(pilot)
    assert existing.read_bytes() != b"keep me"


async def test_narrow_terminal_shows_the_head_pane_on_p(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=(80, 24)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert not explorer.query_one("#side-pane").display
        await pilot.press("p")
        assert explorer.query_one("#side-pane").display
        assert "New head on" in screen_text(pilot)
        await pilot.press("escape", "p")
        assert explorer.table.display and app.focused is explorer.table
