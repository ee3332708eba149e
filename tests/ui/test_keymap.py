"""The user's keys from ~/.config/kfreeze/config.toml: tree, footer, help, palette."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import screen_text, wait_for, wait_for_explorer

from kfreeze_tui.app import make_app
from kfreeze_tui.core.errors import ConfigError
from kfreeze_tui.keymap import config_path, read_keymap
from kfreeze_tui.screens.help import HelpScreen


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kfreeze" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "kfreeze" / "config.toml"
    assert read_keymap() == {}  # no file: the default keys
    _config(tmp_path, '[keys]\nfreeze_boundary = "x"\nnext_stage = "ctrl+n, ]"\n')
    assert read_keymap() == {"freeze_boundary": "x", "next_stage": "ctrl+n,right_square_bracket"}


async def test_rebinding_f_to_x(resnet50: Any, tmp_path: Path) -> None:
    config = '[keys]\nfreeze_boundary = "x"\nbn_policy = "z"\nexport = "w"\n'
    keymap = read_keymap(_config(tmp_path, config))
    app = make_app(loaded=resnet50, keymap=keymap)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await wait_for_explorer(pilot)
        for _ in range(5):
            await pilot.press("right_square_bracket")
        await pilot.press("f")  # no longer bound
        assert explorer.plan.boundary != (143,)
        await pilot.press("x")
        assert explorer.plan.boundary == (143,)
        footer = screen_text(pilot).splitlines()[-1]
        assert "x Freeze before" in footer and "f Freeze before" not in footer
        # The status bar names the user's keys, not the shipped ones.
        assert "BatchNorm after it: kept frozen (z)" in screen_text(pilot)
        await pilot.press("A")  # a head-only phase: the status bar says what export writes
        await wait_for(pilot, lambda: "w writes phase 1 of 1" in screen_text(pilot))
        await pilot.press("X")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_lines = screen_text(pilot).splitlines()
        line = next(line for line in help_lines if "Freeze before" in line)
        assert line.strip("│ ").split()[0] == "x"
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        for char in "Freeze before":
            await pilot.press(char if char != " " else "space")
        await pilot.pause(0.5)
        assert "Freeze before (x)" in screen_text(pilot)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[keys]\nfreeze_boundry = "x"\n',
            'config.toml line 2: unknown action "freeze_boundry" in [keys]',
        ),
        ('[kyes]\nfreeze_boundary = "x"\n', "line 1: unknown table [kyes]: did you mean [keys]?"),
        ('[keys]\nfreeze_boundary = "e"\n', "the key 'e' would run both"),
        ('[keys]\nnext_stage = "f"\n', "the key 'f' would run both"),
        ("[keys]\nfreeze_boundary = \n", "is not valid TOML"),
        ('keys = "x"\n', "[keys] must be a table"),
        ('[keys]\nexport = ""\n', "export needs a key"),
    ],
)
def test_bad_configs_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        read_keymap(_config(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).strip()


def test_a_bad_config_stops_the_command(run_cli: Any, tmp_path: Path) -> None:
    _config(tmp_path, '[keys]\nfreeze_boundry = "x"\n')
    result = run_cli("resnet50", "--weights", "none", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert 'line 2: unknown action "freeze_boundry" in [keys]' in result.stderr
    assert 'did you mean "freeze_boundary"?' in result.stderr
    assert "?." not in result.stderr


def test_the_readme_lists_every_action() -> None:
    from kfreeze_tui.keymap import explorer_bindings

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("#### Your keys") :][:2000]
    missing = [b.id for b in explorer_bindings() if f"`{b.id}`" not in section]
    assert not missing
