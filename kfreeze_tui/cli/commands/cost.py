"""``kfreeze cost MODEL``: training memory and step FLOPs at every stage start (or one
boundary), as a table or JSON. The pricing is the core's
(:func:`~kfreeze_tui.core.train.cost.price_stages`); this module says it."""

from __future__ import annotations

import argparse
from typing import Any

import kfreeze_tui.cli.report as report
from kfreeze_tui.cli.arguments import check_lora, load_options_from, lora_spec_from
from kfreeze_tui.cli.output import EXIT_OK, note, print_json, stdout_console, warn
from kfreeze_tui.core.errors import UsageError


def run(args: argparse.Namespace) -> int:
    """Price the boundaries asked for, and measure them with ``--measure``."""
    from kfreeze_tui.core.plan.freeze import BNPolicy
    from kfreeze_tui.core.runtime import gpus
    from kfreeze_tui.core.session import open_session
    from kfreeze_tui.core.train.cost import (
        DtypePolicy,
        Optimizer,
        TrainingSetup,
        model_dtype,
        price_feature_cache,
        price_stages,
    )

    if args.batch < 1:
        raise UsageError(f"--batch {args.batch} must be a positive number of examples")
    if args.examples < 1:
        raise UsageError(f"--examples {args.examples} must be a positive number of examples")
    if args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs} must be a positive number of epochs")
    lora = lora_spec_from(args)
    session = open_session(args.model, load_options_from(args), use_cache=not args.no_cache)
    for warning in session.warnings:
        warn(warning)
    check_lora(lora, session.view)
    if args.dtype is None:
        dtype, dtype_why = model_dtype(session.info)
    else:
        dtype, dtype_why = DtypePolicy(args.dtype), "--dtype"
    setup = TrainingSetup(batch=args.batch, optimizer=Optimizer(args.optimizer), dtype=dtype)
    policy = BNPolicy(args.bn)
    if args.freeze_before is not None:
        rows = [_price_boundary(session, args.freeze_before, setup, policy, lora)]
    else:
        # A file (an export, a checkpoint) trains as it was saved unless told otherwise.
        as_loaded = session.architecture is None
        rows = price_stages(session.view, setup, policy, as_loaded=as_loaded, lora=lora)
    documents = [row.to_json(session.info) for row in rows]
    for row, document in zip(rows, documents, strict=True):
        document["feature_cache"] = price_feature_cache(
            session.view, row.plan, args.examples, args.epochs, session.head
        )
    if args.measure:
        _measure(session, rows, setup, documents, args.gpu)
    found = gpus.query()
    if args.json:
        _print_document(session, setup, dtype_why, policy, rows, documents, found)
    else:
        _print_table(session, setup, dtype_why, rows, documents, found)
    return EXIT_OK


def _price_boundary(session: Any, text: str, setup: Any, policy: Any, lora: Any) -> Any:
    """``--freeze-before``: that boundary alone ('all': the head only)."""
    from kfreeze_tui.core.model.names import parse_layer_ref
    from kfreeze_tui.core.train.cost import price_boundary

    notes: list[str] = []
    text = text.strip()
    path = None if text.lower() == "all" else parse_layer_ref(session.info, text, notes)
    for found in notes:
        note(f"--freeze-before {found}")
    return price_boundary(session.view, path, setup, policy, lora)


def _measure(
    session: Any, rows: list[Any], setup: Any, documents: list[dict[str, Any]], gpu: bool
) -> None:
    """``--measure``: real steps for each row (but the head-only one) beside the estimate."""
    from kfreeze_tui.core.train.measure import measure_plans

    measured = measure_plans(session.model, session.view, [row.plan for row in rows], setup, gpu)
    for document, result in zip(documents, measured, strict=True):
        document["measured"] = result.to_json() if result is not None else None


def _print_document(
    session: Any, setup: Any, dtype_why: str, policy: Any, rows: list[Any],
    documents: list[dict[str, Any]], found: list[Any],
) -> None:  # fmt: skip
    from kfreeze_tui.core.train.cost import cost_model

    gpu_documents = []
    for gpu in found:
        document = gpu.to_json()
        document["largest_batch"] = [row.estimate.largest_batch(gpu.free_bytes) for row in rows]
        gpu_documents.append(document)
    print_json(
        {
            "model": session.info.name,
            "batch": setup.batch,
            "optimizer": setup.optimizer.value,
            "dtype": setup.dtype.value,
            "dtype_from": dtype_why,
            "bn": policy.value,
            "lora": None
            if rows[0].plan.lora is None
            else {"rank": rows[0].plan.lora.rank, "targets": rows[0].plan.lora.targets},
            "forward_macs_per_example": cost_model(session.view).forward_macs_per_example,
            "rows": documents,
            "gpus": gpu_documents,
        }
    )


def _print_table(
    session: Any, setup: Any, dtype_why: str, rows: list[Any],
    documents: list[dict[str, Any]], found: list[Any],
) -> None:  # fmt: skip
    from kfreeze_tui.core.train.cost import cost_model, human_bytes

    macs = cost_model(session.view).forward_macs_per_example
    title = (
        f"{session.info.description} · batch {setup.batch} · {setup.optimizer.label} · "
        f"{setup.dtype.value} ({dtype_why}) · {_macs_text(macs)} per example forward"
    )
    lora = rows[0].plan.lora if rows else None
    if lora is not None:
        title += f" · LoRA rank {lora.rank} ({lora.targets})"
    stdout_console().print(report.cost_table(title, documents))
    for gpu in found:
        fits = ", ".join(
            f"{row.label}: batch {row.estimate.largest_batch(gpu.free_bytes):,}" for row in rows
        )
        print(
            f"GPU {gpu.index} {gpu.name}: {human_bytes(gpu.free_bytes)} free of "
            f"{human_bytes(gpu.total_bytes)}; largest batch that fits: {fits}"
        )


def _macs_text(macs: int) -> str:
    """``3.86 GMACs``, ``0.28 MMACs`` for a small model."""
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"
