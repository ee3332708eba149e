"""The footer: Textual's, with the keys a user must always find kept at its right edge.

On a narrow terminal Textual's footer cuts its keys off at the right, where Help and Quit
are. Here the keys whose actions are in ``keep`` are docked at the right edge, with the
command palette's key, so the keys that are cut off are the others.
"""

from __future__ import annotations

from collections.abc import Collection

from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.widgets import Footer


class KeepingFooter(Footer):
    """A footer that always shows the keys of some actions, whatever the width."""

    DEFAULT_CSS = """
    KeepingFooter > #footer-kept {
        dock: right;
        width: auto;
        height: 1;
        layout: horizontal;
        FooterKey.-command-palette {
            dock: none;
        }
    }
    """

    def __init__(self, keep: Collection[str], *, id: str | None = None) -> None:
        """
        Args:
            keep: the actions (as the bindings name them: ``app.help``) whose keys always show.
            id: the widget's id.
        """
        super().__init__(id=id)
        self.keep = frozenset(keep)

    def compose(self) -> ComposeResult:
        widgets = list(super().compose())
        # Textual's footer keys carry the action they run (FooterKey is not public API).
        kept = [
            w
            for w in widgets
            if getattr(w, "action", None) in self.keep or w.has_class("-command-palette")
        ]
        yield from (w for w in widgets if w not in kept)
        yield HorizontalGroup(*kept, id="footer-kept")
