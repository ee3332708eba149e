"""Non-interactive output of a walked model: the rich table and the JSON document.

Works on :class:`~kfreeze_tui.core.model.layers.ModelInfo` only, so it never touches Keras.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, call_inputs
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView


def select(
    info: ModelInfo, pattern: re.Pattern[str] | None, expand_nested: bool
) -> list[LayerInfo]:
    """The rows to show.

    Args:
        info: the walked model.
        pattern: keep rows whose name or type it matches (``re.search``); None keeps all.
        expand_nested: include the layers of nested models after their container.

    Returns:
        The rows, in walk order.
    """
    rows = info.layers if expand_nested else info.top_level
    if pattern is None:
        return list(rows)
    return [row for row in rows if pattern.search(row.name) or pattern.search(row.class_name)]


def totals_text(info: ModelInfo) -> str:
    """``Total params: 23,587,712 · trainable: ... (99.8%) · non-trainable: ...``."""
    return (
        f"Total params: {info.total_params:,} · "
        f"trainable: {info.trainable_params:,} ({info.trainable_fraction:.1%}) · "
        f"non-trainable: {info.non_trainable_params:,}"
    )


def lora_state(row: LayerInfo, view: PlanView | None, plan: FreezePlan | None) -> str:
    """``on``, ``off`` or ``unsupported``: under ``plan``, or as loaded without one."""
    if view is not None and plan is not None and plan.lora is not None:
        return view.lora_state(plan, row.path)
    if not row.lora_supported:
        return "unsupported"
    return "on" if row.lora_enabled else "off"


def _lora_cell(state: str) -> Text:
    style = {"on": "magenta", "off": "", "unsupported": "dim"}[state]
    return Text({"unsupported": "–"}.get(state, state), style=style)


def _trainable_cell(row: LayerInfo) -> Text:
    if not row.has_weights:
        return Text("–", style="dim")
    if row.is_container and 0 < row.trainable_params < row.params:
        return Text(f"partly ({row.trainable_params:,})", style="yellow")
    # A BatchNormalization layer's moving statistics are never trainable; its gamma and
    # beta decide whether the layer is.
    return Text("yes", style="green") if row.trainable else Text("no", style="red")


def layer_table(
    info: ModelInfo,
    rows: list[LayerInfo],
    expand_nested: bool,
    width: int | None = None,
    view: PlanView | None = None,
    plan: FreezePlan | None = None,
) -> Group:
    """A table of ``rows`` (a section line between stages) and the model's totals.

    On a terminal too narrow for every column, the type column goes first, then the stage
    (as in the explorer): Rich would otherwise squeeze the one column that folds, the name,
    to nothing.

    Args:
        info: the walked model (for the title and totals).
        rows: the rows to show, from :func:`select`.
        expand_nested: show paths (``0.143``) rather than plain indices.
        width: the columns the table may take (None: no limit).
        view: the model's plan view, with ``plan``: a LoRA column and the headline.
        plan: the plan (with LoRA) to show.

    Returns:
        Something a rich Console can print.
    """
    with_lora = view is not None and plan is not None and plan.lora is not None
    table = Table(
        title=f"{info.description}",
        title_justify="left",
        header_style="bold",
        expand=False,
    )
    cells = [
        (
            row.path_text if expand_nested else str(row.index),
            Text("  " * row.depth + row.name, style="bold" if row.is_container else ""),
            row.class_name,
            row.output_shape_text,
            f"{row.params:,}",
            _trainable_cell(row) if not with_lora else _planned_cell(row, view, plan),
            str(row.stage),
            *([_lora_cell(lora_state(row, view, plan))] if with_lora else []),
        )
        for row in rows
    ]
    headers = ["path" if expand_nested else "index", "name", "type", "output shape"]
    headers += ["params", "trainable", "stage"]
    if with_lora:
        headers.append("lora")
    columns = _columns_that_fit(headers, cells, width, drop_first=("type", "stage"))
    for header in headers:
        if header in columns:
            right = header in ("index", "path", "params", "stage")
            table.add_column(
                header,
                justify="right" if right else "left",
                no_wrap=header != "name",
                overflow="fold" if header == "name" else "ellipsis",
            )
    previous: tuple[tuple[int, ...], int] | None = None
    for row, row_cells in zip(rows, cells, strict=True):
        key = (row.parent_path, row.stage)
        if previous is not None and row.depth == 0 and key != previous:
            table.add_section()
        if row.depth == 0:
            previous = key
        table.add_row(*(c for h, c in zip(headers, row_cells, strict=True) if h in columns))
    footer = [Text(totals_text(info))]
    if with_lora:
        assert view is not None and plan is not None
        footer.append(Text(view.totals(plan).headline))
    shown = len(rows)
    available = len(info.layers if expand_nested else info.top_level)
    if shown != available:
        footer.insert(0, Text(f"{shown} of {available} layers match", style="dim"))
    return Group(table, *footer)


def _planned_cell(row: LayerInfo, view: PlanView | None, plan: FreezePlan | None) -> Text:
    """The trainable cell under a plan: the layer's parameters that train (LoRA counted)."""
    assert view is not None and plan is not None
    if not row.has_weights:
        return Text("–", style="dim")
    count = view.trainable_in(plan, row.path)
    return Text(f"{count:,}", style="green" if count else "red")


