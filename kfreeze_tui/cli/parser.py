"""The argument parsers: one function per option group, shared by every command that takes it.

Nothing here imports Keras, Rich or a command's module: ``kfreeze --help`` stays cheap. A
command's parser records only the command's name; :func:`kfreeze_tui.cli.run` imports the
command's module when that command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kfreeze_tui._version import __version__

DESCRIPTION = """\
Choose what to freeze and what to train when fine-tuning a Keras model.

commands:
  kfreeze [MODEL]        open the explorer on MODEL (without MODEL: pick one from a list)
  kfreeze layers MODEL   print every layer with its index, shape, params and trainable state
  kfreeze models         list the architectures and the keras-hub presets in the local cache
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

#: The subcommands; anything else on the command line opens the explorer (``kfreeze MODEL``).
SUBCOMMANDS = ("layers", "models", "export", "apply", "convert", "cost", "check", "cache")

_Commands = Any  # argparse's _SubParsersAction, which has no public name


# -- the option groups -------------------------------------------------------------------


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="architecture name, .keras/.h5 file, or keras-hub preset (a folder, or a name "
        "in the local cache)",
    )


def add_json_option(
    parser: argparse.ArgumentParser, help: str = "print one JSON object instead"
) -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_freeze_before_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--freeze-before", metavar="NAME|INDEX|PATH", help=help)


def _add_custom_objects_and_unsafe(group: Any, custom_objects_help: str) -> None:
    group.add_argument("--custom-objects", metavar="FILE.py", type=Path, help=custom_objects_help)
    group.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers (their Python code runs on loading): trusted files only",
    )


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """How to load MODEL, an architecture name or a model file."""
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
    _add_custom_objects_and_unsafe(
        group, "a Python file that defines the custom layers a model file uses"
    )
    group.add_argument(
        "--gpu",
        action="store_true",
        help="let TensorFlow use the GPU (memory growth on); by default kfreeze stays on "
        "the CPU and leaves the GPU to training jobs",
    )


def add_file_options(parser: argparse.ArgumentParser, gpu_help: str | None) -> None:
    """The load options that matter for a model file (not for an architecture name)."""
    group = parser.add_argument_group("loading the model")
    _add_custom_objects_and_unsafe(
        group, "a Python file that defines the custom layers (or model class) the file uses"
    )
    if gpu_help:
        group.add_argument("--gpu", action="store_true", help=gpu_help)


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the layer-table cache (build and walk the model anew)",
    )


def add_bn_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bn",
        choices=("frozen", "trainable"),
        default="frozen",
        help="BatchNormalization after the boundary (default: kept frozen)",
    )


def add_lora_options(parser: argparse.ArgumentParser) -> None:
    """``--lora RANK`` and ``--lora-targets``: LoRA as Keras's ``enable_lora`` puts it."""
    group = parser.add_argument_group("LoRA")
    group.add_argument(
        "--lora",
        metavar="RANK",
        help="put LoRA adapters of this rank on the targeted layers (their kernels freeze, "
        "their adapters and biases train, whatever the boundary says); `layers` then counts "
        "LoRA alone, every other weight frozen, as keras-hub's backbone.enable_lora does",
    )
    group.add_argument(
        "--lora-targets",
        metavar="attention|linear|all|REGEX",
        help="which layers take LoRA: attention (keras-hub's query/value layers, the "
        "default), linear (every Dense and EinsumDense), all (every layer that can), or a "
        "regular expression matching whole layer names",
    )


def add_outputs_options(group: Any) -> None:
    """Which of a multi-output model's outputs the head replaces, and which others stay."""
    group.add_argument(
        "--replace-output",
        metavar="NAME",
        help="the output (its layer's name, or its key for a model returning a dict: "
        "pooled_output) the head takes the place of (default: the first output that ends in a "
        "classifier)",
    )
    group.add_argument(
        "--keep-output",
        action="append",
        default=[],
        metavar="NAME",
        help="another output of the model to keep after the head's, without a loss "
        "(repeatable; default: none, and the export says which outputs it drops)",
    )


def add_head_options(parser: argparse.ArgumentParser) -> None:
    """The new head and how it is compiled."""
    group = parser.add_argument_group("the new head")
    group.add_argument(
        "--head",
        choices=("classifier", "none"),
        default="classifier",
        help="classifier: the head below (default); none: export the model as it is, frozen "
        "as planned and uncompiled, for your own task model (the options below then do not "
        "apply)",
    )
    group.add_argument(
        "--feature-layer",
        metavar="NAME",
        help="where the head attaches (default: where the classifier of the replaced output "
        "takes its features, or that output when it ends in no classifier)",
    )
    add_outputs_options(group)
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


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """The files an export writes."""
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


# -- the commands ------------------------------------------------------------------------


def _command(commands: _Commands, name: str, help: str, description: str) -> Any:
    return commands.add_parser(name, help=help, description=description)


def _layers(commands: _Commands) -> None:
    layers = _command(
        commands,
        "layers",
        help="print every layer of a model",
        description="Print every layer of MODEL with the index model.layers gives it, its "
        "output shape, parameter count and trainable state, grouped by stage.",
    )
    add_model_argument(layers)
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
    add_lora_options(layers)
    add_json_option(layers)
    add_load_options(layers)
    add_cache_option(layers)


