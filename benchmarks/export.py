"""Export with its proof against the same checks done by hand, in one run.

    python benchmarks/export.py [--runs 3]

kfreeze's export saves to a temporary file, loads it back, compares layers, trainable states
and every weight, trains the loaded copy one step on a synthetic batch (frozen weights must
not move, trainable ones must), and renames the file into place. The baseline is what a
careful user does by hand to trust a file: ``model.save(path)``, ``keras.saving.load_model``
and one ``train_on_batch`` on a batch of the same size. That step is traced into a graph
first, as Keras does by default, which costs more than the step itself; kfreeze runs its step
eagerly, so the stricter baseline is the same by hand with ``run_eagerly=True``, and the
target holds against both. Both save the same state: the
optimizer is built before the runs (kfreeze builds it before saving, so that a load is
silent; a user who wants the same builds it too). Target: ratio <= 1.15.

For reference it also prints a bare ``model.save`` and ``load_model``, without a step.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.runtime.process import import_keras
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.build import build_model
from kfreeze_tui.core.train.check import STEP_BATCH, synthetic_batch
from kfreeze_tui.core.train.export import ExportRequest, export


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    keras = import_keras()
    session = ModelSession(load("resnet50", LoadOptions(weights="none")))
    plan = FreezePlan(boundary=session.info.find("conv5_block1_1_conv").path)
    model = build_model(session.model, session.view, plan, HeadSpec(), CompileSpec())
    model.optimizer.build(model.trainable_variables)
    x, y = synthetic_batch(model, STEP_BATCH)

    def save_load(path: Path) -> Any:
        model.save(path)
        return keras.saving.load_model(path)

    def by_hand(path: Path) -> None:
        save_load(path).train_on_batch(x, y)

    def by_hand_eager(path: Path) -> None:
        loaded = save_load(path)
        loaded.run_eagerly = True
        loaded.train_on_batch(x, y)

    def kfreeze(path: Path) -> None:
        export(model, ExportRequest(path))

    ways: dict[str, Callable[[Path], Any]] = {
        "save+load": save_load,
        "by hand": by_hand,
        "by hand, eager": by_hand_eager,
        "kfreeze": kfreeze,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as folder:
        by_hand(Path(folder) / "warm-up.keras")  # the first load and step pay for imports
        kfreeze(Path(folder) / "warm-up-kfreeze.keras")
        order = list(ways.items())
        for i in range(runs):
            # Rotate which goes first, so that none always runs on a warmer machine.
            for name, run in order[i % len(order) :] + order[: i % len(order)]:
                # The models loaded by earlier runs are cyclic garbage: collect it now, or
                # the collection lands in whichever run comes next.
                gc.collect()
                start = time.perf_counter()
                run(Path(folder) / f"{name.replace(' ', '_')}{i}.keras")
                times[name].append(time.perf_counter() - start)
        size = (Path(folder) / "kfreeze0.keras").stat().st_size
    med = {name: statistics.median(values) for name, values in times.items()}
    trainable = sum(int(keras.ops.size(v)) for v in model.trainable_variables)
    print(
        f"runs: {runs} (medians), ResNet50 + head, {model.count_params():,} parameters, "
        f"{trainable:,} trainable; the file (with Adam's state) {size / 1e6:.1f} MB"
    )
    print(f"model.save + load_model:                        {med['save+load']:6.2f} s")
    print(f"by hand: save + load_model + train_on_batch:    {med['by hand']:6.2f} s")
    print(f"the same, the step run eagerly:                 {med['by hand, eager']:6.2f} s")
    print(f"kfreeze export with verification and one step: {med['kfreeze']:6.2f} s")
    print(
        f"export / by hand = {med['kfreeze'] / med['by hand']:.2f}, "
        f"export / by hand eagerly = {med['kfreeze'] / med['by hand, eager']:.2f}  "
        f"(target <= 1.15); export / save+load = {med['kfreeze'] / med['save+load']:.2f}"
    )


if __name__ == "__main__":
    main()
