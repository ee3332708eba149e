"""What a source names is decided once, and the cache, the loader, the session and the command
line agree on it: a folder named like an architecture never shows one model and loads
another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.model import cache
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.model.source import SourceKind, resolve

RANDOM = LoadOptions(weights="none")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder of its own, and a layer-table cache of its own."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder


def test_the_rules(here: Path) -> None:
    assert resolve("ResNet50").kind is SourceKind.ARCHITECTURE
    assert resolve("resnet50").architecture.name == "ResNet50"  # type: ignore[union-attr]
    assert resolve("resnet50").note is None
    assert resolve("resnet5").kind is SourceKind.UNKNOWN
    assert resolve("nope.keras").kind is SourceKind.MISSING
    assert resolve("plan.toml").kind is SourceKind.PLAN_FILE  # reading it says it is missing
    (here / "data").mkdir()
    assert resolve("data").kind is SourceKind.FOLDER
    # An existing file is that file, even under an architecture's name.
    (here / "vgg16").write_bytes(b"not a model")
    assert resolve("vgg16").kind is SourceKind.MODEL_FILE
    assert resolve("vgg16").display_name == "vgg16"
    # A folder never is a model: a bare architecture name means the architecture, and says
    # so; written as a path, it is the folder.
    (here / "resnet50").mkdir()
    named = resolve("resnet50")
    assert named.kind is SourceKind.ARCHITECTURE and named.display_name == "ResNet50"
    assert named.note is not None and "./resnet50 names the folder" in named.note
    assert resolve("./resnet50").kind is SourceKind.FOLDER
    # The cache keys what the loader loads.
    assert cache.key_for("resnet50", RANDOM)["kind"] == "architecture"  # type: ignore[index]
    assert cache.key_for("./resnet50", RANDOM) is None
    assert cache.key_for("vgg16", RANDOM)["kind"] == "file"  # type: ignore[index]


def test_a_folder_named_resnet50_with_a_warm_cache(here: Path, keras: Any) -> None:
    from kfreeze_tui.core.plan.freeze import FreezePlan
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.session import open_session
    from kfreeze_tui.core.train.build import flags_restored

    first = open_session("resnet50", RANDOM)  # fills the cache
    assert not first.from_cache and not first.warnings
    (here / "resnet50").mkdir()
    warm = open_session("resnet50", RANDOM)
    assert warm.from_cache and warm.architecture is not None
    assert warm.info.layers == first.info.layers
    assert any("./resnet50 names the folder" in note for note in warm.warnings)
    # What the export builds first: the model the table shows, not "is a directory".
    boundary = warm.info.find("conv5_block1_1_conv").path
    with flags_restored(warm.model):
        model, _plan = warm.build(FreezePlan(boundary=boundary), HeadSpec(classes=3), CompileSpec())
    assert warm.model.name == "resnet50" and model.output.shape == (None, 3)
    # The note is about this folder: it is never cached for another.
    assert open_session("resnet50", RANDOM).warnings.count(warm.warnings[-1]) == 1


def test_kfreeze_layers_resnet50_beside_a_folder_of_that_name(
    here: Path, keras: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfreeze_tui.cli import run

    command = ["layers", "resnet50", "--weights", "none", "--filter", "conv5_block3_out"]
    assert run(command) == 0  # fills the cache
    first = capsys.readouterr()
    assert "conv5_block3_out" in first.out and not first.err
    (here / "resnet50").mkdir()
    for extra in ([], ["--no-cache"]):  # the cache's answer, and the loader's
        assert run([*command, *extra]) == 0
        printed = capsys.readouterr()
        assert printed.out == first.out
        assert "kfreeze: warning: resnet50 is also a folder here" in printed.err
        assert "is a directory" not in printed.err
    # Written as a path, it is the folder, refused in one sentence.
    assert run(["layers", "./resnet50"]) == 2
    assert "./resnet50 is a directory, not a model file" in capsys.readouterr().err