def _columns_that_fit(
    headers: list[str],
    cells: list[tuple[str | Text, ...]],
    width: int | None,
    drop_first: tuple[str, ...],
) -> set[str]:
    """The columns to show in ``width``: all, or all but the first of ``drop_first`` that
    have to go for the rest to fit at their natural widths (a column takes its widest cell,
    one space each side and one border)."""
    shown = set(headers)
    if width is None:
        return shown
    natural = {
        header: max([len(header)] + [len(str(row[i])) for row in cells]) + 3
        for i, header in enumerate(headers)
    }
    for header in drop_first:
        if sum(natural[h] for h in shown) + 1 <= width:
            break
        shown.discard(header)
    return shown


def _json_shape(shapes: tuple[tuple[int | None, ...], ...]) -> Any:
    if len(shapes) == 1:
        return list(shapes[0])
    return [list(shape) for shape in shapes]


def _calls(row: LayerInfo) -> list[dict[str, Any]]:
    """Each call of the layer (a shared layer has several): what it reads, what it makes."""
    outputs = [call.output_shapes for call in row.calls] or [row.output_shapes]
    return [
        {"inbound": list(inputs), "output_shape": _json_shape(shapes)}
        for inputs, shapes in zip(call_inputs(row), outputs, strict=True)
    ]


def layers_document(
    info: ModelInfo,
    rows: list[LayerInfo],
    view: PlanView | None = None,
    plan: FreezePlan | None = None,
) -> dict[str, Any]:
    """The ``kfreeze layers --json`` document.

    Args:
        info: the walked model.
        rows: the rows to include.
        view: the model's plan view, with ``plan`` (LoRA): counts under the plan.
        plan: the plan whose LoRA the counts include.

    Returns:
        A JSON-serialisable dict.
    """
    total, trainable = info.total_params, info.trainable_params
    lora: dict[str, Any] | None = None
    if view is not None and plan is not None and plan.lora is not None:
        from kfreeze_tui.core.plan.lora import unsupported

        totals = view.totals(plan)
        total, trainable = totals.total, totals.trainable
        coverage = view.coverage()
        lora = {
            "rank": plan.lora.rank,
            "targets": plan.lora.targets,
            "layers": len(view.lora_positions(plan.lora)),
            "adapter_params": view.adapters(plan),
            "coverage": round(coverage.fraction, 4),
            "unsupported": [row.name for row in unsupported(view.leaves, plan.lora)],
        }
    document: dict[str, Any] = {
        "model": info.name,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "layers": [
            {
                "index": row.index,
                "path": list(row.path),
                "name": row.name,
                "type": row.class_name,
                "output_shape": _json_shape(row.output_shapes),
                "params": row.params,
                "trainable": row.trainable
                if lora is None or view is None or plan is None or row.is_container
                else view.leaf_trainable(plan, row.path),
                "lora": lora_state(row, view, plan),
                "stage": row.stage,
                "stage_name": row.stage_name,
                "block": row.block,
                "inbound": list(row.inbound),
                "calls": _calls(row),
            }
            for row in rows
        ],
    }
    if lora is not None:
        document["lora"] = lora
    return document


def _cache_cell(found: dict[str, Any] | None) -> str:
    """``784 KiB/ex 6.8x`` for a row whose features can be cached, ``-`` otherwise."""
    from kfreeze_tui.core.train.cost import human_bytes

    if not found or not found["cacheable"]:
        return "-"
    speedup = found.get("speedup_estimate")
    return f"{human_bytes(found['bytes_per_example'])}/ex" + (f" {speedup:.1f}x" if speedup else "")


def cost_table(title: str, documents: list[dict[str, Any]]) -> Any:
    """``kfreeze cost`` as a table: one row per boundary."""
    from rich.table import Table

    from kfreeze_tui.core.train.cost import human_bytes, human_flops

    table = Table(title=title, title_justify="left")
    table.add_column("boundary")
    table.add_column("trainable", justify="right")
    for name in ("weights", "gradients", "optimizer", "activations", "total"):
        table.add_column(name, justify="right")
    table.add_column("step", justify="right")
    table.add_column("vs full", justify="right")
    if any("measured" in doc for doc in documents):
        table.add_column("measured", justify="right")
    cache = any("feature_cache" in doc for doc in documents)
    if cache:
        table.add_column("cache", justify="right")
    for doc in documents:
        where = doc["label"]
        if doc["boundary_index"] is not None and where == doc["boundary_name"]:
            where = f"{doc['boundary_index']} {where}"
        memory = doc["memory"]
        cells = [
            where,
            f"{doc['trainable_params']:,}",
            *(human_bytes(memory[k]) for k in ("weights", "gradients", "optimizer", "activations")),
            human_bytes(memory["total"]),
            human_flops(doc["flops"]["forward"] + doc["flops"]["backward"]),
            f"{doc['relative_step']:.2f}x",
        ]
        if "measured" in doc:
            cells.append(f"{doc['measured']['step_seconds']:.3f} s" if doc.get("measured") else "")
        if cache:
            cells.append(_cache_cell(doc.get("feature_cache")))
        table.add_row(*cells)
    return table
