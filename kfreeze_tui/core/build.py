"""Applying a plan to a Keras model.

Keras's ``trainable`` setter on a container overwrites the flag of every layer inside it, so
containers are set first (outermost first) and their layers after. A container is trainable
when any layer inside it trains; otherwise Keras would hide its trainable layers from
``trainable_weights``. A frozen BatchNormalization layer runs in inference mode in Keras 3.
"""

from __future__ import annotations

from typing import Any

from kfreeze_tui.core.plan import FreezePlan, PlanView


def layer_at(model: Any, path: tuple[int, ...]) -> Any:
    """The Keras layer at a walk path (``(0, 143)``: layer 143 of the model's layer 0)."""
    layer = model
    for index in path:
        layer = layer.layers[index]
    return layer


def apply_freeze(model: Any, view: PlanView, plan: FreezePlan) -> None:
    """Set every layer's ``trainable`` flag of ``model`` as ``plan`` says.

    Recompile the model afterwards: ``compile()`` captures which weights are trainable.

    Args:
        model: the Keras model ``view`` was walked from (changed in place).
        view: the walked model's plan view.
        plan: the plan to apply.
    """
    model.trainable = True
    containers = sorted(
        (row for row in view.info.layers if row.is_container), key=lambda row: row.depth
    )
    for row in containers:
        start, end = view.span(row.path)
        layer_at(model, row.path).trainable = any(
            view.leaf_trainable(plan, view.leaves[i].path) for i in range(start, end)
        )
    for leaf in view.leaves:
        layer_at(model, leaf.path).trainable = view.leaf_trainable(plan, leaf.path)
