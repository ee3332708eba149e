"""The ``kfreeze`` command: argument parsing and the non-interactive subcommands.

Exit codes: 0 on success, 2 on bad input (a usage error or a model that cannot be loaded,
with one sentence on stderr and nothing on stdout) or an environment that cannot take the
output (a full disk), 1 on an unexpected internal error, 130 when interrupted. A reader that
leaves early (``kfreeze layers ... | head``) is a normal end: exit 0, nothing said.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from kfreeze_tui._version import __version__
from kfreeze_tui.core.errors import KfreezeError, OutputError, UsageError, describe

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Choose what to freeze and what to train when fine-tuning a Keras model.

commands:
  kfreeze [MODEL]        open the explorer on MODEL (without MODEL: pick one from a list)
  kfreeze layers MODEL   print every layer with its index, shape, params and trainable state
  kfreeze models         list the keras.applications architectures and their input sizes
  kfreeze export MODEL --freeze-before LAYER -o OUT.keras
                         freeze, add a head, compile and write a verified model (and plan,
                         script, SavedModel) without the explorer
  kfreeze apply PLAN.toml -o OUT.keras
                         rebuild the model a plan file describes
  kfreeze convert OLD.h5 -o NEW.keras
                         write a model file from an older Keras (1.x, 2.x, tf.keras) as a
                         Keras 3 .keras file, repaired and verified
  kfreeze cost MODEL     training memory and step FLOPs at every stage start (or one
                         boundary) at a batch size, optimizer and dtype; --measure checks it
  kfreeze check MODEL.keras
                         what is wrong with a model's freeze set-up, and one training step
                         that proves frozen weights stay frozen
  kfreeze cache [clear]  where the layer-table cache is and how big; clear empties it

MODEL is a keras.applications architecture name (resnet50, EfficientNetV2L, ...; any case)
or a .keras / .h5 file. Run `kfreeze COMMAND --help` for a command's options.
"""


class _StandardOutput:
    """``sys.stdout`` while a command runs: a write that fails says it was standard output.

    A closed pipe stays a :class:`BrokenPipeError` (a normal end); any other failure to
    write becomes an :class:`OutputError`, so that ``kfreeze layers ... > /dev/full`` is told
    apart from an OSError inside kfreeze. Everything else is the stream's own.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(_reason(exc)) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(_reason(exc)) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _reason(exc: OSError) -> str:
    """``no space left on device``: the system's words, as the middle of a sentence."""
    text = exc.strerror or (errno.errorcode.get(exc.errno or 0) or str(exc))
    return text[:1].lower() + text[1:]


