"""Regenerate the README's screenshots (SVG) from the real app, headless.

    python scripts/screenshots.py         # all of them
    python scripts/screenshots.py lora    # only screenshots/lora.svg (needs keras-hub)

Builds ResNet50 with random weights (nothing is downloaded), opens it through make_app()
and saves what the terminal would show after the same key presses a user would make.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from kfreeze_tui import scenarios
from kfreeze_tui.app import KFreezeApp, make_app
from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions, load
from kfreeze_tui.core.runtime.process import import_keras

OUT = Path(__file__).resolve().parents[1] / "screenshots"


async def export_result(pilot: Pilot) -> None:
    from kfreeze_tui.screens.export import ExportRunScreen

    await scenarios.boundary_at_143(pilot)
    await pilot.press("e")
    await pilot.pause(0.3)
    await pilot.press("enter")
    await scenarios.until(pilot, lambda: isinstance(pilot.app.screen, ExportRunScreen))
    await scenarios.until(pilot, lambda: pilot.app.screen.done, timeout=180)


async def shoot(
    name: str, app: KFreezeApp, size: tuple[int, int], steps: Callable[[Pilot], Awaitable[None]]
) -> None:
    async with app.run_test(size=size) as pilot:
        await steps(pilot)
        await pilot.pause(0.3)
        app.save_screenshot(str(OUT / f"{name}.svg"))
    print(f"screenshots/{name}.svg")


def legacy_file(folder: Path) -> Path:
    """The tests' MobileNet-style file, written by tf_keras (the test extra has it)."""
    maker = Path(__file__).resolve().parents[1] / "tests" / "legacy" / "make_files.py"
    subprocess.run([sys.executable, str(maker), str(folder)], check=True, capture_output=True)
    return folder / "mobile.h5"


def resnet_with_fixed_names() -> LoadedModel:
    keras = import_keras()
    inputs = keras.Input((224, 224, 3), name="input_layer")
    model = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inputs)
    folder = Path(tempfile.mkdtemp())
    path = folder / "resnet50.keras"
    model.save(path)
    return load(str(path))


def bert_tiny_shaped() -> LoadedModel | None:
    """A BERT backbone of bert_tiny_en_uncased's shape, random weights, built offline from
    constructor arguments (None without keras-hub, the optional extra)."""
    try:
        import keras_hub
    except ImportError:
        return None
    import_keras()
    model = keras_hub.models.BertBackbone(
        vocabulary_size=30522,
        num_layers=2,
        num_heads=2,
        hidden_dim=128,
        intermediate_dim=512,
        max_sequence_length=512,
    )
    return LoadedModel(model=model, source="bert_tiny_en_uncased", description="BertBackbone")


async def lora_shots() -> None:
    """The LoRA screenshot (``python scripts/screenshots.py lora`` makes it alone)."""
    OUT.mkdir(exist_ok=True)
    bert = bert_tiny_shaped()
    if bert is None:
        print("keras-hub is not installed: no screenshots/lora.svg")
        return
    await shoot("lora", make_app(loaded=bert), (130, 44), scenarios.lora_bert)


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    await lora_shots()
    resnet = resnet_with_fixed_names()
    await shoot("explorer", make_app(loaded=resnet), (120, 36), scenarios.boundary_at_143)
    await shoot("split-cut", make_app(loaded=resnet), (120, 36), scenarios.split_cut)
    await shoot("filter", make_app(loaded=resnet), (120, 36), scenarios.filtered)
    await shoot("detail", make_app(loaded=resnet), (120, 40), scenarios.detail)
    # As `kfreeze resnet50 --weights none` opens it: the header says RANDOM WEIGHTS.
    random = load("resnet50", LoadOptions(weights="none"))
    await shoot("explorer-80x24", make_app(loaded=random), (80, 24), scenarios.boundary_at_143)
    await shoot("head-pane", make_app(loaded=resnet), (130, 40), scenarios.head_pane)
    await shoot("phases", make_app(loaded=resnet), (130, 44), scenarios.phases)
    await shoot("phases-dialog", make_app(loaded=resnet), (130, 44), scenarios.phases_dialog)
    with tempfile.TemporaryDirectory() as folder:
        legacy = legacy_file(Path(folder))
        app = make_app(str(legacy), LoadOptions(weights="none"), use_cache=False)
        await shoot("repairs", app, (110, 24), scenarios.repairs)
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        await shoot("export-result", make_app(loaded=resnet), (120, 36), export_result)
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)
        # The picker lists the keras-hub presets in the local caches: none, whoever runs this.
        os.environ["KAGGLEHUB_CACHE"] = os.path.join(empty, ".kagglehub")
        os.environ["HF_HUB_CACHE"] = os.path.join(empty, ".huggingface")
        await shoot(
            "picker",
            make_app(options=LoadOptions(weights="none"), root=Path(empty)),
            (100, 30),
            scenarios.picker,
        )
        await shoot(
            "error", make_app("missing.keras", root=Path(empty)), (100, 30), scenarios.error
        )


if __name__ == "__main__":
    asyncio.run(lora_shots() if sys.argv[1:] == ["lora"] else main())
