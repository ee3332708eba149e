"""y sends the freeze snippet through the terminal (OSC 52), which may drop it: the message
says where it was sent and where else the same lines are, in the keys the user has."""

from __future__ import annotations

import base64
from typing import Any

from helpers import wait_for_explorer

from kfreeze_tui.app import make_app


async def test_the_clipboard_message_says_sent_and_names_the_fallback(small_loaded: Any) -> None:
    app = make_app(loaded=small_loaded, keymap={"export": "x"})
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.table.move_to_path((5,))  # block1_conv
        written: list[str] = []
        driver = app._driver
        assert driver is not None
        write = driver.write

        def recorded(data: str) -> None:  # what the terminal is sent, still sent
            written.append(data)
            write(data)

        driver.write = recorded  # type: ignore[method-assign]
        await pilot.press("f", "y")
        await pilot.pause()
        (message,) = [n.message for n in app._notifications if "clipboard" in n.message]
        lines = app.clipboard.count("\n")
        assert message == (
            f"Sent a {lines}-line freeze snippet to the terminal's clipboard (OSC 52). If it did "
            "not arrive (tmux: set -g set-clipboard on), the script that x exports has the same "
            "lines."
        )
        # What went to the terminal is the OSC 52 sequence of exactly that snippet.
        sent = [w for w in written if w.startswith("\x1b]52;c;")]
        assert sent == [f"\x1b]52;c;{base64.b64encode(app.clipboard.encode()).decode()}\a"]
        assert "block1_conv" in app.clipboard
