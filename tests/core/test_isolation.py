"""The core never imports Textual; importing the package imports neither Keras nor Textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(result.stdout.split())


def test_core_does_not_import_textual() -> None:
    # Every module of the core, found on disk so that a new one is covered without asking.
    core = Path(__file__).parents[2] / "kfreeze_tui" / "core"
    names = sorted(
        ".".join(("kfreeze_tui", *path.relative_to(core.parent).with_suffix("").parts))
        for path in core.rglob("*.py")
        if path.stem != "__init__"
    )
    assert len(names) >= 15 and "kfreeze_tui.core.model.cut" in names
    modules = _modules_after(
        "import importlib\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "from kfreeze_tui.core.model.loading import load, LoadOptions\n"
        "from kfreeze_tui.core.model.layers import walk\n"
        "info = walk(load('mobilenetv3small', LoadOptions(weights='none')).model)"
    )
    assert "keras" in modules  # the probe really did load a model
    assert not any(name == "textual" or name.startswith("textual.") for name in modules)
    # keras-hub is optional: imported only when a keras-hub source is opened.
    assert "keras_hub" not in modules and "kagglehub" not in modules


def test_package_and_cli_import_no_heavy_modules() -> None:
    modules = _modules_after("import kfreeze_tui, kfreeze_tui.cli, kfreeze_tui.core.model.catalog")
    for heavy in ("keras", "tensorflow", "textual", "keras_hub", "kagglehub"):
        assert heavy not in modules


def test_the_app_starts_without_tensorflow() -> None:
    # The first frame must not wait for TensorFlow: nothing on the start-up path imports it.
    modules = _modules_after(
        "import kfreeze_tui.cli, kfreeze_tui.app\napp = kfreeze_tui.app.make_app('resnet50')"
    )
    assert "textual" in modules
    for heavy in ("keras", "tensorflow", "numpy", "h5py", "keras_hub", "kagglehub"):
        assert heavy not in modules, heavy


def test_the_app_starts_on_a_keras_hub_preset_without_importing_keras_hub(tmp_path: Path) -> None:
    # What a source is, a keras-hub preset folder included, is decided from the files alone.
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "config.json").write_text('{"registered_name": "keras_hub>BertBackbone"}')
    modules = _modules_after(
        "import kfreeze_tui.cli, kfreeze_tui.app\n"
        "from kfreeze_tui.core.model.source import SourceKind, resolve\n"
        f"assert resolve({str(preset)!r}).kind is SourceKind.PRESET_DIR\n"
        f"app = kfreeze_tui.app.make_app({str(preset)!r})"
    )
    for heavy in ("keras", "tensorflow", "keras_hub", "kagglehub"):
        assert heavy not in modules, heavy


def test_listing_the_cached_presets_imports_neither_keras_hub_nor_kagglehub(
    tmp_path: Path,
) -> None:
    # The picker's scan and `kfreeze models` look at the caches' folders only. The layout is
    # kagglehub's (test_hub.py lays it out with kagglehub's own code), written by hand here
    # so that this test runs without the extra.
    variation = tmp_path / "kagglehub" / "models" / "keras" / "bert" / "keras" / "bert_tiny"
    (variation / "3").mkdir(parents=True)
    (variation / "3" / "config.json").write_text('{"registered_name": "keras_hub>BertBackbone"}')
    (variation / "3.complete").write_text("")
    root = tmp_path / "work"
    (root / "preset").mkdir(parents=True)
    (root / "preset" / "config.json").write_text('{"registered_name": "keras_hub>BertBackbone"}')
    probe = (
        "import os, contextlib, io\n"
        f"os.environ['KAGGLEHUB_CACHE'] = {str(tmp_path / 'kagglehub')!r}\n"
        f"os.environ['HF_HUB_CACHE'] = {str(tmp_path / 'huggingface')!r}\n"
        "from pathlib import Path\n"
        "from kfreeze_tui.screens.picker import scan\n"
        "from kfreeze_tui.cli import run\n"
        f"found = scan(Path({str(root)!r}))\n"
        "assert [c.name for c in found.cached] == ['bert_tiny'], found\n"
        "assert [p.name for p in found.presets] == ['preset'], found\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out): assert run(['models']) == 0\n"
        "assert 'kaggle://keras/bert/keras/bert_tiny/3' in out.getvalue()\n"
    )
    modules = _modules_after(probe)
    assert "kfreeze_tui.cli.commands.models" in modules  # the command really ran
    for heavy in ("keras", "tensorflow", "keras_hub", "kagglehub"):
        assert heavy not in modules, heavy