def _output_gone(stream: TextIO | None) -> None:
    """Point ``stream``'s file descriptor at /dev/null: what is still buffered for the reader
    that left (or the disk that is full) is dropped quietly when Python flushes it at exit
    (the Python documentation's note on SIGPIPE)."""
    if stream is None:
        return
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass  # not a file (a test's capture buffer): nothing is flushed at exit


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("loading the model")
    group.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|none|PATH",
        help="weights for an architecture name: imagenet (default; downloaded by Keras), "
        "none (random), or a weights file",
    )
    group.add_argument(
        "--input-shape",
        metavar="H,W,C",
        help="input shape for an architecture name (default: its own size, e.g. 224,224,3)",
    )
    group.add_argument(
        "--include-top",
        action="store_true",
        help="keep the architecture's imagenet classifier (default: without it)",
    )
    group.add_argument(
        "--custom-objects",
        metavar="FILE.py",
        type=Path,
        help="a Python file that defines the custom layers a model file uses",
    )
    group.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers (their Python code runs on loading): trusted files only",
    )
    group.add_argument(
        "--gpu",
        action="store_true",
        help="let TensorFlow use the GPU (memory growth on); by default kfreeze stays on "
        "the CPU and leaves the GPU to training jobs",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kfreeze",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    layers = commands.add_parser(
        "layers",
        help="print every layer of a model",
        description="Print every layer of MODEL with the index model.layers gives it, its "
        "output shape, parameter count and trainable state, grouped by stage.",
    )
    layers.add_argument("model", metavar="MODEL", help="architecture name or .keras/.h5 file")
    layers.add_argument(
        "--filter", metavar="REGEX", help="only layers whose name or type matches REGEX"
    )
    layers.add_argument(
        "--expand-nested",
        action="store_true",
        help="also show the layers of nested models, under their container, with paths",
    )
    layers.add_argument(
        "--boundary",
        metavar="NAME|INDEX|PATH",
        help="also report the cut a freeze boundary there makes: which tensors cross it, "
        "whether it is clean, which block it splits",
    )
    layers.add_argument("--json", action="store_true", help="print one JSON object instead")
    _add_load_options(layers)
    _add_cache_option(layers)
    layers.set_defaults(handler=_cmd_layers)

    cache = commands.add_parser(
        "cache",
        help="show or clear the layer-table cache",
        description="kfreeze keeps the layer table of every model it opened (not weights) "
        "under $XDG_CACHE_HOME/kfreeze, so that opening it again is instant. "
        "`kfreeze cache` says where and how big; `kfreeze cache clear` empties it.",
    )
    cache.add_argument("action", nargs="?", choices=["clear"], help="clear: remove every entry")
    cache.set_defaults(handler=_cmd_cache)

    models = commands.add_parser(
        "models",
        help="list the keras.applications architectures",
        description="List the keras.applications architectures kfreeze can open by name.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=_cmd_models)

    export = commands.add_parser(
        "export",
        help="freeze, add a head and write a ready-to-train model",
        description="Freeze every layer of MODEL before LAYER, add a classification head, "
        "compile, and write a .keras file that is verified by loading it back; optionally "
        "also the plan, a plain-Keras script and an inference SavedModel.",
    )
    export.add_argument("model", metavar="MODEL", help="architecture name or .keras/.h5 file")
    export.add_argument(
        "--freeze-before",
        metavar="NAME|INDEX|PATH",
        help="the first layer that trains: a name (conv5_block1_1_conv), an index of "
        "model.layers (143) or a path into a nested model (0.143); 'all' freezes every layer "
        "(required unless --phase gives phase 1)",
    )
    export.add_argument(
        "--phase",
        action="append",
        default=[],
        metavar="BOUNDARY:EPOCHS[:LR|:LO..HI]",
        help="a training phase (repeatable, in order): BOUNDARY is a layer or 'head' (the "
        "whole base frozen); LR one learning rate, LO..HI a range spread over the stages "
        "after the boundary (the head gets HI). The .keras file is set up for phase 1; the "
        "plan, the script's train() and fit_phases() run them all",
    )
    export.add_argument(
        "--strategy",
        choices=("mirrored", "multiworker"),
        help="the script builds and compiles inside tf.distribute.MirroredStrategy (this "
        "machine's GPUs) or MultiWorkerMirroredStrategy (several machines)",
    )
    _add_bn_option(export)
    _add_head_options(export)
    _add_output_options(export)
    _add_load_options(export)
    export.set_defaults(handler=_cmd_export)

    apply = commands.add_parser(
        "apply",
        help="rebuild the model a plan file describes",
        description="Load the model a plan names, apply the plan and write the result, "
        "verified, like kfreeze export.",
    )
    apply.add_argument(
        "plan_file", metavar="PLAN.toml", type=Path, help="a plan written by kfreeze"
    )
    apply.add_argument(
        "--phase",
        type=int,
        default=1,
        metavar="N",
        help="for a plan with [[phase]] tables: set up and compile the model for phase N "
        "(its boundary and learning rates; default 1), as apply_plan(model, plan, phase=N)",
    )
    _add_outputs_options(apply.add_argument_group("the model's outputs (instead of the plan's)"))
    _add_output_options(apply)
    apply.add_argument("--gpu", action="store_true", help="let TensorFlow use the GPU")
    apply.set_defaults(handler=_cmd_apply)

    convert = commands.add_parser(
        "convert",
        help="write a model file from an older Keras as a Keras 3 .keras file",
        description="Open a model file written by Keras 1.x/2.x or tf.keras (HDF5 .h5, HDF5 "
        "named .keras, or a tf.keras 2.13-2.15 .keras archive), repair its config for Keras 3 "
        "(every repair is printed), and write a Keras 3 .keras file, verified by loading it "
        "back and comparing the outputs on a random batch with the model it came from.",
    )
    convert.add_argument("model", metavar="OLD", help="the model file to convert")
    convert.add_argument(
        "-o", "--output", required=True, type=Path, metavar="NEW.keras", help="the file to write"
    )
    convert.add_argument("--force", action="store_true", help="replace NEW.keras if it exists")
    convert.add_argument("--json", action="store_true", help="print one JSON object")
    _add_file_options(convert, gpu_help=None)
    convert.set_defaults(handler=_cmd_convert)

    cost = commands.add_parser(
        "cost",
        help="what training costs at each boundary: memory and step FLOPs",
        description="Estimate, for MODEL at a batch size, optimizer and dtype policy, the "
        "training memory (weights, gradients, optimizer state, activations) and the FLOPs of "
        "one step, for head-only training, every stage start and full fine-tuning (or one "
        "--freeze-before boundary); for a model file, also as the file is set up to train. "
        "Nothing is computed on the GPU; --measure runs real steps.",
    )
    cost.add_argument("model", metavar="MODEL", help="architecture name or .keras/.h5 file")
    cost.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    cost.add_argument(
        "--optimizer",
        choices=("adam", "adamw", "sgd", "sgdm"),
        default="adam",
        help="Adam/AdamW keep 2 slots per trainable parameter, SGD with momentum 1, SGD 0",
    )
    cost.add_argument(
        "--dtype",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        default=None,
        help="dtype policy: activations take 4 bytes in float32, 2 under mixed precision "
        "(default: the model's own policy)",
    )
    cost.add_argument(
        "--freeze-before",
        metavar="NAME|INDEX|PATH",
        help="price this boundary only ('all': head only)",
    )
    _add_bn_option(cost)
    cost.add_argument(
        "--measure",
        action="store_true",
        help="also run real training steps on synthetic data for the boundary and for full "
        "fine-tuning (CPU unless --gpu), and report seconds per step and peak GPU memory",
    )
    cost.add_argument("--json", action="store_true", help="print one JSON object instead")
    _add_load_options(cost)
    _add_cache_option(cost)
    cost.set_defaults(handler=_cmd_cost)

    check = commands.add_parser(
        "check",
        help="check how a model file is set up to train, with one real step as proof",
        description="Report what is wrong with how MODEL is set up to fine-tune (no weight "
        "trains, BatchNormalization training after a frozen prefix, a float16 output, a "
        "boundary inside a block, a high learning rate), then train a copy for one step on "
        "a synthetic batch and compare every weight: frozen weights must be bitwise "
        "unchanged, trainable ones changed; and say which outputs the model has. Given a "
        "plan, check the model the plan builds, and warn of each output of the model it drops. "
        "Exit code 0 without errors, 1 with errors, 2 on bad input.",
    )
    check.add_argument("model", metavar="MODEL", help="a .keras or .h5 model file, or a .toml plan")
    check.add_argument("--json", action="store_true", help="print one JSON object instead")
    check.add_argument(
        "--no-step", action="store_true", help="static findings only: do not train a step"
    )
    _add_file_options(check, gpu_help="run the step on the GPU")
    check.set_defaults(handler=_cmd_check)
    return parser


def _add_bn_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bn",
        choices=("frozen", "trainable"),
        default="frozen",
        help="BatchNormalization after the boundary (default: kept frozen)",
    )


