"""What parsed arguments mean to the core: the option groups of :mod:`kfreeze_tui.cli.parser`
turned into the core's own objects (load options, a head's hidden layers, an export's files),
once for every command that takes them."""

from __future__ import annotations

import argparse
from typing import Any

from kfreeze_tui.core.errors import UsageError


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
    from kfreeze_tui.core.train.export import ExportRequest

    return ExportRequest(
        model_path=args.output,
        plan_path=args.plan,
        script_path=args.script,
        savedmodel_path=args.savedmodel,
        force=args.force,
    )
