"""What parsed arguments mean to the core: the option groups of :mod:`kfreeze_tui.cli.parser`
turned into the core's own objects (load options, a head's hidden layers, an export's files),
once for every command that takes them."""

from __future__ import annotations

import argparse
from typing import Any

from kfreeze_tui.core.errors import KfreezeError, UsageError


def load_options_from(args: argparse.Namespace) -> Any:
    """The core's LoadOptions from the load options (raises LoadError on a bad shape)."""
    from kfreeze_tui.core.model.loading import LoadOptions, parse_input_shape

    return LoadOptions(
        weights=args.weights,
        input_shape=parse_input_shape(args.input_shape) if args.input_shape else None,
        include_top=args.include_top,
        custom_objects=args.custom_objects,
        unsafe=args.unsafe,
        gpu=args.gpu,
    )


def hidden_layers(text: str) -> tuple[Any, ...]:
    """``--hidden 256,128``: the head's hidden Dense layers."""
    from kfreeze_tui.core.plan.head import parse_hidden

    layers = parse_hidden(text)
    if layers is None:
        raise UsageError(f"--hidden {text!r} must be units separated by commas, e.g. 256,128")
    return layers


def export_request(args: argparse.Namespace) -> Any:
    """The files the output options ask an export to write."""
    from kfreeze_tui.core.train.adapters import adapters_path
    from kfreeze_tui.core.train.export import ExportRequest

    lora = getattr(args, "lora", None) is not None
    cache_features = bool(getattr(args, "cache_features", False))
    # Options that shape only the training script: without one they would do nothing.
    for flag, given in (
        ("--cache-features", cache_features),
        ("--strategy", getattr(args, "strategy", None) is not None),
    ):
        if given and args.script is None:
            raise UsageError(f"{flag} changes the training script: give --script PATH too")
    return ExportRequest(
        model_path=args.output,
        plan_path=args.plan,
        script_path=args.script,
        savedmodel_path=args.savedmodel,
        force=args.force,
        adapters_path=adapters_path(args.output) if lora else None,
        cache_features=cache_features,
    )


def lora_spec_from(args: argparse.Namespace) -> Any:
    """The core's LoraSpec from ``--lora RANK`` and ``--lora-targets`` (None without
    ``--lora``); the targets are checked against the model later (:func:`check_lora`)."""
    from kfreeze_tui.core.plan.lora import LoraSpec, target_pattern

    rank_text = getattr(args, "lora", None)
    targets = getattr(args, "lora_targets", None)
    if rank_text is None:
        if targets is not None:
            raise UsageError(f"--lora-targets {targets!r} needs --lora RANK (e.g. --lora 8)")
        return None
    try:
        rank = int(rank_text)
    except ValueError:
        rank = 0
    if rank < 1:
        raise UsageError(f"--lora {rank_text!r} must be a whole number of at least 1 (the rank)")
    targets = targets if targets is not None else "attention"
    try:
        target_pattern(targets)
    except KfreezeError as exc:
        raise UsageError(exc.message.replace("LoRA target ", "--lora-targets ", 1)) from exc
    return LoraSpec(rank=rank, targets=targets)


def check_lora(spec: Any, view: Any) -> None:
    """Refuse LoRA targets that put LoRA nowhere in the model (one sentence, exit 2)."""
    from kfreeze_tui.core.plan.lora import check_targets

    if spec is None:
        return
    try:
        check_targets(view.leaves, spec, view.info.name)
    except KfreezeError as exc:
        raise UsageError(exc.message.replace("LoRA target ", "--lora-targets ", 1)) from exc