def _add_file_options(parser: argparse.ArgumentParser, gpu_help: str | None) -> None:
    """The load options that matter for a model file (not for an architecture name)."""
    group = parser.add_argument_group("loading the model")
    group.add_argument(
        "--custom-objects",
        metavar="FILE.py",
        type=Path,
        help="a Python file that defines the custom layers (or model class) the file uses",
    )
    group.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers (their Python code runs on loading): trusted files only",
    )
    if gpu_help:
        group.add_argument("--gpu", action="store_true", help=gpu_help)


def _add_head_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the new head")
    group.add_argument(
        "--feature-layer",
        metavar="NAME",
        help="where the head attaches (default: where the classifier of the replaced output "
        "takes its features, or that output when it ends in no classifier)",
    )
    _add_outputs_options(group)
    group.add_argument(
        "--pool",
        choices=("avg", "max", "flatten", "none"),
        help="pooling of the feature map (default: avg, none for flat features)",
    )
    group.add_argument(
        "--hidden",
        metavar="256,128",
        default="",
        help="hidden Dense layers (units; relu), comma separated",
    )
    group.add_argument("--dropout", type=float, default=0.2, help="dropout rate (default 0.2)")
    group.add_argument("--classes", type=int, default=10, help="output classes (default 10)")
    group.add_argument(
        "--activation",
        choices=("softmax", "sigmoid", "linear"),
        default="softmax",
        help="output activation (default softmax)",
    )
    group.add_argument("--no-compile", action="store_true", help="do not compile the model")
    group.add_argument(
        "--lr",
        type=float,
        default=1e-4,
        help="Adam learning rate (default 1e-4, as the Keras guide suggests)",
    )
    group.add_argument(
        "--labels",
        choices=("sparse", "onehot"),
        default="sparse",
        help="label format for the loss (default sparse: integer class ids)",
    )


def _add_outputs_options(group: Any) -> None:
    """Which of a multi-output model's outputs the head replaces, and which others stay."""
    group.add_argument(
        "--replace-output",
        metavar="NAME",
        help="the output (its layer's name) the head takes the place of (default: the first "
        "output that ends in a classifier)",
    )
    group.add_argument(
        "--keep-output",
        action="append",
        default=[],
        metavar="NAME",
        help="another output of the model to keep after the head's, without a loss "
        "(repeatable; default: none, and the export says which outputs it drops)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT.keras",
        help="the model file to write",
    )
    group.add_argument("--plan", type=Path, metavar="OUT.toml", help="also write the plan")
    group.add_argument(
        "--script",
        type=Path,
        metavar="OUT.py",
        help="also write a plain-Keras script that rebuilds the model",
    )
    group.add_argument(
        "--savedmodel",
        type=Path,
        metavar="DIR",
        help="also export an inference SavedModel (model.export)",
    )
    group.add_argument("--force", action="store_true", help="replace files that exist")


SUBCOMMANDS = ("layers", "models", "export", "apply", "convert", "cost", "check", "cache")


def _add_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the layer-table cache (build and walk the model anew)",
    )


