"""keras-hub parity: kfreeze's ``attention`` preset on tiny BERT, Gemma and ViT backbones counts
what keras-hub's own ``backbone.enable_lora(rank)`` leaves trainable (boundary None: everything
else frozen), and kfreeze's apply_lora leaves the same weights trainable."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

keras_hub = pytest.importorskip("keras_hub")

import hub_presets  # noqa: E402

from kfreeze_tui.core.model.layers import walk  # noqa: E402
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView  # noqa: E402
from kfreeze_tui.core.plan.lora import LoraSpec  # noqa: E402
from kfreeze_tui.core.train.build import apply_freeze, apply_lora  # noqa: E402

RANK = 4


def _size(variables: Any) -> int:
    unique = {id(v): v for v in variables}
    return sum(math.prod(int(d) for d in v.shape) for v in unique.values())


def _shapes(variables: Any) -> Counter[tuple[int, ...]]:
    return Counter(tuple(int(d) for d in v.shape) for v in variables)


@pytest.mark.parametrize(
    "build", [hub_presets.bert, hub_presets.gemma, hub_presets.vit], ids=["bert", "gemma", "vit"]
)
def test_attention_preset_equals_keras_hub_enable_lora(
    keras: Any, build: Callable[[], Any]
) -> None:
    ours = build()
    view = PlanView(walk(ours))
    plan = FreezePlan(boundary=None, lora=LoraSpec(RANK, "attention"))
    oracle = build()
    oracle.enable_lora(RANK)
    adapters_a = [v for v in oracle.trainable_weights if v.path.endswith("lora_kernel_a")]
    assert adapters_a  # keras-hub found its targets in this backbone
    assert plan.lora is not None
    assert len(view.lora_positions(plan.lora)) == len(adapters_a)
    totals = view.totals(plan)
    assert totals.trainable == _size(oracle.trainable_weights)
    assert totals.total == oracle.count_params()
    # The plan applied to a model: the same weights train as keras-hub's leave trainable.
    apply_freeze(ours, view, plan)
    apply_lora(ours, view, plan)
    assert _shapes(ours.trainable_weights) == _shapes(oracle.trainable_weights)
    assert ours.count_params() == oracle.count_params()
