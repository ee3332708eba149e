"""A ready-to-paste plain-Keras snippet that applies a freeze plan.

It freezes by index (``for layer in base.layers[:143]``), which is what people write, and
says the same by name, which survives a model whose layer order changes. Pure text from the
walked model and the plan: no Keras needed.
"""

from __future__ import annotations

from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView


def _container_expr(path: tuple[int, ...]) -> str:
    expr = "model"
    for index in path:
        expr += f".layers[{index}]"
    return expr


def freeze_snippet(view: PlanView, plan: FreezePlan) -> str:
    """Python lines that give a model the trainable state ``plan`` describes.

    Args:
        view: the walked model's plan view.
        plan: the plan.

    Returns:
        The snippet, ending in a newline. It uses the names ``model`` (the loaded model) and
        ``keras``.
    """
    boundary = view.boundary_layer(plan)
    lines = ["import keras", ""]
    if boundary is None:
        lines += [
            "# kfreeze: freeze every layer",
            "model.trainable = False",
        ]
        return "\n".join(lines) + "\n"
    parent = boundary.parent_path
    base = _container_expr(parent)
    lines.append(
        f"# kfreeze: freeze every layer before {boundary.name} "
        f"(index {boundary.index}{' of ' + base if parent else ''})"
    )
    # Off, then on: Keras runs no setter when a flag does not change, and a layer frozen
    # before would stay frozen inside a model already trainable.
    reset = ["# every layer trainable first (off, then on: Keras skips an unchanged flag)"]
    if parent:
        lines += [f"base = {base}", *reset, "model.trainable = False", "model.trainable = True"]
        # Layers of the outer model before the container are frozen too.
        outer = [row for row in view.info.top_level if row.index < parent[0]]
        if outer:
            lines.append(f"for layer in model.layers[:{parent[0]}]:")
            lines.append("    layer.trainable = False")
    else:
        lines += ["base = model", *reset, "base.trainable = False", "base.trainable = True"]
    lines += [
        f"for layer in base.layers[:{boundary.index}]:",
        "    layer.trainable = False",
        "# The same by name, which survives a change in layer order:",
        f'# boundary = [layer.name for layer in base.layers].index("{boundary.name}")',
        "# for layer in base.layers[:boundary]:",
        "#     layer.trainable = False",
    ]
    if plan.bn_policy is BNPolicy.FROZEN and view.batch_norms_after_boundary(plan):
        lines += [
            "",
            "# Keep BatchNormalization frozen (inference mode) after the boundary too:",
            f"for layer in base.layers[{boundary.index}:]:",
            "    if isinstance(layer, keras.layers.BatchNormalization):",
            "        layer.trainable = False",
        ]
        after = [
            row
            for row in view.info.top_level
            if parent and row.index > parent[0] and row.is_batch_norm
        ]
        if after:  # the outer model's own, after the nested base
            lines += [
                f"for layer in model.layers[{parent[0] + 1}:]:",
                "    if isinstance(layer, keras.layers.BatchNormalization):",
                "        layer.trainable = False",
            ]
    if plan.exceptions:
        lines += ["", "# Exceptions to the boundary:"]
        for path in sorted(plan.exceptions):
            row = view.info.layer(path)
            state = view.leaf_trainable(plan, path)
            owner = _container_expr(row.parent_path)
            lines.append(f'{owner}.get_layer("{row.name}").trainable = {state}')
    lines += ["", "# Recompile after changing trainable: compile() captures it."]
    return "\n".join(lines) + "\n"
