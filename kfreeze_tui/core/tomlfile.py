"""TOML files people edit by hand: read them, and say on which line each key stands.

``tomllib`` parses but forgets where things were; a message about a misspelt key is only
useful with its line. :func:`key_lines` scans the text once (headers, keys, strings,
comments and brackets) and maps each key path to its line: ``("head", "classes")`` for
``classes`` under ``[head]``, ``("phase", 1, "epochs")`` for ``epochs`` in the second
``[[phase]]``. Pure Python, no dependency beyond the TOML parser.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import TomlError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KeyPath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"^\s*(\[\[|\[)\s*({_DOTTED})\s*(\]\]|\])\s*(?:#.*)?$")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=")


def _parts(dotted: str) -> list[str]:
    found = re.findall(_PART, dotted)
    return [p[1:-1] if p[:1] in "\"'" else p for p in found]


@dataclass
class _Scan:
    """Where the scanner is in the text between lines."""

    depth: int = 0  # open brackets and braces of a value
    multiline: str = ""  # the delimiter of an open multi-line string


def _scan_value(text: str, state: _Scan) -> None:
    """Follow strings, comments and brackets through ``text`` (part of one line)."""
    i = 0
    while i < len(text):
        if state.multiline:
            end = text.find(state.multiline, i)
            if end < 0:
                return
            i = end + 3
            state.multiline = ""
            continue
        char = text[i]
        if char == "#":
            return
        if text.startswith(('"""', "'''"), i):
            state.multiline = text[i : i + 3]
            i += 3
            continue
        if char == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif char == "'":
            end = text.find("'", i + 1)
            i = len(text) if end < 0 else end
        elif char in "[{":
            state.depth += 1
        elif char in "]}":
            state.depth = max(0, state.depth - 1)
        i += 1


@dataclass(frozen=True)
class KeyLines:
    """The line (from 1) of every table header and key of a TOML text, by key path."""

    lines: dict[KeyPath, int]
    ends: dict[KeyPath, int]
    text_lines: tuple[str, ...]

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``; for a key inside an inline table or array of tables
        (``("head", "hidden", 0, "units")``), the line within its parent's value where the
        key is written, else the parent's line."""
        if path in self.lines:
            return self.lines[path]
        for cut in range(len(path) - 1, 0, -1):
            parent = path[:cut]
            if parent in self.lines:
                start = self.lines[parent]
                end = self.ends.get(parent, start)
                key = next((p for p in reversed(path) if isinstance(p, str)), None)
                if key is not None and path[-1] == key:
                    pattern = re.compile(rf"(^|[{{,\s]){re.escape(key)}\s*=")
                    for number in range(start, end + 1):
                        if pattern.search(self.text_lines[number - 1]):
                            return number
                return start
        return None


def key_lines(text: str) -> KeyLines:
    """Scan a TOML text (already known to parse) for the line of each header and key."""
    lines: dict[KeyPath, int] = {}
    ends: dict[KeyPath, int] = {}
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    state = _Scan()
    last: KeyPath | None = None
    text_lines = tuple(text.splitlines())
    for number, line in enumerate(text_lines, start=1):
        if state.depth or state.multiline:
            _scan_value(line, state)
            if last is not None:
                ends[last] = number
            continue
        header = _HEADER.match(line)
        if header:
            opening, dotted, _ = header.groups()
            name: KeyPath = tuple(_parts(dotted))
            if opening == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = (*name, index)
            else:
                table = name
            lines.setdefault(table, number)
            last = None
            continue
        key = _KEY.match(line)
        if key:
            path = (*table, *_parts(key.group(1)))
            lines.setdefault(path, number)
            ends[path] = number
            last = path
            _scan_value(line[key.end() :], state)
    return KeyLines(lines, ends, text_lines)


def read(path: Path, what: str) -> tuple[dict[str, Any], KeyLines]:
    """Parse a TOML file and scan where its keys are.

    Args:
        path: the file.
        what: how to name it in a message (``the plan``, ``the config``).

    Raises:
        TomlError: the file is missing, unreadable or not TOML (one sentence).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TomlError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TomlError(f"{what} {path} cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(f"{what} {path} is not valid TOML ({exc})") from None
    return data, key_lines(text)


def describe(value: Any) -> str:
    """A TOML value as a message names it: ``the string "ten"``, ``true``, ``a table``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {_scalar(value)}"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        if not value:
            return "an empty list"
        if len(value) <= 6 and all(isinstance(v, (str, int, float)) for v in value):
            return "[" + ", ".join(_scalar(v) for v in value) + "]"
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _scalar(value: str | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def located(path: Path, line: int | None, text: str) -> str:
    """``plan.toml line 12: text`` (without the line when it is not known)."""
    return f"{path} line {line}: {text}" if line else f"{path}: {text}"
