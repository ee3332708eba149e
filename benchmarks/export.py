"""Export with verification against a plain save and load of the same model, in one run.

    python benchmarks/export.py [--runs 3]

kfreeze's export saves to a temporary file, loads it back, compares layers, trainable states
and every weight, and renames it into place. The baseline is what a user would do by hand:
``model.save(path)`` then ``keras.saving.load_model(path)``. Target: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from kfreeze_tui.core.build import CompileSpec, build_model
from kfreeze_tui.core.export import ExportRequest, export
from kfreeze_tui.core.head import HeadSpec
from kfreeze_tui.core.loading import LoadOptions, load
from kfreeze_tui.core.plan import FreezePlan
from kfreeze_tui.core.runtime import import_keras
from kfreeze_tui.core.session import ModelSession


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    keras = import_keras()
    session = ModelSession(load("resnet50", LoadOptions(weights="none")))
    plan = FreezePlan(boundary=session.info.find("conv5_block1_1_conv").path)
    model = build_model(session.model, session.view, plan, HeadSpec(), CompileSpec())
    plain: list[float] = []
    kfreeze: list[float] = []
    with tempfile.TemporaryDirectory() as folder:

        def by_hand(path: Path) -> None:
            model.save(path)
            keras.saving.load_model(path)

        by_hand(Path(folder) / "warm-up.keras")  # the first load pays for tracing
        for i in range(runs):
            # Alternate which goes first, so that neither always runs on a warmer machine.
            order = [("plain", by_hand), ("kfreeze", lambda p: export(model, ExportRequest(p)))]
            for name, run in order if i % 2 == 0 else order[::-1]:
                # The models loaded by earlier runs are cyclic garbage: collect it now, or
                # the collection lands in whichever run comes next.
                gc.collect()
                start = time.perf_counter()
                run(Path(folder) / f"{name}{i}.keras")
                (plain if name == "plain" else kfreeze).append(time.perf_counter() - start)
    med = statistics.median
    print(f"runs: {runs} (medians), ResNet50 + head, {model.count_params():,} parameters")
    print(f"plain model.save + load_model:   {med(plain):6.2f} s")
    print(f"kfreeze export with verification: {med(kfreeze):6.2f} s")
    print(f"export / plain save+load = {med(kfreeze) / med(plain):.2f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
