"""How the screens look, at a fixed terminal size (pytest-textual-snapshot).

Update after an intended change with ``python -m pytest tests/ui/test_snapshots.py
--snapshot-update`` and look at the report before committing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer
from textual.pilot import Pilot

from kfreeze_tui.app import make_app
from kfreeze_tui.core.loading import LoadOptions
from kfreeze_tui.screens.error import ErrorScreen
from kfreeze_tui.screens.picker import PickerScreen


async def _boundary_at_143(pilot: Pilot) -> None:
    await wait_for_explorer(pilot)
    for _ in range(5):
        await pilot.press("right_square_bracket")
    await pilot.press("f")
    await pilot.pause()


def test_picker(snap_compare: Any, tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "my_model.keras").write_bytes(b"\0" * 2_000_000)

    async def run_before(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PickerScreen))
        await wait_for(pilot, lambda: "my_model" in screen_text(pilot))

    app = make_app(options=LoadOptions(weights="none"), root=tmp_path)
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_explorer_boundary_143(snap_compare: Any, named_resnet: Any) -> None:
    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=_boundary_at_143
    )


def test_explorer_split_cut(snap_compare: Any, named_resnet: Any) -> None:
    """The boundary inside a residual unit: the status bar says which block it splits."""

    async def run_before(pilot: Pilot) -> None:
        await _boundary_at_143(pilot)
        await pilot.press("j", "j", "j", "f")  # conv5_block1_2_conv
        await pilot.pause()
        status = pilot.app.screen.query_one("#status").text.plain
        assert "splits block conv5_block1" in status  # under the warning toast

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=run_before
    )


def test_explorer_filter(snap_compare: Any, named_resnet: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _boundary_at_143(pilot)
        await pilot.press("slash", *"conv5.*_bn$")
        await pilot.pause()

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=run_before
    )


def test_layer_detail(snap_compare: Any, named_resnet: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _boundary_at_143(pilot)
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: '"epsilon"' in screen_text(pilot), timeout=20)

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 40), run_before=run_before
    )


def test_error_screen(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ErrorScreen))

    assert snap_compare(
        make_app("missing.keras", root=tmp_path), terminal_size=(100, 30), run_before=run_before
    )


def test_explorer_80x24(snap_compare: Any, named_resnet: Any) -> None:
    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(80, 24), run_before=_boundary_at_143
    )


def test_head_pane(snap_compare: Any, named_resnet: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _boundary_at_143(pilot)
        screen = pilot.app.screen
        screen.query_one("#head-hidden").focus()
        await pilot.press(*"256")
        screen.query_one("#head-classes").value = ""
        screen.query_one("#head-classes").focus()
        await pilot.press(*"5")
        await pilot.pause()

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(130, 40), run_before=run_before
    )


def test_export_dialog(
    snap_compare: Any, named_resnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await _boundary_at_143(pilot)
        await pilot.press("e")
        await pilot.pause()
        field = pilot.app.screen.query_one("#export-path")
        field.value = "resnet50_finetune.keras"  # relative: the same on every machine
        await pilot.pause()

    assert snap_compare(
        make_app(loaded=named_resnet), terminal_size=(120, 36), run_before=run_before
    )
