"""Phases in the explorer: added at the cursor, listed with their cost, drawn in the tree,
removed, and written by the export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import screen_text, wait_for_explorer

from kfreeze_tui import scenarios
from kfreeze_tui.app import make_app
from kfreeze_tui.core.plan import planfile
from kfreeze_tui.core.plan.phases import Phase


async def test_phases_are_added_listed_drawn_and_removed(named_resnet: Any) -> None:
    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(150, 44)) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        assert "Phases: none (a, A: add)" in screen_text(pilot)
        await pilot.press("A", "a")  # the head alone, then from conv5_block1_1_conv
        info = explorer.session.info
        assert explorer.session.phases == (
            Phase(boundary=None, epochs=3, lr=1e-3),
            Phase(boundary=info.find("conv5_block1_1_conv").path, epochs=5, lr=1e-5),
        )
        shown = screen_text(pilot)
        assert "1 head · 3 ep · lr 0.001" in shown
        assert "2 at 143 · 5 ep · lr 1e-05" in shown
        assert "14,953,472 · 0.46x · 512 MiB" in shown
        assert "phase 2: conv5_block1_1_conv, 5 epochs" in shown
        await pilot.press("left_square_bracket", "a")  # stage 4's start
        assert "phase 3: conv4_block1_1_conv, 5 epochs" in screen_text(pilot)
        assert len(explorer.session.phases) == 3
        await pilot.press("X")  # the phase at the cursor
        assert [p.boundary for p in explorer.session.phases] == [
            None,
            info.find("conv5_block1_1_conv").path,
        ]
        assert "phase 3:" not in screen_text(pilot)
        await pilot.press("X", "X", "X")  # the last ones, then nothing left to remove
        assert explorer.session.phases == ()


async def test_the_export_writes_the_phases(named_resnet: Any, tmp_path: Path) -> None:
    from kfreeze_tui.core.train.export import ExportRequest

    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(150, 44)) as pilot:
        await scenarios.boundary_at_143(pilot)
        explorer = await wait_for_explorer(pilot)
        await pilot.press("A", "a")
        session = explorer.session
        request = ExportRequest(tmp_path / "m.keras", tmp_path / "m.toml")
        result = session.export(
            session.load_options, session.plan, session.head, session.compile_spec, request
        )
    assert result.verification.trainable_params == 20_490  # phase 1: the head alone
    doc = planfile.read(tmp_path / "m.toml")
    assert [p.boundary.name if p.boundary else "head" for p in doc.phases] == [
        "head",
        "conv5_block1_1_conv",
    ]


def test_phases_snapshot(snap_compare: Any, named_resnet: Any) -> None:
    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(130, 44), run_before=scenarios.phases
    )


async def test_quitting_with_new_phases_asks_first(named_resnet: Any) -> None:
    from kfreeze_tui.screens.confirm import ConfirmScreen

    app = make_app(loaded=named_resnet)
    async with app.run_test(size=(150, 44)) as pilot:
        explorer = await wait_for_explorer(pilot)
        assert not explorer.session.dirty
        await pilot.press("A")
        assert explorer.session.dirty
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)


def test_phases_dialog_snapshot(snap_compare: Any, named_resnet: Any) -> None:
    """E: every phase's epochs and learning rate, the cursor's phase (3) focused."""
    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(110, 30), run_before=scenarios.phases_dialog
    )
