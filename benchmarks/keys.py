"""CPU time per keypress in the explorer, on big models against VGG16, in one process.

    python benchmarks/keys.py [--presses 40]

For each model the real app is opened headless (App.run_test) and each key is pressed
--presses times; the CPU time (process_time) of handling the key and repainting is averaged.
Targets: the ratio to VGG16 <= 1.5 (the cost does not grow with the model) and under 8 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from textual.pilot import Pilot

from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions, load
from kfreeze_tui.core.runtime.process import RuntimeOptions, configure, import_keras
from kfreeze_tui.screens.explorer import ExplorerScreen

KEYS = ("down", "pagedown", "f", "right_square_bracket")
#: An unbound key: what a keypress costs the test harness and Textual before kfreeze acts.
FLOOR_KEY = "z"


def deep_model(layers: int = 3000) -> LoadedModel:
    keras = import_keras()
    inputs = keras.Input((8,))
    x = inputs
    for i in range(layers // 2):
        x = keras.layers.Dense(8, name=f"block{i}_dense")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    return LoadedModel(keras.Model(inputs, x), "deep", f"{layers} layers")


async def measure(loaded: LoadedModel, presses: int) -> dict[str, float]:
    app = make_app(loaded=loaded)
    results: dict[str, float] = {}
    # 20 lines: the tree shows 15 rows, fewer than VGG16's 26, so VGG16 scrolls and repaints
    # like the big models do; otherwise its page keys would have less to draw.
    async with app.run_test(size=(120, 20)) as pilot:
        while not isinstance(app.screen, ExplorerScreen):
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        table = app.screen.table  # type: ignore[attr-defined]
        for key in (FLOOR_KEY, *KEYS):
            total = 0.0
            await pilot.press("home")
            for _ in range(presses):
                # Every timed press does real work: nothing is timed at the end of the tree
                # (VGG16 reaches it after a page) or on an f that does not move the boundary.
                if key == "f":
                    await press_and_paint(pilot, "down")
                at_end = table.cursor >= table.row_count - 1
                stuck = key == "right_square_bracket" and _no_next_stage(table)
                if key in ("down", "pagedown", "right_square_bracket") and (at_end or stuck):
                    await press_and_paint(pilot, "home")
                start = time.process_time()
                await press_and_paint(pilot, key)
                total += time.process_time() - start
            results[key] = total / presses * 1000
    return results


def _no_next_stage(table: object) -> bool:
    layer = table.current_layer  # type: ignore[attr-defined]
    position = table.view.span(layer.path)[0]  # type: ignore[attr-defined]
    return all(start <= position for start in table._stage_starts)  # type: ignore[attr-defined]


async def press_and_paint(pilot: Pilot, key: str) -> None:
    await pilot.press(key)
    await pilot.pause()  # let the repaint happen


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="median over this many rounds")
    arguments = parser.parse_args()
    presses = arguments.presses
    # The process is the benchmark's own, as the kfreeze command's is: its settings (room for
    # the 3,000-layer model's recursion) are taken as the command takes them.
    configure(RuntimeOptions())
    models = {
        "VGG16 (20 layers)": load("vgg16", LoadOptions(weights="none")),
        "EfficientNetV2L (1028 layers)": load("efficientnetv2l", LoadOptions(weights="none")),
        "3,000-layer model": deep_model(),
    }
    measured: dict[str, dict[str, float]] = {}
    for name, loaded in models.items():
        rounds = [await measure(loaded, presses) for _ in range(arguments.rounds)]
        measured[name] = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    baseline = measured["VGG16 (20 layers)"]
    print(
        f"CPU ms per keypress (mean of {presses} presses, median of {arguments.rounds} rounds), "
        "ratio to VGG16 in brackets"
    )
    print(f"{'model':32}{'no-op key':>12}" + "".join(f"{key:>22}" for key in KEYS))
    for name, results in measured.items():
        cells = "".join(
            f"{results[key]:>12.2f} ms ({results[key] / baseline[key]:4.2f})" for key in KEYS
        )
        print(f"{name:32}{results[FLOOR_KEY]:>9.2f} ms{cells}")
    worst_ratio = max(results[key] / baseline[key] for results in measured.values() for key in KEYS)
    worst_ms = max(results[key] for results in measured.values() for key in KEYS)
    print(
        f"worst ratio to VGG16 = {worst_ratio:.2f} (target <= 1.5); "
        f"worst = {worst_ms:.2f} ms (target < 8 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
