"""How long the layer walk takes on the largest catalog model, against a bare loop.

The baseline is the least a user script does to list layers: read each layer's name, class,
output shape and parameter count. kfreeze's walk also derives trainable state from the
model's weights, inbound layers, stages and blocks, and keeps weight metadata.

    python benchmarks/walk.py [ARCH]

Prints the median walk time, the baseline's, their ratio, and the ratio to the 50 ms target.
"""

from __future__ import annotations

import statistics
import sys
import time

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions, load

TARGET_MS = 50.0


def baseline(model: object) -> list[tuple[str, str, object, int]]:
    return [
        (layer.name, type(layer).__name__, layer.output.shape, layer.count_params())
        for layer in model.layers  # type: ignore[attr-defined]
    ]


def median_ms(fn: object, arg: object, repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg)  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    arch = sys.argv[1] if len(sys.argv) > 1 else "EfficientNetV2L"
    model = load(arch, LoadOptions(weights="none")).model
    walk(model)  # warm up
    walk_ms = median_ms(walk, model)
    base_ms = median_ms(baseline, model)
    print(f"model: {arch} ({len(model.layers)} layers)")
    print(f"walk:      {walk_ms:8.1f} ms (median of 15)")
    print(f"baseline:  {base_ms:8.1f} ms (name, class, output shape, count_params per layer)")
    print(f"walk / baseline      = {walk_ms / base_ms:.2f}")
    print(f"walk / {TARGET_MS:.0f} ms target = {walk_ms / TARGET_MS:.2f} (<= 1 meets the target)")


if __name__ == "__main__":
    main()
