"""The check that a model trains exactly the weights a plan says: the variables Keras itself
reports as trainable after :func:`~kfreeze_tui.core.train.build.apply_freeze`, against the
plan view's own weights of every leaf that trains."""

from __future__ import annotations

import math
from typing import Any

from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.train.build import apply_freeze


def size(variables: Any) -> int:
    """The number of parameters in ``variables``."""
    return sum(math.prod(v.shape) for v in variables)


def assert_trains_as_planned(model: Any, view: PlanView, plan: FreezePlan, label: str) -> None:
    """Apply ``plan`` to ``model`` and check Keras's trainable weights are the planned ones,
    by path and in number."""
    apply_freeze(model, view, plan)
    planned = {
        w.name
        for row in view.leaves
        if view.leaf_trainable(plan, row.path)
        for w in row.own_weights
        if w.can_train
    }
    assert {v.path for v in model.trainable_weights} == planned, label
    assert view.totals(plan).trainable == size(model.trainable_weights), label
