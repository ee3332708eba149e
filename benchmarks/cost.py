"""The cost model's step estimate against real training steps, on this machine.

    python benchmarks/cost.py [--batch 8] [--rounds 2] [--gpu]

Builds ResNet50 (random weights), then times real training steps (Adam, synthetic data) with
the boundary at conv5_block1_1_conv (index 143) and with everything trainable, alternating
the two so that load on the machine hits both alike. Prints the predicted ``relative_step``
(the estimate's step FLOPs at 143 / with everything trainable), the measured ratio of
seconds per step, and how far apart they are (target: within 35 %).
"""

from __future__ import annotations

import argparse
import statistics

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.train.cost import TrainingSetup, cost_model
from kfreeze_tui.core.train.measure import measure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()

    loaded = load("resnet50", LoadOptions(weights="none", gpu=args.gpu))
    view = PlanView(walk(loaded.model))
    setup = TrainingSetup(batch=args.batch)
    at_143 = FreezePlan(boundary=view.info.find("conv5_block1_1_conv").path)
    everything = FreezePlan(boundary=view.first_path())
    predicted = cost_model(view).estimate(at_143, setup).relative_step
    times: dict[str, list[float]] = {"143": [], "all": []}
    for _ in range(args.rounds):
        times["143"].append(measure(loaded.model, view, at_143, setup, gpu=args.gpu).step_seconds)
        times["all"].append(
            measure(loaded.model, view, everything, setup, gpu=args.gpu).step_seconds
        )
    boundary, full = statistics.median(times["143"]), statistics.median(times["all"])
    measured = boundary / full
    device = "GPU" if args.gpu else "CPU"
    print(f"ResNet50, batch {args.batch}, Adam, {device}, medians of {args.rounds} rounds")
    print(f"step, boundary 143:      {boundary:.3f} s")
    print(f"step, everything trains: {full:.3f} s")
    print(f"predicted relative_step = {predicted:.2f}")
    print(f"measured step ratio     = {measured:.2f}")
    print(f"measured / predicted    = {measured / predicted:.2f}  (target within 0.65-1.35)")


if __name__ == "__main__":
    main()
