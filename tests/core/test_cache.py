"""The layer-table cache: instant reopen, never trusted blindly, and refreshed when stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.model import cache
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.session import StaleCacheError, open_session

RANDOM = LoadOptions(weights="none")


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "kfreeze" / "layers"


def test_a_walk_survives_the_json_form(resnet50_info: Any, wrapped_base: Any) -> None:
    for info in (resnet50_info, walk(wrapped_base)):
        again = cache.info_from_json(json.loads(json.dumps(cache.info_to_json(info))))
        assert again == info
        assert again.layers == info.layers


def test_second_open_comes_from_the_cache(cache_home: Path, keras: Any) -> None:
    first = open_session("resnet50", RANDOM)
    assert not first.from_cache and list(cache_home.glob("*.json"))
    second = open_session("resnet50", RANDOM)
    assert second.from_cache and not second.model_loaded
    assert second.info.layers == first.info.layers
    assert second.view.cut(second.initial_plan()).describe() == "no cut: every layer trains"
    # The model is built when something needs it, and matches the cached table.
    assert second.model.name == "resnet50" and second.model_loaded
    # --no-cache: neither read nor written.
    assert not open_session("resnet50", RANDOM, use_cache=False).from_cache


def test_a_cached_open_does_not_import_tensorflow(cache_home: Path, keras: Any) -> None:
    open_session("mobilenetv3small", RANDOM)  # fills the cache
    probe = (
        "import sys\n"
        "from kfreeze_tui.core.model.loading import LoadOptions\n"
        "from kfreeze_tui.core.session import open_session\n"
        "s = open_session('mobilenetv3small', LoadOptions(weights='none'))\n"
        "print(s.from_cache, len(s.info.layers), 'tensorflow' in sys.modules, "
        "'keras' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home.parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout.split() == ["True", "157", "False", "False"], out.stderr


def test_entries_that_cannot_be_trusted_are_ignored_and_rewritten(
    cache_home: Path, small_model_file: Path
) -> None:
    source = str(small_model_file)
    key = cache.key_for(source, RANDOM)
    assert key is not None and key["kind"] == "file" and len(key["sha256"]) == 64
    open_session(source, RANDOM)
    (entry,) = cache_home.glob("*.json")
    good = entry.read_text()
    # Another Keras version's entry is not used.
    assert cache.read({**key, "keras": "2.15.0"}) is None
    for broken in ("", "{", '{"key": {}, "info": {}}', good.replace('"params"', '"parms"')):
        entry.write_text(broken)
        assert cache.read(key) is None
        session = open_session(source, RANDOM)
        assert not session.from_cache
        assert cache.read(key) is not None  # rewritten by the real load


def test_a_changed_file_is_a_new_key(tmp_path: Path, small_model_file: Path) -> None:
    copy = tmp_path / "copy.keras"
    data = bytearray(small_model_file.read_bytes())
    copy.write_bytes(data)
    before = cache.key_for(str(copy), RANDOM)
    stat = copy.stat()
    data[-1] ^= 1  # same size, same modification time, other content
    copy.write_bytes(data)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = cache.key_for(str(copy), RANDOM)
    assert before is not None and after is not None
    assert before["size"] == after["size"] and before["mtime_ns"] == after["mtime_ns"]
    assert before["sha256"] != after["sha256"]


def test_a_stale_table_is_found_when_the_model_loads(
    cache_home: Path, small_model_file: Path, resnet50_info: Any
) -> None:
    source = str(small_model_file)
    key = cache.key_for(source, RANDOM)
    cache.write(key, resnet50_info)  # a table that is not this file's
    session = open_session(source, RANDOM)
    assert session.from_cache and len(session.info.layers) == 175
    with pytest.raises(StaleCacheError, match="no longer matches the model"):
        _ = session.model
    refreshed = cache.read(key)
    assert refreshed is not None and [r.name for r in refreshed.layers][-1] == "classifier"


def test_export_leaves_the_session_model_as_it_was(
    cache_home: Path, small_model_file: Path, tmp_path: Path
) -> None:
    from kfreeze_tui.core.plan.freeze import FreezePlan
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.train.export import ExportRequest

    session = open_session(str(small_model_file), RANDOM, use_cache=False)
    before = walk(session.model)
    session.export(
        RANDOM,
        FreezePlan(boundary=(5,)),
        HeadSpec(classes=3),
        CompileSpec(),
        ExportRequest(model_path=tmp_path / "out.keras"),
    )
    assert walk(session.model).layers == before.layers == session.info.layers


def test_cache_command(run_cli: Any, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    first = run_cli("layers", "vgg16", "--weights", "none", "--json", env=env)
    assert first.returncode == 0, first.stderr
    listed = run_cli("cache", env=env)
    assert listed.returncode == 0 and "1 cached layer table(s)" in listed.stdout
    again = run_cli("layers", "vgg16", "--weights", "none", "--json", env=env)
    assert json.loads(again.stdout) == json.loads(first.stdout)
    cleared = run_cli("cache", "clear", env=env)
    assert cleared.returncode == 0 and "removed 1 cached layer table(s)" in cleared.stdout
    assert "0 cached layer table(s)" in run_cli("cache", env=env).stdout
    uncached = run_cli("layers", "vgg16", "--weights", "none", "--no-cache", env=env)
    assert uncached.returncode == 0
    assert "0 cached layer table(s)" in run_cli("cache", env=env).stdout
