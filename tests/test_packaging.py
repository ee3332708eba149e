"""The runtime ranges of Textual and Rich admit exactly what the tests run with."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    return {Requirement(line).name: Requirement(line) for line in lines}


def test_pinned_ui_libraries_match_the_tests() -> None:
    runtime = _requirements(PROJECT["dependencies"])
    tested = _requirements(PROJECT["optional-dependencies"]["test"])
    for name in ("textual", "rich"):
        pins = [spec for spec in tested[name].specifier if spec.operator == "=="]
        assert len(pins) == 1, f"the test extra must pin {name} exactly (snapshots)"
        pinned = Version(pins[0].version)
        assert runtime[name].specifier.contains(pinned), (
            f"{name} {pinned} (tests) is outside the runtime range {runtime[name].specifier}"
        )
        assert runtime[name].specifier, f"{name} needs a runtime range, not any version"
        # An upper bound: a release the tests never saw is not installed for users.
        assert any(spec.operator in ("<", "<=", "~=") for spec in runtime[name].specifier)
        assert Version(metadata.version(name)) == pinned, f"installed {name} is not the pin"


def test_no_private_textual_api_in_the_app() -> None:
    source = Path(__file__).parents[1] / "kfreeze_tui"
    private = re.compile(
        r"def _fatal_error|_exit_renderables|_close_messages_no_wait|\._exception\b"
        r"|_handle_exception|\._compositor\b"
    )
    offenders = [
        f"{path.relative_to(source)}:{number}"
        for path in source.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not offenders


def test_no_private_keras_api_and_no_second_keras() -> None:
    """Legacy files are read with Keras 3's public API: nothing from ``keras.src``, and
    ``tf_keras`` (the tests' oracle) is never imported by kfreeze itself."""
    source = Path(__file__).parents[1] / "kfreeze_tui"
    # Imports, and attribute access (not a module path quoted in a string or a docstring).
    pattern = re.compile(r"^\s*(from|import)\s+(keras\.src|tf_keras)\b|(?<![\"'`.\w])keras\.src\.")
    offenders = [
        f"{path.relative_to(source)}:{number}"
        for path in source.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders
    assert "tf_keras" not in " ".join(PROJECT["dependencies"])
    assert any(item.startswith("tf_keras") for item in PROJECT["optional-dependencies"]["test"])


def test_keras_hub_is_an_extra_the_tests_install() -> None:
    """keras-hub is optional for users (the `hub` extra), and the test extra installs the same
    range, so that CI runs the keras-hub tests instead of skipping them."""
    runtime = _requirements(PROJECT["dependencies"])
    hub = _requirements(PROJECT["optional-dependencies"]["hub"])
    tested = _requirements(PROJECT["optional-dependencies"]["test"])
    assert "keras-hub" not in runtime
    assert str(hub["keras-hub"].specifier) == str(tested["keras-hub"].specifier)
    assert hub["keras-hub"].specifier.contains(Version(metadata.version("keras-hub")))
