"""Every key of the explorer, pressed on real models in the real app."""

from __future__ import annotations

import math
from typing import Any

from helpers import screen_text, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan
from kfreeze_tui.screens.detail import LayerDetailScreen
from kfreeze_tui.screens.help import HelpScreen

SIZE = (120, 40)


async def test_stage_jumps_and_boundary_on_resnet50(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        seen = []
        for _ in range(5):
            await pilot.press("right_square_bracket")
            seen.append(table.current_layer.index)
        assert seen == [2, 6, 39, 81, 143]
        await pilot.press("f")
        assert explorer.plan.boundary == (143,)
        text = screen_text(pilot)
        assert "trainable 14,953,472" in text and "frozen 8,634,240" in text
        assert "Boundary 143 conv5_block1_1_conv" in text
        assert "10 BatchNorm after it: kept frozen" in text
        assert "boundary at 143 conv5_block1_1_conv" in text  # the line in the tree
        await pilot.press("b")
        assert explorer.plan.bn_policy is BNPolicy.TRAINABLE
        text = screen_text(pilot)
        assert "trainable 14,976,000" in text and "frozen 8,611,712" in text
        assert "10 BatchNorm after it: trained" in text
        # Back through the stages.
        await pilot.press("left_square_bracket")
        assert table.current_layer.index == 81
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert table.current_layer.index == 6


async def test_block_jumps_and_cursor_keys(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        assert table.cursor == 0
        await pilot.press("right_curly_bracket")
        first_block = table.current_layer
        await pilot.press("right_curly_bracket")
        second_block = table.current_layer
        assert first_block.block != second_block.block
        assert second_block.index > first_block.index
        await pilot.press("left_curly_bracket")
        assert table.current_layer == first_block
        for key, delta in (("down", 1), ("j", 1), ("up", -1), ("k", -1)):
            before = table.cursor
            await pilot.press(key)
            assert table.cursor == before + delta, key
        await pilot.press("G")
        assert table.current_layer.name == "conv5_block3_out"
        await pilot.press("g")
        assert table.cursor == 0
        await pilot.press("end")
        last = table.cursor
        await pilot.press("home")
        assert table.cursor == 0 and last == table.row_count - 1
        await pilot.press("pagedown")
        page = table.cursor
        assert page > 10
        await pilot.press("pagedown")
        assert table.cursor == 2 * page
        await pilot.press("pageup")
        assert table.cursor == page


async def test_freeze_all_unfreeze_all_and_exceptions(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        view = explorer.session.view
        await pilot.press("F")
        assert explorer.plan.boundary is None
        assert "trainable 0 ||" in screen_text(pilot)
        assert "every layer frozen" in screen_text(pilot)
        await pilot.press("U")
        assert explorer.plan.boundary == (0,)
        assert view.totals(explorer.plan).trainable == view.totals(FreezePlan()).trainable
        # An exception: put the cursor on a conv before the boundary at 143, toggle it.
        for _ in range(5):
            await pilot.press("right_square_bracket")
        await pilot.press("f")
        await pilot.press("left_square_bracket")
        layer = explorer.table.current_layer
        assert layer.index == 81 and layer.class_name == "Conv2D"
        before = view.totals(explorer.plan).trainable
        await pilot.press("space")
        assert explorer.plan.exceptions == frozenset({(81,)})
        assert view.totals(explorer.plan).trainable == before + layer.trainable_size
        assert "1 exception(s)" in screen_text(pilot)
        await pilot.press("space")
        assert explorer.plan.exceptions == frozenset()
        # F and U clear the exceptions.
        await pilot.press("space", "F")
        assert explorer.plan.exceptions == frozenset()


async def test_filter_and_matches(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        await pilot.press("slash")
        for char in "conv5.*_bn$":
            await pilot.press(char)
        # 3 blocks x 3 BatchNorm + the shortcut's BatchNorm in block 1.
        assert table.match_count == 10
        await pilot.press("enter")
        assert app.focused is table
        names = []
        for _ in range(10):
            names.append(table.current_layer.name)
            await pilot.press("n")
        assert len(set(names)) == 10 and all(name.endswith("_bn") for name in names)
        assert table.current_layer.name == names[0]  # wrapped around
        await pilot.press("N")
        assert table.current_layer.name == names[-1]
        # A type matches too, and an invalid regex is flagged without filtering.
        await pilot.press("slash", *"[", "tab")
        assert explorer.query_one("#filter").has_class("-bad-regex")
        await pilot.press("escape")
        assert table.match_count is None and table.row_count > 175
        await pilot.press("slash", *"ZeroPadding2D", "enter")
        assert table.match_count == 2


async def test_enter_opens_detail_with_config(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=(120, 60)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert explorer.table.move_to_path((144,))
        await pilot.press("enter")
        assert isinstance(app.screen, LayerDetailScreen)
        await wait_for(pilot, lambda: '"epsilon"' in screen_text(pilot), timeout=20)
        text = screen_text(pilot)
        assert "conv5_block1_1_bn" in text and "BatchNormalization" in text
        assert "moving_mean" in text and "non-trainable (statistics)" in text
        assert "conv5_block1_1_conv" in text  # inbound
        assert "frozen: BatchNormalization policy" in text
        await pilot.press("escape")
        assert app.screen is explorer


async def test_copy_snippet_to_clipboard(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.table.move_to_path((143,))
        await pilot.press("f", "y")
        assert "for layer in base.layers[:143]:" in app.clipboard
        assert '"conv5_block1_1_conv"' in app.clipboard


async def test_help_lists_every_key(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_explorer(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(pilot)
        await pilot.press("pagedown")  # the list is longer than the screen
        text += screen_text(pilot)
        for label in (
            "Freeze before",
            "LoRA on/off",
            "Toggle layer",
            "BatchNorm",
            "Filter",
            "Copy code",
            "Freeze all",
            "Unfreeze all",
            "Next stage",
            "Previous block",
            "Next match",
            "]",
            "{",
            "PgDn",
            "Ctrl+P",
        ):
            assert label in text, label
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_runs_an_action(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        for char in "Freeze all":
            await pilot.press(char if char != " " else "space")
        await pilot.pause(0.5)
        assert "Freeze all (F)" in screen_text(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: explorer.plan.boundary is None)


async def test_quit_asks_when_the_plan_changed(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_explorer(pilot)
        await pilot.press("F", "q")
        assert type(app.screen).__name__ == "ConfirmScreen"
        assert "Quit without exporting?" in screen_text(pilot)
        await pilot.press("n")
        assert type(app.screen).__name__ == "ExplorerScreen"
        await pilot.press("q", "y")
        await pilot.pause()
    assert app.return_code == 0


async def test_quit_without_changes_does_not_ask(small_loaded: Any) -> None:
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_explorer(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_collapse_and_expand(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        full = table.row_count
        await pilot.press("left")  # on the stage 0 header: collapse it
        assert table.row_count < full
        await pilot.press("right")
        assert table.row_count == full
        await pilot.press("minus")
        assert table.row_count == 6  # six stage headers
        # A jump into a collapsed stage expands what it needs.
        for _ in range(5):
            await pilot.press("right_square_bracket")
        assert table.current_layer.index == 143
        await pilot.press("plus")
        assert table.row_count == full and table.current_layer.index == 143


async def test_nested_wrapper_counts_match_keras(wrapped_loaded: Any, keras: Any) -> None:
    from kfreeze_tui.core.train.build import apply_freeze, set_trainable

    app = make_app(loaded=wrapped_loaded)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        first = table.current_layer
        assert first.path == (0,) and first.is_container
        paths = []
        for _ in range(5):
            await pilot.press("right_square_bracket")
            paths.append(table.current_layer.path)
        assert paths == [(0, 2), (0, 6), (0, 39), (0, 81), (0, 143)]
        await pilot.press("f")
        plan = explorer.plan
        assert "Boundary 0.143 conv5_block1_1_conv" in screen_text(pilot)
        shown = explorer.session.view.totals(plan)
        model = wrapped_loaded.model
        apply_freeze(model, explorer.session.view, plan)
        try:
            trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
            assert shown.trainable == trainable == 14_953_472 + 20_490
        finally:
            set_trainable(model, True)  # a plain `= True` skips the setter on a True flag


async def test_small_model_space_on_batchnorm(small_loaded: Any) -> None:
    app = make_app(loaded=small_loaded)
    async with app.run_test(size=(100, 30)) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        assert table.current_layer.name == "image"  # small models are not grouped
        await pilot.press("j", "j")
        assert table.current_layer.name == "stem_bn"
        await pilot.press("space")
        # The default policy keeps it frozen after the boundary; the exception trains it.
        view = explorer.session.view
        assert view.leaf_trainable(explorer.plan, table.current_layer.path)
        assert "stem_bn" in screen_text(pilot) and "train*" in screen_text(pilot)


async def test_the_cut_shows_as_the_boundary_and_cursor_move(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        for _ in range(5):
            await pilot.press("right_square_bracket")
        # The side pane says what f would do here, before it is pressed.
        summary = explorer.query_one("#layer-summary")
        assert "f here: clean cut: conv4_block6_out" in summary.text.plain
        await pilot.press("f")
        assert "Boundary 143 conv5_block1_1_conv  ·  clean cut: conv4_block6_out" in (
            screen_text(pilot)
        )
        assert not app._notifications  # a clean cut needs no warning
        await pilot.press("j")
        assert table.current_layer.name == "conv5_block1_1_bn"
        assert "f here: splits block conv5_block1" in summary.text.plain
        await pilot.press("f")
        assert "splits block conv5_block1 (2 tensors cross)" in screen_text(pilot)
        warnings = [n.message for n in app._notifications]
        assert any("splits block conv5_block1" in m and "tensors cross it" in m for m in warnings)
        # `{` goes back to the block's start, where the cut is clean again.
        await pilot.press("left_curly_bracket", "f")
        assert explorer.plan.boundary == (143,)
        assert "clean cut: conv4_block6_out" in screen_text(pilot)


async def test_the_filter_takes_keras2_resnet_names(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("slash", *"res5a_branch2a", "enter")
        table = explorer.table
        assert table.match_count == 1
        assert table.current_layer.name == "conv5_block1_1_conv"
        field = explorer.query_one("#filter")
        assert "res5a_branch2a is the Keras 2 name of conv5_block1_1_conv (index 143)" in str(
            field.border_title
        )


async def test_the_opening_screen_tells_the_truth_about_batchnorm(resnet50: Any) -> None:
    app = make_app(loaded=resnet50)
    async with app.run_test(size=SIZE) as pilot:
        explorer = await wait_for_explorer(pilot)
        text = screen_text(pilot)
        # Nothing is frozen by the boundary, but the default policy keeps BatchNorm frozen.
        assert "every layer trains but BatchNormalization (kept frozen)" in text
        assert "53 BatchNorm after it: kept frozen (b)" in text
        await pilot.press("b")
        assert "Boundary: none, every layer trains\n" in screen_text(pilot) + "\n"
        assert explorer.plan.bn_policy is BNPolicy.TRAINABLE
        # Stage 0 (the input and conv1's padding) has no weights: it is neither frozen nor
        # trainable, and says so.
        header = next(line for line in screen_text(pilot).splitlines() if "stage 0" in line)
        assert header.split("▏")[0].rstrip().endswith("·")
