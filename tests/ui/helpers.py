"""Helpers for driving the real app with Pilot."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from kfreeze_tui.screens.explorer import ExplorerScreen


async def wait_for(pilot: Pilot, predicate: Callable[[], object], timeout: float = 60) -> None:
    """Let the app run until ``predicate()`` is true (the loading worker is a real thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; screen is {type(pilot.app.screen).__name__}")
        await pilot.pause(0.05)
    await pilot.pause()


async def wait_for_explorer(pilot: Pilot) -> ExplorerScreen:
    """Wait until the model is open and return the explorer screen."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExplorerScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ExplorerScreen)
    return screen


async def type_into(pilot: Pilot, field: str, text: str) -> None:
    """Focus an input of the current screen, empty it and type ``text`` key by key."""
    pilot.app.screen.query_one(field).focus()
    await pilot.pause()
    pilot.app.screen.query_one(field).value = ""  # type: ignore[attr-defined]
    for char in text:
        await pilot.press(char)


def screen_text(pilot: Pilot) -> str:
    """What the terminal shows now, as plain text lines (the real composited frame)."""
    strips = pilot.app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)
