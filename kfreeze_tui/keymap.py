"""The user's keys: ``[keys]`` in ``~/.config/kfreeze/config.toml``.

Every binding of the explorer and the tree has an id (``freeze_boundary``, ``next_stage``);
the config maps ids to keys, as posting and harlequin do, and Textual's ``set_keymap``
applies it. The footer, the help screen and the command palette ask for the key a binding
has *now*, so they follow the user's keys. A config that names an action kfreeze does not
have, or that puts two actions on one key, is refused in one sentence before the app starts.

::

    [keys]
    freeze_boundary = "x"
    next_stage = "ctrl+n,]"
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

from textual.binding import Binding, BindingType
from textual.keys import KEY_NAME_REPLACEMENTS

from kfreeze_tui.core import tomlfile
from kfreeze_tui.core.errors import ConfigError
from kfreeze_tui.core.wording import did_you_mean, with_suggestion

Keymap = dict[str, str]


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/kfreeze/config.toml`` (default ``~/.config/kfreeze/config.toml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kfreeze" / "config.toml"


def normalize_key(key: str) -> str:
    """A key as Textual names it: ``?`` -> ``question_mark``, ``x`` -> ``x``."""
    key = key.strip()
    if len(key) != 1 or key.isalnum():
        return key
    try:
        name = unicodedata.name(key).lower().replace("-", "_").replace(" ", "_")
    except ValueError:
        name = key
    return KEY_NAME_REPLACEMENTS.get(name, name)


def explorer_bindings() -> list[Binding]:
    """Every binding that is live in the explorer at once: its own and the tree's."""
    from kfreeze_tui.screens.explorer import ExplorerScreen
    from kfreeze_tui.widgets.layer_table import LayerTable

    return _explicit([*ExplorerScreen.BINDINGS, *LayerTable.BINDINGS])


def _explicit(bindings: Iterable[BindingType]) -> list[Binding]:
    return [b for b in bindings if isinstance(b, Binding)]


def keys_of(binding: Binding, keymap: Mapping[str, str]) -> list[str]:
    """The keys that run ``binding`` under ``keymap`` (normalized)."""
    keys = keymap.get(binding.id or "", binding.key)
    return [normalize_key(k) for k in keys.split(",") if k.strip()]


def check(
    keymap: Mapping[str, str],
    where: str = "the keymap",
    lines: tomlfile.KeyLines | None = None,
) -> Keymap:
    """Normalize a keymap and refuse unknown actions and clashes.

    Args:
        keymap: binding id -> comma-separated keys.
        where: how to name its source in a message (the config file's path).
        lines: where each key stands in the config file, to name its line.

    Returns:
        The keymap with normalized keys.

    Raises:
        ConfigError: an unknown action, an empty key, or two actions on one key.
    """
    bindings = explorer_bindings()
    ids = sorted({b.id for b in bindings if b.id})

    def at(action: str) -> str:
        line = lines.line(("keys", action)) if lines is not None else None
        return f"{where} line {line}" if line else where

    for action, keys in keymap.items():
        if action not in ids:
            raise ConfigError(
                with_suggestion(
                    f'{at(action)}: unknown action "{action}" in [keys]',
                    did_you_mean(action, ids, n=2) or "the README lists the actions under Keys",
                )
            )
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(f'{at(action)}: [keys] {action} needs a key, e.g. {action} = "x"')
    normalized = {
        action: ",".join(normalize_key(k) for k in keys.split(","))
        for action, keys in keymap.items()
    }
    owners: dict[str, str] = {}
    for binding in bindings:
        for key in keys_of(binding, normalized):
            other = owners.get(key)
            if other is not None and other != binding.id:
                raise ConfigError(
                    f"{where}: the key {key!r} would run both {other} and {binding.id}; "
                    "give one of them another key"
                )
            owners[key] = binding.id or binding.action
    return normalized


def read_keymap(path: Path | None = None) -> Keymap:
    """The user's keymap from the config file (empty when there is none).

    Raises:
        ConfigError: the file is not TOML, ``[keys]`` is not a table of strings, or
            :func:`check` refuses it.
    """
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        data, lines = tomlfile.read(path, "the config")
    except tomlfile.TomlError as exc:
        raise ConfigError(str(exc)) from None
    for name in data:
        if name != "keys":
            hint = did_you_mean(name, ["keys"], brackets="[]") or "the config has only [keys]"
            text = with_suggestion(f"unknown table [{name}]", hint)
            raise ConfigError(tomlfile.located(path, lines.line((name,)), text))
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise ConfigError(f'{path}: [keys] must be a table, e.g. [keys] then freeze_boundary = "x"')
    return check(keys, str(path), lines)


def display_keys(binding: Binding, keymap: Mapping[str, str], display: object) -> str:
    """``], n`` for the help screen and the palette, in the user's keys.

    Args:
        binding: the binding.
        keymap: the app's keymap.
        display: the app's ``get_key_display`` (so that Textual formats keys as it does in
            the footer).
    """
    return ", ".join(
        display(binding.with_key(key, key_display=None))  # type: ignore[operator]
        for key in keys_of(binding, keymap)
    )