def _cache(commands: _Commands) -> None:
    cache = _command(
        commands,
        "cache",
        help="show or clear the layer-table cache",
        description="kfreeze keeps the layer table of every model it opened (not weights) "
        "under $XDG_CACHE_HOME/kfreeze, so that opening it again is instant. "
        "`kfreeze cache` says where and how big; `kfreeze cache clear` empties it.",
    )
    cache.add_argument("action", nargs="?", choices=["clear"], help="clear: remove every entry")


def _models(commands: _Commands) -> None:
    models = _command(
        commands,
        "models",
        help="list the keras.applications architectures and the cached keras-hub presets",
        description="List the keras.applications architectures kfreeze can open by name, and "
        "the keras-hub presets already in the local kagglehub or Hugging Face cache (kfreeze "
        "opens them offline; it never downloads).",
    )
    add_json_option(models, "print JSON instead of a table")


def _export(commands: _Commands) -> None:
    export = _command(
        commands,
        "export",
        help="freeze, add a head and write a ready-to-train model",
        description="Freeze every layer of MODEL before LAYER, add a classification head, "
        "compile, and write a .keras file that is verified by loading it back; optionally "
        "also the plan, a plain-Keras script and an inference SavedModel.",
    )
    add_model_argument(export)
    add_freeze_before_option(
        export,
        "the first layer that trains: a name (conv5_block1_1_conv), an index of "
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
        help="the script builds and trains under tf.distribute.MirroredStrategy (this "
        "machine's GPUs) or MultiWorkerMirroredStrategy (several machines: run it on each, "
        "with TF_CONFIG)",
    )
    export.add_argument(
        "--cache-features",
        action="store_true",
        help="the script gets cache_features(ds, directory) and train(..., cache_dir=...): "
        "the frozen part runs once and the rest trains on its cached output (needs a plan "
        "whose frozen part is a pure function of the input: nothing before the cut trains, "
        "nothing random runs there)",
    )
    add_bn_option(export)
    add_lora_options(export)
    add_head_options(export)
    add_output_options(export)
    add_load_options(export)


def _apply(commands: _Commands) -> None:
    apply = _command(
        commands,
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
    add_outputs_options(apply.add_argument_group("the model's outputs (instead of the plan's)"))
    add_output_options(apply)
    apply.add_argument("--gpu", action="store_true", help="let TensorFlow use the GPU")


def _convert(commands: _Commands) -> None:
    convert = _command(
        commands,
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
    add_json_option(convert, "print one JSON object")
    add_file_options(convert, gpu_help=None)


def _cost(commands: _Commands) -> None:
    cost = _command(
        commands,
        "cost",
        help="what training costs at each boundary: memory and step FLOPs",
        description="Estimate, for MODEL at a batch size, optimizer and dtype policy, the "
        "training memory (weights, gradients, optimizer state, activations) and the FLOPs of "
        "one step, for head-only training, every stage start and full fine-tuning (or one "
        "--freeze-before boundary); for a model file, also as the file is set up to train. "
        "Nothing is computed on the GPU; --measure runs real steps.",
    )
    add_model_argument(cost)
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
        "--examples",
        type=int,
        default=10000,
        help="training examples, for the feature cache's disk and FLOPs (default 10000)",
    )
    cost.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="epochs, for the feature cache's FLOPs against training the whole model (default 10)",
    )
    add_freeze_before_option(cost, "price this boundary only ('all': head only)")
    add_bn_option(cost)
    add_lora_options(cost)
    cost.add_argument(
        "--measure",
        action="store_true",
        help="also run real training steps on synthetic data for the boundary and for full "
        "fine-tuning (CPU unless --gpu), and report seconds per step and peak GPU memory",
    )
    add_json_option(cost)
    add_load_options(cost)
    add_cache_option(cost)


def _check(commands: _Commands) -> None:
    check = _command(
        commands,
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
    add_json_option(check)
    check.add_argument(
        "--no-step", action="store_true", help="static findings only: do not train a step"
    )
    add_file_options(check, gpu_help="run the step on the GPU")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; ``args.command`` names the one parsed."""
    parser = argparse.ArgumentParser(
        prog="kfreeze",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_layers, _cache, _models, _export, _apply, _convert, _cost, _check):
        add(commands)
    return parser


def build_tui_parser() -> argparse.ArgumentParser:
    """The parser of ``kfreeze [MODEL]``, which opens the explorer (``args.command`` is
    ``tui``)."""
    parser = argparse.ArgumentParser(
        prog="kfreeze",
        description="Open the explorer on MODEL: an architecture name, a .keras/.h5 file or "
        "a keras-hub preset. "
        "Without MODEL, a picker lists the architectures and the model files here.",
        epilog="Other commands: kfreeze layers, kfreeze models (kfreeze --help).",
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="architecture or model file")
    add_load_options(parser)
    add_cache_option(parser)
    parser.set_defaults(command="tui")
    return parser
