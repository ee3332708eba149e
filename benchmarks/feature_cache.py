"""Training from cached features against training the whole model, side by side in one run.

    python benchmarks/feature_cache.py [--images 512] [--epochs 10] [--size 96] [--repeats 3]

MobileNetV2 (alpha 1.0, weights=None) at 96 px with the whole base frozen and the default head
(the seed's plan), exported with ``--cache-features``; 512 synthetic images in batches of 32;
one CPU thread. Both sides use the exported script's own functions, each on a fresh copy of
the script's model: without the cache, ``train(ds, epochs=10)`` (the frozen base runs every
epoch); with it, ``cache_features(ds, dir)`` once, then ``train(ds, epochs=10, cache_dir=dir)``.
Every time counts: tracing, the feature pass, reading the cache.

The two sides run in turn ``--repeats`` times (each a fresh model and cache), so that a pause
of this shared machine falls on one pair, not on the figure. Prints the first pair's epochs,
each pair's totals and ratios, then the medians: ``per-epoch speedup`` (median epoch, the
first left out: it traces the step) and ``end-to-end speedup (10 epochs)`` (the feature pass
included). Goal: >= 5x.
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import numpy as np

    from kfreeze_tui.core.model.loading import LoadOptions, load
    from kfreeze_tui.core.plan.freeze import FreezePlan
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.session import ModelSession
    from kfreeze_tui.core.train.export import ExportRequest

    options = LoadOptions(weights="none", input_shape=(args.size, args.size, 3))
    folder = Path(tempfile.mkdtemp(prefix="kfreeze-cache-bench-"))
    session = ModelSession(load("mobilenetv2", options))
    request = ExportRequest(folder / "ft.keras", script_path=folder / "ft.py", cache_features=True)
    head = HeadSpec(classes=10)
    session.export(options, FreezePlan(boundary=None), head, CompileSpec(), request)

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.images, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 10, args.images)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.times.append(time.perf_counter() - self.start)

    def run(cached: bool, cache_dir: Path) -> tuple[list[float], float, float]:
        script = runpy.run_path(str(folder / "ft.py"))  # a fresh model
        timer = EpochTimes()
        start = time.perf_counter()
        feature_pass = 0.0
        if cached:
            script["cache_features"](ds, cache_dir, verbose=False)
            feature_pass = time.perf_counter() - start
        use = cache_dir if cached else None
        script["train"](ds, epochs=args.epochs, callbacks=[timer], verbose=0, cache_dir=use)
        return timer.times, feature_pass, time.perf_counter() - start

    print(
        f"MobileNetV2 {args.size}px, whole base frozen, {args.images} images, batch 32, "
        "1 CPU thread"
    )
    end_to_end: list[float] = []
    per_epoch: list[float] = []
    for repeat in range(1, args.repeats + 1):
        whole, _, whole_total = run(cached=False, cache_dir=folder)
        top, feature_pass, cached_total = run(cached=True, cache_dir=folder / f"cache{repeat}")
        if repeat == 1:
            print("epoch  without cache  with cache")
            for i, (a, b) in enumerate(zip(whole, top, strict=True), start=1):
                print(f"{i:5d}  {a:12.3f}s  {b:9.3f}s")
        end_to_end.append(whole_total / cached_total)
        per_epoch.append(statistics.median(whole[1:]) / statistics.median(top[1:]))
        print(
            f"pair {repeat}: {whole_total:.2f}s without cache, {cached_total:.2f}s with it "
            f"(feature pass {feature_pass:.2f}s): end to end {end_to_end[-1]:.1f}x, "
            f"per epoch {per_epoch[-1]:.1f}x"
        )
    print(f"per-epoch speedup = {statistics.median(per_epoch):.1f}")
    print(f"end-to-end speedup ({args.epochs} epochs) = {statistics.median(end_to_end):.1f}")


if __name__ == "__main__":
    main()
