"""How kfreeze words a sentence and a suggestion, in one place.

Messages are built from parts (what is wrong, a hint, "did you mean ...?"), and each part
may or may not end in punctuation. Joined by hand, they end in ``?.`` or ``..``; these
helpers end a sentence once and name the nearest valid name the same way everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: How close a name must be to count as a suggestion (difflib's ratio).
CUTOFF = 0.6


def sentence(text: str) -> str:
    """``text`` ending in exactly one full stop, unless it ends in ``?`` or ``!`` already."""
    text = text.rstrip()
    stripped = text.rstrip(".")
    if stripped.endswith(("?", "!")):
        return stripped
    return f"{stripped}."


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices nearest to ``name``, best first, compared without regard to case; when
    none is near, the first choices that contain ``name``."""
    lowered: dict[str, str] = {}
    for choice in choices:
        lowered.setdefault(str(choice).lower(), str(choice))
    key = name.lower()
    found = difflib.get_close_matches(key, list(lowered), n=n, cutoff=CUTOFF)
    if not found and len(key) >= 3:  # a part of a name (block5, conv4): the names holding it
        found = [choice for choice in lowered if key in choice][:n]
    return [lowered[match] for match in found]


def did_you_mean(
    name: str, choices: Iterable[str], *, n: int = 1, quote: str = '"', brackets: str = ""
) -> str:
    """``did you mean "classes"?`` (or ``did you mean [head]?``), or "" when nothing is near.

    Args:
        name: what the user wrote.
        choices: the valid names.
        n: how many suggestions at most (joined with "or").
        quote: the quote put around each suggestion ("" for none).
        brackets: ``[]`` or ``[[]]`` to write suggestions as TOML table headers.
    """
    found = closest(name, choices, n=n)
    if not found:
        return ""
    if brackets:
        half = len(brackets) // 2
        words = [f"{brackets[:half]}{c}{brackets[half:]}" for c in found]
    else:
        words = [f"{quote}{c}{quote}" for c in found]
    return f"did you mean {' or '.join(words)}?"


def with_suggestion(text: str, suggestion: str, separator: str = ": ") -> str:
    """``text`` followed by a suggestion when there is one (no full stop added: the one who
    prints the sentence ends it, with :func:`sentence`)."""
    text = text.rstrip().rstrip(".")
    return f"{text}{separator}{suggestion}" if suggestion else text


def human_bytes(size: float) -> str:
    """``5.2 GiB``, ``310 MiB``, ``12 KiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{int(size)} B"