def _cmd_cache(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.model import cache
    from kfreeze_tui.core.runtime.leftovers import describe

    removed = cache.remove_leftover_entries()
    if removed:
        _note(describe(removed))
    if args.action == "clear":
        count, size = cache.clear()
        print(
            f"removed {count} cached layer table(s), {size / 1e6:.1f} MB, from {cache.cache_dir()}"
        )
        return EXIT_OK
    folder = cache.cache_dir()
    entries = list(folder.glob("*.json")) if folder.is_dir() else []
    size = sum(entry.stat().st_size for entry in entries)
    print(f"{folder}: {len(entries)} cached layer table(s), {size / 1e6:.1f} MB")
    return EXIT_OK


def build_tui_parser() -> argparse.ArgumentParser:
    """The parser of ``kfreeze [MODEL]``, which opens the explorer."""
    parser = argparse.ArgumentParser(
        prog="kfreeze",
        description="Open the explorer on MODEL: an architecture name or a .keras/.h5 file. "
        "Without MODEL, a picker lists the architectures and the model files here.",
        epilog="Other commands: kfreeze layers, kfreeze models (kfreeze --help).",
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="architecture or model file")
    _add_load_options(parser)
    _add_cache_option(parser)
    return parser


def _run_tui(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.errors import ConfigError
    from kfreeze_tui.core.runtime.process import stderr_kept_off_the_terminal
    from kfreeze_tui.keymap import read_keymap

    options = load_options_from(args)
    try:
        keymap = read_keymap()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the explorer needs a terminal; use `kfreeze layers MODEL` for output to a pipe "
            "or a file"
        )
    if dumb_terminal():
        term = os.environ.get("TERM", "")
        if not args.model:
            raise UsageError(
                f"the explorer needs a terminal that can draw full-screen (TERM={term} "
                "cannot); use `kfreeze layers MODEL` here, or a terminal such as xterm"
            )
        _note(
            f"the explorer needs a terminal that can draw full-screen (TERM={term} cannot); "
            "here is the layer table, as `kfreeze layers` prints it"
        )
        table_args = argparse.Namespace(
            **vars(args), filter=None, expand_nested=False, boundary=None, json=False
        )
        with _load_progress_on_stderr():
            return _cmd_layers(table_args)
    from kfreeze_tui.app import make_app, run_app

    with stderr_kept_off_the_terminal():
        app = make_app(
            args.model,
            options,  # type: ignore[arg-type]
            keymap=keymap,
            use_cache=not args.no_cache,
        )
        return run_app(app)


def load_options_from(args: argparse.Namespace) -> object:
    """The core's LoadOptions from parsed arguments (raises LoadError on a bad shape)."""
    from kfreeze_tui.core.model.loading import LoadOptions, parse_input_shape

    return LoadOptions(
        weights=args.weights,
        input_shape=parse_input_shape(args.input_shape) if args.input_shape else None,
        include_top=args.include_top,
        custom_objects=args.custom_objects,
        unsafe=args.unsafe,
        gpu=args.gpu,
    )


def _stdout_console() -> object:
    """The Rich console of a command's table: a reader that leaves is a normal end.

    Rich's own answer to a closed pipe is ``SystemExit(1)`` from inside ``print``; here it
    is the :class:`BrokenPipeError` that :func:`run` turns into a quiet exit 0.
    """
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the reader of standard output left")

    console = StdoutConsole()
    if not console.is_terminal:
        # A pipe or a file: wide enough that names and shapes are never cut.
        console = StdoutConsole(width=max(console.width, 160))
    return console


def dumb_terminal() -> bool:
    """``TERM=dumb`` (or ``unknown``): a terminal that cannot draw the explorer (Emacs'
    shell, some CI consoles); Rich draws no colour there either."""
    return os.environ.get("TERM", "").lower() in ("dumb", "unknown")


def _warn(message: str) -> None:
    print(f"kfreeze: warning: {message}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"kfreeze: note: {message}", file=sys.stderr)


def _cmd_layers(args: argparse.Namespace) -> int:
    from kfreeze_tui import report
    from kfreeze_tui.core.model.names import find_layer
    from kfreeze_tui.core.session import open_session

    pattern = None
    if args.filter:
        try:
            pattern = re.compile(args.filter, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(
                f"--filter {args.filter!r} is not a valid regular expression ({exc})"
            ) from None
    session = open_session(
        args.model,
        load_options_from(args),  # type: ignore[arg-type]
        use_cache=not args.no_cache,
    )
    for warning in session.warnings:
        _warn(warning)
    if not args.json:
        for repair in session.repairs:
            _note(f"repaired: {repair.message}")
    info = session.info
    notes: list[str] = []
    cut = None
    if args.boundary is not None:
        from kfreeze_tui.core.model.cut import CutIndex
        from kfreeze_tui.core.model.names import parse_layer_ref

        cut = CutIndex(info).at(parse_layer_ref(info, args.boundary, notes))
    if pattern is not None:
        row, note = find_layer(info, args.filter)
        if row is not None and note:
            notes.append(note)
            pattern = re.compile(re.escape(row.name))
    for note in notes:
        _note(note)
    rows = report.select(info, pattern, args.expand_nested)
    if args.json:
        document = report.layers_document(info, rows)
        document["repairs"] = [repair.to_json() for repair in session.repairs]
        if cut is not None:
            document["cut"] = cut.to_json()
        json.dump(document, sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    console = _stdout_console()
    table = report.layer_table(info, rows, args.expand_nested, width=console.width)  # type: ignore[attr-defined]
    console.print(table)  # type: ignore[attr-defined]
    if cut is not None:
        print(f"Boundary {cut.boundary}: {cut.describe()}")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kfreeze_tui.core.model import catalog

    entries = catalog.architectures()
    if args.json:
        json.dump(
            [
                {
                    "name": a.name,
                    "family": a.family,
                    "default_input_shape": list(a.default_input_shape),
                }
                for a in entries
            ],
            sys.stdout,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    table = Table(title=f"{len(entries)} keras.applications architectures", title_justify="left")
    table.add_column("name")
    table.add_column("family")
    table.add_column("default input", justify="right")
    for arch in entries:
        table.add_row(arch.name, arch.family, "x".join(map(str, arch.default_input_shape)))
    _stdout_console().print(table)  # type: ignore[attr-defined]
    return EXIT_OK


def _hidden(text: str) -> tuple[object, ...]:
    from kfreeze_tui.core.plan.head import parse_hidden

    layers = parse_hidden(text)
    if layers is None:
        raise UsageError(f"--hidden {text!r} must be units separated by commas, e.g. 256,128")
    return layers


def _request(args: argparse.Namespace) -> object:
    from kfreeze_tui.core.train.export import ExportRequest

    return ExportRequest(
        model_path=args.output,
        plan_path=args.plan,
        script_path=args.script,
        savedmodel_path=args.savedmodel,
        force=args.force,
    )


def _print_result(result: object, notes: list[str]) -> None:
    from kfreeze_tui.core.runtime.leftovers import describe, human_size

    for note in notes:
        _warn(note)
    if result.removed:  # type: ignore[attr-defined]
        _note(describe(result.removed))  # type: ignore[attr-defined]
    for written in result.files:  # type: ignore[attr-defined]
        print(f"wrote {written.path} ({written.what}, {human_size(written.size)})")
    verification = result.verification  # type: ignore[attr-defined]
    if verification is not None:
        print(
            f"verified by loading it back: {verification.layers} layers, "
            f"{verification.trainable_params:,} trainable and "
            f"{verification.non_trainable_params:,} non-trainable parameters; "
            + "; ".join(verification.checks)
        )


def _export_session(
    session: object,
    load: object,
    plan: object,
    head: object,
    compile_spec: object,
    args: argparse.Namespace,
    phase: int = 1,
) -> int:
    from kfreeze_tui.core.model.names import find_layer
    from kfreeze_tui.core.plan.head import validate

    # The request was checked before the model was loaded, and session.export checks it
    # again before building (files may have appeared meanwhile).
    request = _request(args)
    if head.feature_layer:  # type: ignore[attr-defined]
        _, note = find_layer(session.info, head.feature_layer, top_level=True)  # type: ignore[attr-defined]
        if note:
            _note(f"feature layer {note}")
    problems = validate(session.info, head)  # type: ignore[attr-defined]
    if problems:
        from kfreeze_tui.core.errors import PlanError

        raise PlanError(problems[0].rstrip("."))
    result = session.export(load, plan, head, compile_spec, request, phase=phase)  # type: ignore[attr-defined]
    _print_result(result, [])
    _print_placement(session.info, head)  # type: ignore[attr-defined]
    return EXIT_OK


def _print_placement(info: Any, head: Any) -> None:
    """What the head attaches to and replaces, and, for several outputs, which the new model
    has and which it dropped (never silently)."""
    from kfreeze_tui.core.plan.head import placement

    found = placement(info, head)
    if found is None:
        return
    print("head: " + "; ".join(found.lines()))
    if len(found.outputs) > 1:
        kept = "".join(f", {row.name} (kept)" for row in found.kept)
        text = f"outputs: {found.new_outputs[0]} (the new head){kept}"
        if found.dropped:
            text += "; dropped: " + ", ".join(row.name for row in found.dropped)
            text += " (--keep-output NAME keeps one)"
        print(text)


def _cmd_export(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.model.loading import load
    from kfreeze_tui.core.model.names import parse_layer_ref
    from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec, parse_phase
    from kfreeze_tui.core.session import ModelSession
    from kfreeze_tui.core.train.export import check_request

    head = HeadSpec(
        feature_layer=args.feature_layer,
        pooling=args.pool,
        hidden=_hidden(args.hidden),  # type: ignore[arg-type]
        dropout=args.dropout,
        classes=args.classes,
        activation=args.activation,
        replace=args.replace_output,
        keep=tuple(args.keep_output),
    )
    compile_spec = CompileSpec(
        enabled=not args.no_compile, learning_rate=args.lr, labels=args.labels
    )
    if args.freeze_before is None and not args.phase:
        raise UsageError("pass --freeze-before LAYER (or --phase for staged training)")
    check_request(_request(args))  # type: ignore[arg-type]  # before the slow load
    options = load_options_from(args)
    loaded = load(args.model, options)  # type: ignore[arg-type]
    for warning in loaded.warnings:
        _warn(warning)
    session = ModelSession(loaded)
    notes: list[str] = []
    phase_notes: list[str] = []
    session.set_training_plan(
        [parse_phase(text, session.info, phase_notes) for text in args.phase], args.strategy
    )
    if args.freeze_before is None:
        boundary = session.phases[0].boundary  # phase 1 (checked before loading)
    elif args.freeze_before.strip().lower() == "all":
        boundary = None
    else:
        boundary = parse_layer_ref(session.info, args.freeze_before, notes)
    for note in notes:
        _note(f"--freeze-before {note}")
    for note in phase_notes:
        _note(f"--phase {note}")
    plan = FreezePlan(boundary=boundary, bn_policy=BNPolicy(args.bn))
    return _export_session(session, options, plan, head, compile_spec, args)


def _cmd_apply(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.plan import planfile
    from kfreeze_tui.core.plan.phases import check_phase_number
    from kfreeze_tui.core.session import open_plan
    from kfreeze_tui.core.train.export import check_request

    # Before the slow load: the targets, the plan file itself and the phase number.
    check_request(_request(args))  # type: ignore[arg-type]
    check_phase_number(len(planfile.read(args.plan_file).phases), args.phase)
    session, notes = open_plan(args.plan_file, gpu=args.gpu, use_cache=False)
    for note in notes:
        _warn(note)
    _override_outputs(session, args)
    if session.phases:
        chosen = session.phases[args.phase - 1]
        _note(
            f"the model is set up and compiled for phase {args.phase} of "
            f"{len(session.phases)}: {chosen.spec(session.info)}"
        )
    return _export_session(
        session,
        session.load_options,
        session.initial_plan(),
        session.head,
        session.compile_spec,
        args,
        phase=args.phase,
    )


def _override_outputs(session: Any, args: argparse.Namespace) -> None:
    """``kfreeze apply --replace-output/--keep-output``: the outputs asked for instead of
    the plan's (a name that is not an output is refused later, by the head's validation).
    Another output replaced takes the head to that output's default place."""
    from dataclasses import replace

    from kfreeze_tui.core.plan.head import model_outputs

    head = session.head
    if args.replace_output and args.replace_output != head.replace:
        head = replace(head, replace=args.replace_output, feature_layer=None)
    names = [row.name for row in model_outputs(session.info)]
    if head is not session.head and args.replace_output in names:
        _note(
            f"--replace-output {args.replace_output}: the head goes where that output's "
            "classifier takes its features, not on the plan's feature layer"
        )
    if args.keep_output:
        head = replace(head, keep=tuple(args.keep_output))
    session.set_head(head, session.compile_spec)


def _cmd_convert(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.train.convert import convert, summary_line

    options = LoadOptions(weights="none", custom_objects=args.custom_objects, unsafe=args.unsafe)
    result = convert(args.model, args.output, options, force=args.force)
    if args.json:
        print(
            json.dumps(
                {
                    "source": args.model,
                    "output": str(result.path),
                    "bytes": result.size,
                    "repairs": [repair.to_json() for repair in result.repairs],
                    "checks": result.checks,
                    "max_difference": result.max_difference,
                    "removed_leftovers": [
                        {"path": str(item.path), "bytes": item.size} for item in result.removed
                    ],
                },
                indent=2,
            )
        )
        return EXIT_OK
    if result.removed:
        from kfreeze_tui.core.runtime.leftovers import describe

        _note(describe(result.removed))
    for warning in result.warnings:
        _warn(warning)
    for repair in result.repairs:
        _note(f"repaired: {repair.message}")
    print(summary_line(result))
    return EXIT_OK


def _cmd_cost(args: argparse.Namespace) -> int:
    from kfreeze_tui import report
    from kfreeze_tui.core.model.names import parse_layer_ref
    from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan
    from kfreeze_tui.core.runtime import gpus
    from kfreeze_tui.core.session import open_session
    from kfreeze_tui.core.train.cost import (
        DtypePolicy,
        Optimizer,
        TrainingSetup,
        cost_model,
        human_bytes,
        model_dtype,
        plan_rows,
    )

    if args.batch < 1:
        raise UsageError(f"--batch {args.batch} must be a positive number of examples")
    session = open_session(
        args.model,
        load_options_from(args),  # type: ignore[arg-type]
        use_cache=not args.no_cache,
    )
    for warning in session.warnings:
        _warn(warning)
    if args.dtype is None:
        dtype, dtype_why = model_dtype(session.info)
    else:
        dtype, dtype_why = DtypePolicy(args.dtype), "--dtype"
    setup = TrainingSetup(batch=args.batch, optimizer=Optimizer(args.optimizer), dtype=dtype)
    view = session.view
    model_costs = cost_model(view)
    policy = BNPolicy(args.bn)
    if args.freeze_before is not None:
        notes: list[str] = []
        text = args.freeze_before.strip()
        path = None if text.lower() == "all" else parse_layer_ref(session.info, text, notes)
        for note in notes:
            _note(f"--freeze-before {note}")
        rows = [("head only" if path is None else view.info.layer(path).name, path)]
    else:
        rows = _distinct_rows(plan_rows(view), view, model_costs, policy)
    plans = [FreezePlan(boundary=path, bn_policy=policy) for _, path in rows]
    if args.freeze_before is None and session.architecture is None:
        # A file (an export, a checkpoint) trains as it was saved unless told otherwise.
        as_loaded = view.plan_as_loaded()
        rows.insert(0, ("as the file is", as_loaded.boundary))
        plans.insert(0, as_loaded)
    estimates = [model_costs.estimate(plan, setup) for plan in plans]
    documents = report.cost_rows(view, rows, estimates)
    if args.measure:
        _measure_rows(session, view, rows, plans, setup, documents, args.gpu)
    found = gpus.query()
    if args.json:
        gpu_documents = []
        for gpu in found:
            document = gpu.to_json()
            document["largest_batch"] = [e.largest_batch(gpu.free_bytes) for e in estimates]
            gpu_documents.append(document)
        json.dump(
            {
                "model": session.info.name,
                "batch": setup.batch,
                "optimizer": setup.optimizer.value,
                "dtype": setup.dtype.value,
                "dtype_from": dtype_why,
                "bn": policy.value,
                "forward_macs_per_example": model_costs.forward_macs_per_example,
                "rows": documents,
                "gpus": gpu_documents,
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    title = (
        f"{session.info.description} · batch {setup.batch} · {setup.optimizer.label} · "
        f"{setup.dtype.value} ({dtype_why}) · {_macs_text(model_costs.forward_macs_per_example)} "
        "per example forward"
    )
    console = _stdout_console()
    console.print(report.cost_table(title, documents))  # type: ignore[attr-defined]
    for gpu in found:
        fits = ", ".join(
            f"{label}: batch {estimate.largest_batch(gpu.free_bytes):,}"
            for (label, _), estimate in zip(rows, estimates, strict=True)
        )
        print(
            f"GPU {gpu.index} {gpu.name}: {human_bytes(gpu.free_bytes)} free of "
            f"{human_bytes(gpu.total_bytes)}; largest batch that fits: {fits}"
        )
    return EXIT_OK


def _macs_text(macs: int) -> str:
    """``3.86 GMACs``, ``0.28 MMACs`` for a small model."""
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"


def _distinct_rows(rows: list[Any], view: Any, model_costs: Any, policy: Any) -> list[Any]:
    """Stage starts that train what "everything trains" trains are dropped (ResNet's stem)."""
    from kfreeze_tui.core.plan.freeze import FreezePlan

    kept: list[Any] = []
    seen: set[int] = set()
    for label, path in reversed(rows):
        start = model_costs.first_trainable(FreezePlan(boundary=path, bn_policy=policy))
        if start in seen:
            continue
        seen.add(start)
        kept.append((label, path))
    return list(reversed(kept))


def _measure_rows(
    session: Any, view: Any, rows: list[Any], plans: list[Any], setup: Any,
    documents: list[dict[str, Any]], gpu: bool,
) -> None:  # fmt: skip
    """Real steps for the boundary (or each row given) and for full fine-tuning."""
    from kfreeze_tui.core.plan.freeze import FreezePlan
    from kfreeze_tui.core.train.measure import measure

    base = session.model
    everything = FreezePlan(boundary=view.first_path(), bn_policy=plans[-1].bn_policy)
    measured_full = None
    for doc, (_label, _), plan in zip(documents, rows, plans, strict=True):
        if plan.boundary is None:
            doc["measured"] = None  # head only: the base is never trained, nothing to check
            continue
        result = measure(base, view, plan, setup, gpu=gpu)
        doc["measured"] = result.to_json()
        if plan == everything:
            measured_full = result
    if measured_full is None:
        measured_full = measure(base, view, everything, setup, gpu=gpu)
    for doc in documents:
        if doc.get("measured"):
            doc["measured"]["relative_step"] = round(
                doc["measured"]["step_seconds"] / measured_full.step_seconds, 4
            )


def _cmd_check(args: argparse.Namespace) -> int:
    from kfreeze_tui.core.model.layers import walk
    from kfreeze_tui.core.train.check import (
        Finding,
        one_step,
        outputs_line,
        recompile_findings,
        static_findings,
        step_findings,
    )
    from kfreeze_tui.core.train.check import (
        model_outputs as output_list,
    )

    warnings: list[str] = []
    planned: list[Finding] = []
    if Path(args.model).suffix.lower() == ".toml":
        model, warnings, planned = _plan_model(args)
    else:
        from kfreeze_tui.core.model.loading import LoadOptions, load

        # Compiled, as training code loads it: the optimizer's learning rate is read, and the
        # step trains with the file's own optimizer and loss.
        options = LoadOptions(
            weights="none",
            custom_objects=args.custom_objects,
            unsafe=args.unsafe,
            gpu=args.gpu,
            compile=True,
        )
        loaded = load(args.model, options)
        model, warnings = loaded.model, loaded.warnings
    findings = planned + recompile_findings(model) + static_findings(model, walk(model))
    step = None
    if not args.no_step and model.trainable_weights:
        step = one_step(model)  # the model as loaded: the file is never written
        findings += step_findings(step)
    findings.sort(key=lambda finding: finding.severity != "error")
    errors = sum(1 for finding in findings if finding.severity == "error")
    if args.json:
        json.dump(
            {
                "model": model.name,
                "outputs": [
                    {"name": name, "shape": list(shape)} for name, shape in output_list(model)
                ],
                "findings": [finding.to_json() for finding in findings],
                "step": step.to_json() if step is not None else None,
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
    else:
        for warning in warnings:
            _warn(warning)
        for finding in findings:
            print(f"{finding.severity}: {finding.code}: {finding.message}")
        if step is not None:
            print(step.summary())
        print(outputs_line(model))
        if not findings:
            print("no findings: the model trains as it is set up to")
    return EXIT_INTERNAL if errors else EXIT_OK


def _plan_model(args: argparse.Namespace) -> tuple[Any, list[str], list[Any]]:
    """``kfreeze check PLAN.toml``: the model the plan builds (as ``kfreeze apply`` would,
    for phase 1), the notes on how the plan was matched, and a finding for each output of
    the model that the plan drops."""
    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.plan.head import placement, validate
    from kfreeze_tui.core.session import open_plan
    from kfreeze_tui.core.train.check import dropped_output_findings

    session, notes = open_plan(Path(args.model), gpu=args.gpu, use_cache=False)
    problems = validate(session.info, session.head)
    if problems:
        raise PlanError(problems[0].rstrip("."))
    model, _ = session.build(session.initial_plan(), session.head, session.compile_spec)
    found = placement(session.info, session.head)
    dropped = [row.name for row in found.dropped] if found is not None else []
    new = list(found.new_outputs) if found is not None else []
    return model, notes, dropped_output_findings(dropped, new)


def _error(message: str) -> None:
    print(f"kfreeze: error: {message}", file=sys.stderr)


@contextlib.contextmanager
def _load_progress_on_stderr() -> Iterator[None]:
    """A progress line on standard error while a long model load runs (nothing for a quick
    one; see :mod:`kfreeze_tui.progress_line`). Written to a copy of descriptor 2 taken
    now, since kfreeze points descriptor 2 at a log while Keras loads."""
    from kfreeze_tui.core.model.load_progress import progress_delay
    from kfreeze_tui.progress_line import LoadProgressLine

    try:
        sys.stderr.flush()
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a test's capture buffer)
        yield
        return
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    with os.fdopen(fd, "w", encoding=encoding, errors="replace") as stream:
        in_place = stream.isatty() and not dumb_terminal()
        with LoadProgressLine(stream, in_place=in_place, delay=progress_delay(in_place)):
            yield


def run(argv: Sequence[str], owns_process: bool = False) -> int:
    """Parse ``argv`` and run the command; never raises.

    Args:
        argv: the arguments after the program name.
        owns_process: this is the ``kfreeze`` command's own process (:func:`main`), so
            process-wide settings are its to make (GPUs hidden unless ``--gpu``, a higher
            recursion limit); a caller running a command inside its own process keeps them.

    Returns:
        The process exit code.
    """
    argv = list(argv)
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = _StandardOutput(stdout)  # type: ignore[assignment]
    try:
        try:
            if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version")):
                args = build_parser().parse_args(argv)
                handler: Callable[[argparse.Namespace], int] = args.handler
            else:
                args = build_tui_parser().parse_args(argv)
                handler = _run_tui
        except SystemExit as exc:  # --help, --version or a usage error, printed by argparse
            if sys.stdout is not None:
                sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if owns_process:
            from kfreeze_tui.core.runtime.process import RuntimeOptions, configure

            # Before any handler: TensorFlow reads them when it is imported (for the
            # explorer, in the app's worker).
            configure(RuntimeOptions(gpu=bool(getattr(args, "gpu", False))))
        if handler is _run_tui:
            sys.stdout = stdout  # the explorer's terminal is the app's own business
            code = handler(args)
        else:
            with _load_progress_on_stderr():
                code = handler(args)
        if sys.stdout is not None:
            sys.stdout.flush()  # here, where a closed pipe or a full disk is still caught
        return code
    except OutputError as exc:
        _output_gone(stdout)
        _error(f"could not write to standard output: {exc}; the output is incomplete.")
        return EXIT_USAGE
    except KfreezeError as exc:  # every error kfreeze raises on purpose
        _error(exc.sentence)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `kfreeze layers ... | head`: the reader left; that is not an error.
        _output_gone(stdout)
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("KFREEZE_DEBUG"):
            traceback.print_exc()
        _error(describe(exc))
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout


def main() -> None:
    """Entry point of the ``kfreeze`` console script."""
    sys.exit(run(sys.argv[1:], owns_process=True))
