"""The explorer's first minutes: what a newcomer sees and presses first.

The filter's query shows, the side pane's keys are reachable and listed, the side pane grows
on a wide terminal, the first frame has its final columns, phases say what the export writes
and can be edited, the cursor is readable in every colour mode, the GPU verdict is never
cut, checkboxes differ without colour and the picker gives human sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import nvidia_smi
from helpers import screen_text, type_into, wait_for, wait_for_explorer
from rich.color import ColorSystem
from rich.segment import Segment
from rich.style import Style
from textual.app import App, ComposeResult
from textual.color import Color
from textual.filter import Monochrome

from kfreeze_tui import scenarios
from kfreeze_tui.app import make_app
from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.plan.phases import Phase
from kfreeze_tui.core.train.cost import TrainingSetup, cost_model
from kfreeze_tui.widgets.layer_table import LayerTable


async def test_the_filter_shows_its_query(named_resnet: Any) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(120, 36)) as pilot:
        await scenarios.filtered(pilot)
        shown = screen_text(pilot)
        assert "conv5.*_bn$" in shown
        assert "trainable" in shown  # the status bar is still there, under the filter


async def test_tab_lands_on_a_field_and_help_lists_the_pane_keys(named_resnet: Any) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("tab")
        assert app.focused is explorer.query_one("#head-pooling")
        await pilot.press("right")  # a choice field: the key changes it
        assert explorer.query_one("#head-pooling").value == "avg"
        await pilot.press("escape")
        assert app.focused is explorer.table
        await pilot.press("question_mark")
        await pilot.pause()
        shown = screen_text(pilot)
        for words in (
            "Side pane",
            "Tab",
            "Next field",
            "Shift+Tab",
            "Previous field",
            "Back to the tree",
            "Next choice",
        ):
            assert words in shown, words


@pytest.mark.parametrize("width", [120, 200])
async def test_the_side_pane_grows_and_the_tree_has_no_gap(named_resnet: Any, width: int) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(width, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        pane = explorer.query_one("#side-pane")
        table = explorer.table
        assert pane.outer_size.width >= 34
        assert table.outer_size.width + pane.outer_size.width == width
        header = screen_text(pilot).splitlines()[1][: table.size.width]
        for column in ("#", "name", "type", "output shape", "params", "state"):
            assert column in header, column
        # The header ends with the state column: no empty band after it.
        assert len(header.rstrip()) >= table.size.width - len("state  ")
        if width == 200:
            assert pane.outer_size.width >= 200 - 120  # it took what the tree did not need


class FirstFrameTable(LayerTable):
    """The real tree, remembering the header of the first frame it drew."""

    first_header: str | None = None

    def render_line(self, y: int):  # type: ignore[no-untyped-def]
        strip = super().render_line(y)
        if y == 0 and self.first_header is None and self.size.width:
            self.first_header = strip.text
        return strip


async def test_the_first_frame_has_the_final_columns(named_resnet: Any) -> None:
    from kfreeze_tui.core.session import ModelSession

    session = ModelSession(named_resnet)

    class TreeApp(App[None]):
        def compose(self) -> ComposeResult:
            yield FirstFrameTable(session.info, session.view, session.plan)

    app = TreeApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(FirstFrameTable)
        await wait_for(pilot, lambda: table.first_header is not None)
        await pilot.pause()
        final = table.render_line(0).text
        assert "type" in table.first_header and "output shape" in table.first_header
        assert table.first_header == final


async def test_with_phases_the_status_and_the_export_say_what_e_writes(
    named_resnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(130, 44)) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        assert "e writes phase" not in screen_text(pilot)
        await pilot.press("A", "a")
        status = explorer.query_one("#status").text.plain
        assert "e writes phase 1 of 2 (head only)" in status
        await pilot.press("e")
        await pilot.pause()
        note = app.screen.query_one("#export-phases").render()
        assert str(note) == (
            "The model is built for phase 1 of 2 (head only, 3 epochs at 0.001); the plan and "
            "the script carry every phase."
        )
        assert "built for phase 1 of 2" in screen_text(pilot)


async def test_phases_are_edited_in_the_explorer(named_resnet: Any) -> None:
    from kfreeze_tui.screens.phases import PhasesScreen

    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(130, 44)) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        session = explorer.session
        await pilot.press("E")
        said = [n.message for n in app._notifications]
        assert any("There are no phases to edit" in message for message in said)
        await pilot.press("A", "a", "E")  # the cursor is on phase 2's boundary
        await wait_for(pilot, lambda: isinstance(app.screen, PhasesScreen))
        assert app.focused is app.screen.query_one("#phase-epochs-2")
        await type_into(pilot, "#phase-epochs-2", "0")
        await pilot.press("enter")
        assert isinstance(app.screen, PhasesScreen)  # refused, with the reason
        assert "phase 2: a phase trains at least one epoch." in screen_text(pilot)
        await type_into(pilot, "#phase-epochs-2", "8")
        await type_into(pilot, "#phase-rate-2", "1e-5..1e-6")
        await pilot.press("enter")
        assert "phase 2: the range 1e-5..1e-6 goes down" in screen_text(pilot)
        await type_into(pilot, "#phase-rate-2", "1e-6..1e-5")
        await type_into(pilot, "#phase-epochs-1", "2")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, PhasesScreen))
        boundary = session.info.find("conv5_block1_1_conv").path
        assert session.phases == (
            Phase(boundary=None, epochs=2, lr=1e-3),
            Phase(boundary=boundary, epochs=8, lr_range=(1e-6, 1e-5)),
        )
        shown = screen_text(pilot)
        assert "1 head · 2 ep · lr 0.001" in shown
        assert "2 at 143 · 8 ep · lr 1e-06..1e-05" in shown
        assert "phase 2: conv5_block1_1_conv, 8 epochs" in shown
        await pilot.press("E")
        await wait_for(pilot, lambda: isinstance(app.screen, PhasesScreen))
        await type_into(pilot, "#phase-epochs-1", "9")
        await pilot.press("escape")  # cancelled: nothing changes
        assert session.phases[0].epochs == 2
        with pytest.raises(PlanError, match="learning rates must be positive"):
            session.edit_phase(0, 3, -1.0)
        assert session.phases[0].epochs == 2


def _contrast(first: tuple[int, int, int], second: tuple[int, int, int]) -> float:
    """The WCAG contrast ratio of two colours (1 to 21)."""

    def luminance(rgb: tuple[int, int, int]) -> float:
        def channel(value: int) -> float:
            c = value / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(v) for v in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _shown_colours(style: Style, system: ColorSystem | None) -> tuple[Any, Any]:
    """The foreground and background a terminal shows for ``style`` (reverse applied) in
    a colour system (None: 24-bit)."""
    fg, bg = style.color, style.bgcolor
    assert fg is not None and bg is not None
    if system is not None:
        fg, bg = fg.downgrade(system), bg.downgrade(system)
    if style.reverse:
        fg, bg = bg, fg
    return fg.get_truecolor(), bg.get_truecolor()


@pytest.mark.parametrize("focused", [True, False])
async def test_the_cursor_is_readable_on_header_and_layer_rows(
    named_resnet: Any, focused: bool
) -> None:
    """The cursor row's text and background differ, with a WCAG contrast of at least 3 (the
    minimum for large text and interface parts), in 24-bit, 256 and 16 colours and with
    NO_COLOR (Textual's Monochrome filter, which the app applies when NO_COLOR is set)."""
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(120, 36)) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        if not focused:
            await pilot.press("tab")
            await wait_for(pilot, lambda: not table.has_focus)
            await pilot.pause(0.2)  # the blur's style update runs after the focus moves
        background = Color.from_rich_color(table.rich_style.bgcolor)
        for kind in ("stage", "block", "layer"):
            while table.current_node.kind != kind:  # the keys may be in the side pane
                table.action_cursor_down()
            await pilot.pause()
            y = table._line_of_row(table.cursor) - int(table.scroll_y) + 1
            segments = [s for s in table.render_line(y) if s.text.strip()]
            assert segments
            modes: dict[str, list[Segment]] = {
                "24-bit": segments,
                "256": segments,
                "16": segments,
                "NO_COLOR": Monochrome().apply(segments, background),
            }
            systems = {"256": ColorSystem.EIGHT_BIT, "16": ColorSystem.STANDARD}
            for mode, shown in modes.items():
                for segment in shown:
                    fg, bg = _shown_colours(segment.style, systems.get(mode))
                    assert fg != bg, (kind, mode)
                    assert _contrast(fg, bg) >= 3, (kind, mode, fg, bg)
            if focused:  # a bar even where colours are dropped altogether
                assert all(segment.style.reverse for segment in segments)


@pytest.fixture
def big_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An nvidia-smi reporting one GPU with 78.6 GiB free (this machine has no GPU)."""
    monkeypatch.setenv(
        "PATH", nvidia_smi(tmp_path, "echo '0, Fake GPU 80GB, 81920, 80486, GPU-7c1d'")
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # every GPU listed is visible


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_the_gpu_verdict_is_never_cut(
    named_resnet: Any, big_gpu: None, size: tuple[int, int]
) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=size) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        await wait_for(pilot, lambda: explorer.session.gpus, timeout=20)
        estimate = cost_model(explorer.session.view).estimate(explorer.plan, TrainingSetup())
        largest = estimate.largest_batch(80486 << 20)
        assert largest > 32
        line = next(
            row for row in screen_text(pilot).splitlines() if "step 0.46x" in row and "GPU" in row
        )
        assert "…" not in line
        assert f"fits GPU 0 (78.6 GiB free; batch up to {largest:,})" in line or (
            size[0] == 80 and f"fits GPU 0 (batch ≤ {largest:,})" in line
        )
        status = explorer.query_one("#status").text.plain
        if size[0] < 110:  # the side pane is folded away: never send the user there
            assert "side pane" not in status


async def test_checkboxes_differ_without_colour(
    named_resnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(loaded=named_resnet)
    assert app.no_color
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_explorer(pilot)
        await pilot.press("e")
        await pilot.pause()
        shown = screen_text(pilot)
        assert "▐X▌ plan (.toml)" in shown
        assert "▐ ▌ inference SavedModel" in shown
        app.screen.query_one("#export-savedmodel").focus()
        await pilot.press("space")
        assert "▐X▌ inference SavedModel" in screen_text(pilot)


async def test_the_picker_gives_human_sizes(tmp_path: Path) -> None:
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.screens.picker import PickerScreen

    (tmp_path / "tiny.keras").write_bytes(b"\0" * 700)
    (tmp_path / "small.keras").write_bytes(b"\0" * 12_345)
    (tmp_path / "big.keras").write_bytes(b"\0" * 2_000_000)
    app = make_app(options=LoadOptions(weights="none"), root=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        await wait_for(pilot, lambda: "tiny.keras" in screen_text(pilot))
        rows = {line.split()[0]: line for line in screen_text(pilot).splitlines() if line.strip()}
        assert rows["tiny.keras"].rstrip().endswith("700 B")
        assert rows["small.keras"].rstrip().endswith("12.1 KiB")  # 12,345 / 1,024
        assert rows["big.keras"].rstrip().endswith("1.9 MiB")  # 2,000,000 / 1,048,576
