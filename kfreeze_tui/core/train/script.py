"""A standalone, readable Python script that rebuilds the exported model with Keras alone.

It is written the way a careful engineer writes it by hand: build or load the base, set the
trainable flags (by name, with the index range in a comment), add the head, compile after the
flags; then the data (for an image model: ``load_images``, an image folder at the model's input
size through the architecture's own ``preprocess_input``) and ``train``. Users keep it in their
training code, so it imports nothing but keras (and the standard library).

The files it reads (the model, a weights file) are named from the script's own folder, so it
runs from any working folder; and a model too deep for Python's default recursion limit gets
the limit raised, as kfreeze raises it for itself.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from kfreeze_tui._version import __version__
from kfreeze_tui.core.model import catalog, hub
from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, format_shape
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.model.source import SourceKind, resolve
from kfreeze_tui.core.plan.features import FeatureCache
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView
from kfreeze_tui.core.plan.head import (
    HEAD_OUTPUT,
    HeadSpec,
    attachment,
    dropped_outputs,
    kept_outputs,
    model_outputs,
    pooling_class,
    resolved_pooling,
)
from kfreeze_tui.core.plan.phases import CompileSpec, Phase
from kfreeze_tui.core.train.adapters import script_source
from kfreeze_tui.core.train.build import loss_for
from kfreeze_tui.core.train.feature_script import (
    CACHE_IMPORTS,
    cache_lines,
    cached_main,
    cached_train,
)
from kfreeze_tui.core.train.fit import phase_setup

#: Python's own recursion limit, which a script run with a backend other than TensorFlow
#: keeps (importing TensorFlow raises it to 3,000).
PYTHON_RECURSION_LIMIT = 1_000
#: Frames per layer of depth the script allows for. Keras loads, connects and traces a graph
#: recursively, about a frame per layer: loading a 1,000-layer chain needs 1,022, and the
#: script of a 3,000-layer chain, loading and training one step, between 3,000 and 3,500.
_FRAMES_PER_LAYER = 3


def graph_depth(info: ModelInfo) -> int:
    """The longest chain of layers from an input to an output; a nested model counts as
    the depth of its own graph."""

    def depth_of(parent: tuple[int, ...]) -> int:
        depths: dict[str, int] = {}
        for row in info.children(parent):
            own = max(depth_of(row.path), 1) if row.is_container else 1
            depths[row.name] = own + max((depths.get(name, 0) for name in row.inbound), default=0)
        return max(depths.values(), default=0)

    return depth_of(())


def recursion_limit(info: ModelInfo) -> int | None:
    """The recursion limit the script sets for this model, None when Python's own will do
    (a graph less than half as deep as the default limit)."""
    depth = graph_depth(info)
    if depth * 2 < PYTHON_RECURSION_LIMIT:
        return None
    return max(10_000, math.ceil(depth * _FRAMES_PER_LAYER / 1_000) * 1_000)


def script_file(path: str, script_dir: Path | None) -> tuple[str, bool]:
    """Where the script finds a file kfreeze was given as ``path`` (relative to kfreeze's
    working folder): relative to the script's own folder when the file is in it or below
    it, by its absolute path otherwise, so that the script finds it from any working folder.

    Args:
        path: the file as the user gave it.
        script_dir: the folder the script is written to (None: the working folder).

    Returns:
        The path (POSIX, relative to the script's folder, or absolute) and whether it is
        relative to the script's folder.
    """
    target = Path(path).expanduser().resolve()
    folder = (script_dir if script_dir is not None else Path.cwd()).expanduser().resolve()
    try:
        return target.relative_to(folder).as_posix(), True
    except ValueError:
        return str(target), False


def _file_expr(path: str, script_dir: Path | None) -> tuple[str, bool]:
    text, relative = script_file(path, script_dir)
    literal = json.dumps(text, ensure_ascii=False)  # a Python string in double quotes
    return (f"HERE / {literal}" if relative else f"Path({literal})"), relative


def _files_lines(files: list[tuple[str, str, bool]]) -> list[str]:
    """``HERE`` and one constant per file the script reads (name, expression, uses HERE)."""
    if not files:
        return []
    lines: list[str] = []
    if any(here for _name, _expr, here in files):
        lines += [
            "# Files are named from this script's own folder (or by their absolute path when",
            "# they are outside it), so that the script runs from any working folder.",
            "HERE = Path(__file__).resolve().parent",
        ]
    else:
        lines.append("# Files outside this script's folder, by their absolute paths.")
    lines += [f"{name} = {expr}" for name, expr, _here in files]
    return lines


def converted_name(source: str) -> str:
    """Where the script expects the Keras 3 copy of a legacy model file."""
    path = Path(source)
    return str(path.with_name(f"{path.stem}_keras3.keras"))


def _architecture(source: str) -> catalog.Architecture | None:
    """The keras.applications architecture ``source`` names (None for a model file), as
    the loader reads it (:func:`kfreeze_tui.core.model.source.resolve`)."""
    return resolve(source).architecture


def preprocess_function(source: str) -> str | None:
    """``keras.applications.resnet.preprocess_input``: the input scaling that goes with the
    architecture ``source`` names (its imagenet weights were trained on inputs scaled so);
    None for a model file, whose preprocessing kfreeze cannot know."""
    arch = _architecture(source)
    return None if arch is None else f"keras.applications.{arch.family}.preprocess_input"


def _base_files(
    source: str, load: LoadOptions, legacy: bool, script_dir: Path | None
) -> list[tuple[str, str, bool]]:
    """The files the script reads, as :func:`_files_lines` takes them: the model file (its
    Keras 3 copy for a legacy file) or a weights file."""
    arch = _architecture(source)
    if arch is not None:
        weights = load.weights.strip()
        if weights.lower() in ("none", "random", "", "imagenet"):
            return []
        return [("WEIGHTS", *_file_expr(weights, script_dir))]
    kind = resolve(source).kind
    if kind is SourceKind.PRESET_NAME:
        return []
    if kind is SourceKind.PRESET_DIR:
        return [("PRESET", *_file_expr(source, script_dir))]
    return [("MODEL", *_file_expr(converted_name(source) if legacy else source, script_dir))]


def needs_keras_hub(source: str) -> bool:
    """Whether the script imports keras_hub: the source is a keras-hub preset, or a ``.keras``
    file of a keras-hub model (Keras finds its classes only once keras_hub is imported)."""
    named = resolve(source)
    if named.kind in (SourceKind.PRESET_DIR, SourceKind.PRESET_NAME):
        return True
    return (
        named.kind is SourceKind.MODEL_FILE
        and named.path is not None
        and hub.file_uses_keras_hub(named.path)
    )


def _preset_lines(source: str, load: LoadOptions) -> list[str] | None:
    """Step 1 for a keras-hub preset: its backbone, as kfreeze opened it (None for any other
    source)."""
    kind = resolve(source).kind
    if kind not in (SourceKind.PRESET_DIR, SourceKind.PRESET_NAME):
        return None
    where = "str(PRESET)" if kind is SourceKind.PRESET_DIR else json.dumps(source)
    weights = load.weights.strip().lower() not in ("none", "random", "")
    lines = []
    if kind is SourceKind.PRESET_NAME:
        lines += [
            "# A keras-hub preset by name: keras-hub reads it from its local cache (kagglehub's or",
            "# Hugging Face's), and downloads it where it is not there yet.",
        ]
    lines.append(f"base = keras_hub.models.Backbone.from_preset({where}, load_weights={weights})")
    return lines


def _base_lines(
    source: str, load: LoadOptions, legacy: bool = False, script_dir: Path | None = None
) -> list[str]:
    preset = _preset_lines(source, load)
    if preset is not None:
        return preset
    arch = _architecture(source)
    if arch is not None:
        weights = load.weights.strip()
        if weights.lower() in ("none", "random", ""):
            weights_src = "None"
        elif weights.lower() == "imagenet":
            weights_src = '"imagenet"'
        else:
            weights_src = "str(WEIGHTS)"
        shape = load.input_shape or arch.default_input_shape
        return [
            f"base = keras.applications.{arch.name}(",
            f"    weights={weights_src},",
            f"    include_top={load.include_top},",
            f"    input_shape={tuple(shape)!r},",
            ")",
        ]
    lines = []
    custom = _shown(str(load.custom_objects), script_dir) if load.custom_objects else None
    if custom:
        lines += [
            f"# The model uses custom layers: import {custom} before loading it,",
            "# so that they are registered with Keras.",
        ]
    safe = ", safe_mode=False" if load.unsafe else ""
    if legacy:
        target = _shown(converted_name(source), script_dir)
        extra = f" --custom-objects {custom}" if custom else ""
        extra += " --unsafe" if load.unsafe else ""
        lines += [
            f"# {Path(source).name} was written by an older Keras, which Keras 3 cannot load as it",
            "# is. Convert it once (the repairs are listed and the result verified), in this",
            "# script's folder:",
            f"#     kfreeze convert {_shown(source, script_dir)}{extra} -o {target}",
            "# and this script loads the Keras 3 file:",
        ]
    lines.append(f"base = keras.saving.load_model(MODEL, compile=False{safe})")
    return lines


def _shown(path: str, script_dir: Path | None) -> str:
    """A file as a comment names it: relative to the script's folder, or absolute."""
    return script_file(path, script_dir)[0]


#: Every layer of the base trainable, whatever the source froze: Keras runs no setter when
#: a flag does not change (``base.trainable = True`` on a base already True leaves a layer
#: frozen inside it), so the flag goes off, then on.
_ALL_TRAINABLE = [
    "# Every layer trainable first: off, then on (Keras runs no setter when the flag does",
    "# not change, and a layer the source froze would stay frozen).",
    "base.trainable = False",
    "base.trainable = True",
]


def _freeze_lines(view: PlanView, plan: FreezePlan) -> list[str]:
    """Step 2 of the script: every layer before the boundary frozen, by name (the index in a
    comment), BatchNormalization and the exceptions as the plan says."""
    boundary = view.boundary_layer(plan)
    if boundary is None:
        return ["# Every layer is frozen.", "base.trainable = False"]
    keep_bn = plan.bn_policy is BNPolicy.FROZEN
    if any(row.is_container for row in view.info.layers):
        exceptions = sorted(_script_layer(view, p).name for p in plan.exceptions)
        return _nested_freeze_lines(_script_layer(view, boundary.path), keep_bn, exceptions)
    lines = [
        f"# Freeze every layer before {boundary.name}: by index, that is",
        f"# `for layer in base.layers[:{boundary.index}]`.",
        *_ALL_TRAINABLE,
        f'cut = [layer.name for layer in base.layers].index("{boundary.name}")',
        "for layer in base.layers[:cut]:",
        "    layer.trainable = False",
    ]
    if keep_bn:
        lines += [
            "# BatchNormalization after the boundary stays frozen, so it runs in inference",
            "# mode with its moving statistics, as the Keras fine-tuning guide recommends.",
            "for layer in base.layers[cut:]:",
            "    if isinstance(layer, keras.layers.BatchNormalization):",
            "        layer.trainable = False",
        ]
    if plan.exceptions:
        lines.append("# Exceptions to the boundary:")
        for path in sorted(plan.exceptions):
            state = view.leaf_trainable(plan, path)
            lines.append(f'base.get_layer("{view.info.layer(path).name}").trainable = {state}')
    return lines


def _script_layer(view: PlanView, path: tuple[int, ...]) -> LayerInfo:
    """The layer the model-level step of the script sets for ``path``: the layer itself, or
    the outermost subclassed layer holding it (the script walks models there; the flags
    inside a subclassed layer are set afterwards by name, see :func:`sublayer_flags`)."""
    outer = _outer_subclassed(view.info, path)
    return outer if outer is not None else view.info.layer(path)


def _outer_subclassed(info: ModelInfo, path: tuple[int, ...]) -> LayerInfo | None:
    """The outermost subclassed layer strictly holding the row at ``path`` (None: none)."""
    for depth in range(1, len(path)):
        row = info.layer(path[:depth])
        if row.is_container and row.subclassed:
            return row
    return None


def chain_name(info: ModelInfo, path: tuple[int, ...]) -> str:
    """A layer by the names of the layers that hold it and its own, joined by "/"
    (``mha/query``): how the script's ``find_layers`` finds a layer inside a subclassed one."""
    return "/".join(info.layer(path[:depth]).name for depth in range(1, len(path) + 1))


def sublayer_flags(view: PlanView, plan: FreezePlan) -> dict[str, bool]:
    """The flags inside subclassed layers that a freeze stops inside, by chain of names,
    outer layers first: the subclassed layer itself (trainable), then each sublayer with
    weights whose state differs from its holder's (setting a layer's flag sets every layer
    inside it).
    Empty when every subclassed layer is wholly frozen or wholly trainable, which the
    model-level flags (and a ``.keras`` file) keep. A ``.keras`` file does not keep these
    flags: they are set again after building the model and after loading its file."""
    info = view.info

    def trains(path: tuple[int, ...]) -> bool:
        start, end = view.span(path)
        return any(view.leaf_trainable(plan, view.leaves[i].path) for i in range(start, end))

    flags: dict[str, bool] = {}
    for row in info.layers:
        if not (row.is_container and row.subclassed) or _outer_subclassed(info, row.path):
            continue
        start, end = view.span(row.path)
        if len({view.leaf_trainable(plan, view.leaves[i].path) for i in range(start, end)}) < 2:
            continue
        state = {row.path: True}
        flags[chain_name(info, row.path)] = True
        inside = [r for r in info.layers if r.path[: len(row.path)] == row.path and r != row]
        for inner in sorted(inside, key=lambda r: r.path):
            own = trains(inner.path)
            # A layer without weights trains nothing whatever its flag; left out, since
            # Keras names such sublayers by a per-process count (``dropout_4``).
            if own != state[inner.path[:-1]] and inner.params:
                flags[chain_name(info, inner.path)] = own
            state[inner.path] = own
    return flags


def _sublayer_lines(view: PlanView, plan: FreezePlan) -> list[str]:
    """Step 2c: the flags inside subclassed layers that the freeze stops inside."""
    flags = sublayer_flags(view, plan)
    if not flags:
        return []
    return [
        "",
        "# The freeze stops inside subclassed layers: their sublayers' flags, by chain of names,",
        "# outer layers first. A .keras file does not keep them: load a saved model with load().",
        "SUBLAYER_FLAGS = {",
        *(f"    {json.dumps(name)}: {state}," for name, state in flags.items()),
        "}",
        "set_sublayer_flags(base, SUBLAYER_FLAGS)",
    ]


#: The script's loader of a saved model when the freeze stops inside subclassed layers.
_LOAD_LINES = [
    "",
    "",
    "def load(path):",
    '    """A model this script saved (or kfreeze exported), loaded with its freeze: Keras',
    "    builds the sublayers of a subclassed layer trainable on loading, and a .keras file",
    "    keeps no sublayer's flag. Frozen layers are frozen again (off after on: Keras runs",
    '    no setter for a flag that does not change), then SUBLAYER_FLAGS set."""',
    "    loaded = keras.saving.load_model(path)",
    "    for layer in loaded._flatten_layers(include_self=False):",
    "        if not layer.trainable and layer._flatten_layers(include_self=False):",
    "            layer.trainable = True",
    "            layer.trainable = False",
    "    set_sublayer_flags(loaded, SUBLAYER_FLAGS)",
    "    return loaded",
]


def _nested_freeze_lines(boundary: LayerInfo, keep_bn: bool, exceptions: list[str]) -> list[str]:
    """Step 2 for a model that nests others: the layers counted depth first, and the nested
    models' flags set before their layers'."""
    return [
        "# The model nests other models: kfreeze counts layers depth first, a nested model",
        "# replaced by its own layers, and freezes every layer before the boundary in that order.",
        f'BOUNDARY = "{boundary.name}"  # index {boundary.path_text}',
        f"KEEP_BATCHNORM_FROZEN = {keep_bn}",
        f"EXCEPTIONS = {set(exceptions)!r}" if exceptions else "EXCEPTIONS = set()",
        "",
        "",
        "def leaves(container):",
        '    """Layers depth first, each nested model replaced by its layers."""',
        "    for layer in container.layers:",
        "        if isinstance(layer, keras.Model) and layer.layers:",
        "            yield from leaves(layer)",
        "        else:",
        "            yield layer",
        "",
        "",
        "def containers(container):",
        '    """The nested models, outermost first."""',
        "    for layer in container.layers:",
        "        if isinstance(layer, keras.Model) and layer.layers:",
        "            yield layer",
        "            yield from containers(layer)",
        "",
        "",
        "all_layers = list(leaves(base))",
        "cut = [layer.name for layer in all_layers].index(BOUNDARY)",
        "trains = {}",
        "for i, layer in enumerate(all_layers):",
        "    state = i >= cut and not (",
        "        KEEP_BATCHNORM_FROZEN and isinstance(layer, keras.layers.BatchNormalization)",
        "    )",
        "    trains[id(layer)] = state != (layer.name in EXCEPTIONS)",
        "# Setting a nested model's trainable overwrites its layers' flags: containers first.",
        *_ALL_TRAINABLE,
        "for container in containers(base):",
        "    container.trainable = any(trains[id(layer)] for layer in leaves(container))",
        "for layer in all_layers:",
        "    layer.trainable = trains[id(layer)]",
    ]


def _no_head_lines(info: ModelInfo) -> list[str]:
    """Step 3 without a head: the base is the model, its outputs as they are."""
    outputs = [f"{key} ({layer})" for key, layer in info.output_keys] or [
        row.name for row in model_outputs(info)
    ]
    return [
        "# No head: the model is the base, frozen as above, for your own task model",
        f"# (its outputs: {', '.join(outputs) or 'as the base makes them'}).",
        "model = base",
    ]


def _head_lines(view: PlanView, head: HeadSpec, mixed_precision: bool) -> list[str]:
    info = view.info
    if head.is_none:
        return _no_head_lines(info)
    found = attachment(info, head)
    assert found is not None
    pooling = resolved_pooling(info, head)
    shape = format_shape(found.shape)
    if found.of_input:
        lines = [
            f"# The features {found.layer.name} takes (a plain operation's output, not a layer's).",
            f'x = base.get_layer("{found.layer.name}").input  # {shape}',
        ]
    else:
        lines = [f'x = base.get_layer("{found.layer.name}").output  # {shape}']
    if pooling != "none":
        pool_class = pooling_class(pooling, found.shape)
        lines.append(f'x = keras.layers.{pool_class}(name="head_pool")(x)')
    for i, dense in enumerate(head.hidden, start=1):
        lines.append(
            f'x = keras.layers.Dense({dense.units}, activation="{dense.activation}", '
            f'name="head_dense_{i}")(x)'
        )
    if head.dropout > 0:
        lines.append(f'x = keras.layers.Dropout({head.dropout!r}, name="head_dropout")(x)')
    dtype = ', dtype="float32"' if mixed_precision and head.float32_head else ""
    lines.append(
        f'outputs = keras.layers.Dense({head.classes}, activation="{head.activation}"{dtype}, '
        f'name="{HEAD_OUTPUT}")(x)'
    )
    kept = [row.name for row in kept_outputs(info, head)]
    dropped = [row.name for row in dropped_outputs(info, head)]
    if kept:
        lines += [
            "# The base's outputs the plan keeps, after the head's; compile() gives them no loss.",
            "KEEP = [" + ", ".join(f'"{name}"' for name in kept) + "]",
            "outputs = [outputs] + [",
            "    out for name, out in zip(base.output_names, base.outputs) if name in KEEP",
            "]",
        ]
    if dropped:
        lines.append(f"# Dropped outputs of the base: {', '.join(dropped)}.")
    if info.input_keys:
        lines.append("# The base takes a dict of inputs; so does the model.")
    inputs = "base.input" if info.input_keys else "base.inputs"
    lines.append(f'model = keras.Model({inputs}, outputs, name="{info.name}_finetune")')
    return lines


def _compile_sources(choice: Any, kept: int) -> tuple[str, str]:
    """``loss=`` and ``metrics=`` as source: one entry per output when outputs are kept
    after the head's (None for each of them: kfreeze cannot know their losses)."""
    if not kept:
        return choice.loss_source, f'["{choice.metric}"]'
    nones = ", None" * kept
    return f"[{choice.loss_source}{nones}]", f'[["{choice.metric}"]{nones}]'


_STRATEGY_CLASS = {"mirrored": "MirroredStrategy", "multiworker": "MultiWorkerMirroredStrategy"}
#: The ``tf.distribute`` strategies a script can build under.
STRATEGIES = tuple(_STRATEGY_CLASS)
_STRATEGY_NOTE = {
    "mirrored": "one replica per GPU of this machine.",
    "multiworker": "one replica per GPU of every worker (TF_CONFIG names the workers).",
}


#: train()'s epochs when the plan has no phases.
DEFAULT_EPOCHS = 10
_PHASED_TRAIN = 'def train(train_ds, val_ds=None, epochs=None, callbacks=None, verbose="auto"):'


def _optimizer_source(phase: Phase | None, compile_spec: CompileSpec) -> str:
    if phase is None:
        return f"keras.optimizers.Adam(learning_rate={compile_spec.learning_rate!r})"
    return "optimizer_for(PHASES[0])"


def _train_lines(
    view: PlanView,
    plan: FreezePlan,
    phases: tuple[Phase, ...],
    compile_spec: CompileSpec,
    choice: Any,
    strategy: str | None,
    kept: int = 0,
) -> tuple[list[str], list[str]]:
    """``PHASES``, ``set_phase`` and ``optimizer_for`` (defined before the model is
    compiled for phase 1), and ``train``, which runs every phase in turn."""
    if not phases:
        return [], list(_SINGLE_TRAIN)
    definitions = [
        "# The training phases, in order: each sets what trains, compiles again (compile()",
        "# captures the trainable weights) and continues the epoch count (train() below). lr",
        "# is one rate, or (low, high): low for the first stage that trains, rising",
        "# geometrically stage by stage, high for the new head.",
        "PHASES = [",
        *_phase_entries(view, plan, phases, compile_spec),
        "]",
        "# Where the base's stages start, as positions in leaves(base) (for (low, high) rates).",
        f"STAGE_STARTS = {_stage_starts(view)!r}",
        *(_phase_helpers(plan.lora is not None)),
    ]
    return definitions, _phased_train(choice, strategy, kept)


def _phase_entries(
    view: PlanView, plan: FreezePlan, phases: tuple[Phase, ...], compile_spec: CompileSpec
) -> list[str]:
    """One ``dict(...)`` line of ``PHASES`` per phase."""
    entries = []
    for phase in phases:
        boundary = None if phase.boundary is None else view.info.layer(phase.boundary).name
        rate: Any = (
            phase.lr_range
            if phase.lr_range is not None
            else (phase.lr if phase.lr is not None else compile_spec.learning_rate)
        )
        keep_bn = (phase.bn_policy or plan.bn_policy) is BNPolicy.FROZEN
        lora = f", lora={phase.plan(plan).lora is not None}" if plan.lora is not None else ""
        entries.append(
            f"    dict(boundary={boundary!r}, epochs={phase.epochs}, lr={rate!r}, "
            f"keep_batchnorm_frozen={keep_bn}{lora}),"
        )
    return entries


def _stage_starts(view: PlanView) -> list[int]:
    """Where the base's top-level stages start, as positions among its leaves."""
    leaves = view.leaves
    top_stage = [view.info.layer(leaf.path[:1]).stage for leaf in leaves]
    return [i for i in range(1, len(leaves)) if top_stage[i] != top_stage[i - 1]]


def _phased_train(choice: Any, strategy: str | None, kept: int) -> list[str]:
    """``train``: every phase in turn, compiled again (in the strategy's scope) for each."""
    scope = "        with strategy.scope():" if strategy else None
    loss_source, metrics_source = _compile_sources(choice, kept)
    compile_lines = [
        "model.compile(",
        "    optimizer=optimizer_for(phase),",
        f"    loss={loss_source},",
        f"    metrics={metrics_source},",
        ")",
    ]
    indent = "            " if scope else "        "
    lines = [
        "",
        "",
        _PHASED_TRAIN,
        '    """Every phase in turn; returns the merged history: {metric: [one per epoch]}.',
        "",
        "    Args:",
        "        train_ds: batches of (inputs, labels), e.g. load_images(folder).",
        "        val_ds: validation batches, or None.",
        '        epochs: None: each phase trains its own PHASES["epochs"]; a number: every',
        "            phase trains that many epochs instead.",
        "        callbacks: Keras callbacks (ModelCheckpoint, EarlyStopping, ...), kept across",
        "            the phases (the epoch count continues from one phase to the next).",
        "        verbose: as model.fit takes it (2: one line per epoch).",
        '    """',
        "    history = {}",
        "    epoch = 0",
        "    for phase in PHASES:",
        '        count = phase["epochs"] if epochs is None else epochs',
        "        set_phase(phase)",
    ]
    if scope:
        lines.append(scope)
    lines += [indent + line for line in compile_lines]
    lines += [
        "        result = model.fit(",
        "            train_ds,",
        "            validation_data=val_ds,",
        "            initial_epoch=epoch,",
        "            epochs=epoch + count,",
        "            shuffle=False,  # a dataset shuffles itself (load_images does): Keras warns",
        "            callbacks=callbacks,",
        "            verbose=verbose,",
        "        )",
        "        for key, values in result.history.items():",
        "            history.setdefault(key, []).extend(values)",
        "        epoch += count",
        "    return history",
    ]
    return lines


def _distributed(train: list[str]) -> list[str]:
    """``train`` under a strategy: ``fit_distributed`` (defined before it; it trains
    ``model``) where ``train`` calls ``model.fit`` (not another model's fit), with the
    same arguments but the shuffle flag it has no use for (and a compile of its own in the
    strategy's scope)."""
    lines = []
    for line in train:
        if line.startswith("    model.compile("):  # train() without a head compiles itself
            lines += [
                "    with strategy.scope():  # the optimizer's variables mirrored",
                "    " + line,
            ]
        elif not line.strip().startswith("shuffle="):
            lines.append(re.sub(r"(?<![\w.])model\.fit\(", "fit_distributed(", line))
    return lines


#: ``fit_distributed``: model.fit's work as a loop of ``strategy.run`` steps, which Keras 3
#: cannot do itself under MultiWorkerMirroredStrategy (keras-team/keras issue 20585).
_FIT_DISTRIBUTED = [
    "",
    "",
    "def fit_distributed(",
    '    train_ds, validation_data=None, epochs=1, initial_epoch=0, callbacks=None, verbose="auto"',
    "):",
    '    """model.fit\'s work under the strategy, as a loop of its own: Keras 3\'s model.fit',
    "    fails under MultiWorkerMirroredStrategy (keras-team/keras issue 20585).",
    "",
    "    Every worker calls it with the same dataset (the same order: give a shuffle the same",
    "    seed): each batch is the global batch, split between the replicas of all the workers,",
    "    and each worker reads its share. The gradients are summed across the replicas, so",
    "    every worker keeps the same weights. Takes model.fit's arguments and returns its",
    "    History ({metric: [one per epoch]} in history.history). Callbacks run on every",
    "    worker: give those that write files (ModelCheckpoint, ...) to the chief alone",
    "    (strategy.extended.should_checkpoint is True there).",
    '    """',
    "    train_dist = strategy.experimental_distribute_dataset(train_ds)",
    "    val_dist = None",
    "    if validation_data is not None:",
    "        val_dist = strategy.experimental_distribute_dataset(validation_data)",
    "    with strategy.scope():",
    "        # Variables are made in the strategy's scope, never inside strategy.run: the",
    "        # optimizer's, the compiled loss's and metrics' (built on one batch, then reset)",
    "        # and the running mean of the loss.",
    "        model.optimizer.build(model.trainable_variables)",
    "        x, y, weight = keras.utils.unpack_x_y_sample_weight(next(iter(train_ds)))",
    "        y_pred = model(x, training=False)",
    "        model.compute_loss(x, y, y_pred, weight, training=False)",
    "        model.compute_metrics(x, y, y_pred, weight)",
    "        model.reset_metrics()",
    '        mean_loss = keras.metrics.Mean(name="loss")',
    "",
    "    def train_step(batch):",
    "        x, y, weight = keras.utils.unpack_x_y_sample_weight(batch)",
    "        with tf.GradientTape() as tape:",
    "            y_pred = model(x, training=True)  # frozen BatchNormalization runs in inference",
    "            # The compiled loss plus the layers' own losses, averaged over this replica's",
    "            # examples and divided by the number of replicas (Keras does that under a",
    "            # strategy): the replicas' gradients sum to the global batch's.",
    "            loss = model.compute_loss(x, y, y_pred, weight, training=True)",
    "        gradients = tape.gradient(loss, model.trainable_variables)",
    "        # Sums the gradients across the replicas, then applies them on each one.",
    "        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))",
    "        mean_loss.update_state(loss * strategy.num_replicas_in_sync)",
    "        model.compute_metrics(x, y, y_pred, weight)",
    "",
    "    def test_step(batch):",
    "        x, y, weight = keras.utils.unpack_x_y_sample_weight(batch)",
    "        y_pred = model(x, training=False)",
    "        loss = model.compute_loss(x, y, y_pred, weight, training=False)",
    "        mean_loss.update_state(loss * strategy.num_replicas_in_sync)",
    "        model.compute_metrics(x, y, y_pred, weight)",
    "",
    "    @tf.function",
    "    def run_train(batch):",
    "        strategy.run(train_step, args=(batch,))",
    "",
    "    @tf.function",
    "    def run_test(batch):",
    "        strategy.run(test_step, args=(batch,))",
    "",
    '    def results(prefix=""):',
    "        # Read outside strategy.run, every metric sums its state over all the replicas.",
    '        values = {**model.get_metrics_result(), "loss": mean_loss.result()}',
    "        return {prefix + name: float(value) for name, value in values.items()}",
    "",
    "    history = keras.callbacks.History()",
    "    callbacks = keras.callbacks.CallbackList(",
    "        [*(callbacks or []), history], model=model, epochs=epochs, verbose=verbose",
    "    )",
    "    model.stop_training = False",
    "    callbacks.on_train_begin()",
    "    for epoch in range(initial_epoch, epochs):",
    "        callbacks.on_epoch_begin(epoch)",
    "        mean_loss.reset_state()",
    "        model.reset_metrics()",
    "        for batch in train_dist:",
    "            run_train(batch)",
    "        logs = results()",
    "        if val_dist is not None:",
    "            mean_loss.reset_state()",
    "            model.reset_metrics()",
    "            for batch in val_dist:",
    "                run_test(batch)",
    '            logs.update(results("val_"))',
    "        callbacks.on_epoch_end(epoch, logs)",
    "        if verbose != 0:",
    '            shown = " - ".join(f"{name}: {value:.4f}" for name, value in logs.items())',
    '            print(f"Epoch {epoch + 1}/{epochs} - {shown}")',
    "        if model.stop_training:",
    "            break",
    "    callbacks.on_train_end()",
    "    return history",
]


#: ``train`` without phases: one fit of the model as the script sets it up.
_NO_HEAD_USAGE = [
    "Run it to build the model; or import it and build your task model on `model` (the",
    "base with no head, frozen as planned), or train `model` itself with",
    "train(train_ds, loss).",
]

_NO_HEAD_TRAIN = [
    "",
    "",
    "def train(",
    f"    train_ds, loss, val_ds=None, epochs={DEFAULT_EPOCHS}, learning_rate=1e-4,",
    '    callbacks=None, verbose="auto",',
    "):",
    '    """Train the model with your loss (it has no head of kfreeze\'s: kfreeze cannot know',
    "    one); returns its history. A task model built on `model` trains the same weights.",
    "",
    "    Args:",
    "        train_ds: batches of (inputs, targets), in the structure the model returns.",
    "        loss: a Keras loss (or a dict of them, one per output) for model.compile.",
    "        val_ds: validation batches, or None.",
    "        epochs: how many epochs.",
    "        learning_rate: Adam's learning rate.",
    "        callbacks: Keras callbacks (ModelCheckpoint, EarlyStopping, ...).",
    "        verbose: as model.fit takes it (2: one line per epoch).",
    '    """',
    "    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)",
    "    return model.fit(",
    "        train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose",
    "    )",
]

_SINGLE_TRAIN = [
    "",
    "",
    f'def train(train_ds, val_ds=None, epochs={DEFAULT_EPOCHS}, callbacks=None, verbose="auto"):',
    '    """Train the model as it is set up above; returns its history.',
    "",
    "    Args:",
    "        train_ds: batches of (inputs, labels), e.g. load_images(folder).",
    "        val_ds: validation batches, or None.",
    "        epochs: how many epochs.",
    "        callbacks: Keras callbacks (ModelCheckpoint, EarlyStopping, ...).",
    "        verbose: as model.fit takes it (2: one line per epoch).",
    '    """',
    "    result = model.fit(",
    "        train_ds,",
    "        validation_data=val_ds,",
    "        epochs=epochs,",
    "        shuffle=False,  # a dataset shuffles itself (load_images does): Keras warns",
    "        callbacks=callbacks,",
    "        verbose=verbose,",
    "    )",
    "    return result.history",
]


def _phase_helpers(lora: bool) -> list[str]:
    """``base_leaves``, ``set_phase`` and ``optimizer_for``; with LoRA, ``set_phase`` puts
    it on (or keeps it on) after the flags, for the phases that have it."""
    if not lora:
        return list(_PHASE_HELPERS)
    end = _PHASE_HELPERS.index(_SET_PHASE_END) + 1
    return [*_PHASE_HELPERS[:end], *_SET_PHASE_LORA, *_PHASE_HELPERS[end:]]


_SET_PHASE_END = "        )"
_SET_PHASE_LORA = [
    '    if phase["lora"]:',
    "        # LoRA on its layers, put on when the first phase with it starts (Keras cannot",
    "        # take it off): each trains A, B and its bias whatever the boundary, and its",
    "        # kernel, which the flags above made trainable again, is frozen once more.",
    "        enable_lora_on(base, LORA_LAYERS, LORA_RANK)",
]

#: ``base_leaves``, ``set_phase`` and ``optimizer_for``, the same for every plan.
_PHASE_HELPERS = [
    "",
    "",
    "def base_leaves(container):",
    '    """The base\'s layers depth first, each nested model replaced by its layers."""',
    "    for layer in container.layers:",
    "        if isinstance(layer, keras.Model) and layer.layers:",
    "            yield from base_leaves(layer)",
    "        else:",
    "            yield layer",
    "",
    "",
    "def set_phase(phase):",
    '    """Freeze every layer of the base before the phase\'s boundary, train the rest."""',
    "    layers = list(base_leaves(base))",
    "    names = [layer.name for layer in layers]",
    '    cut = len(layers) if phase["boundary"] is None else names.index(phase["boundary"])',
    "    base.trainable = True",
    "    for container in base.layers:",
    "        if isinstance(container, keras.Model):",
    "            container.trainable = True",
    "    for i, layer in enumerate(layers):",
    "        layer.trainable = i >= cut and not (",
    '            phase["keep_batchnorm_frozen"]',
    "            and isinstance(layer, keras.layers.BatchNormalization)",
    "        )",
    "",
    "",
    "def optimizer_for(phase):",
    '    """Adam at the phase\'s rate; for (low, high), one Adam per rate (MultiOptimizer)."""',
    '    if not isinstance(phase["lr"], tuple):',
    '        return keras.optimizers.Adam(learning_rate=phase["lr"])',
    '    low, high = phase["lr"]',
    "    layers = list(base_leaves(base))",
    '    cut = len(layers) if phase["boundary"] is None else [',
    "        layer.name for layer in layers",
    '    ].index(phase["boundary"])',
    "    first = bisect.bisect_right(STAGE_STARTS, cut)",
    "    count = bisect.bisect_right(STAGE_STARTS, len(layers) - 1) - first + 1",
    "    adams = {}",
    "    mapping = {}",
    "    for i, layer in enumerate(layers[cut:], start=cut):",
    "        rank = bisect.bisect_right(STAGE_STARTS, i) - first",
    "        rate = low * (high / low) ** (rank / count)",
    "        adam = adams.setdefault(rate, keras.optimizers.Adam(learning_rate=rate))",
    "        for variable in layer.weights:",
    "            mapping[variable.path] = adam",
    "    head = adams.setdefault(high, keras.optimizers.Adam(learning_rate=high))",
    "    return keras.optimizers.MultiOptimizer(",
    "        keras.optimizers.OptimizerMap(default_optimizer=head, optimizer_map=mapping)",
    "    )",
]


_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def _label_mode(head: HeadSpec, compile_spec: CompileSpec) -> tuple[str, int]:
    """How image_dataset_from_directory should give the labels to the loss, and how many
    class folders that takes."""
    choice = loss_for(head, compile_spec)
    if choice.loss_class == "BinaryCrossentropy":
        # One sigmoid unit: two folders, labels 0 and 1. Several: one-hot rows (one label
        # per image, which is what a folder per class can say).
        return ("binary", 2) if head.classes == 1 else ("categorical", head.classes)
    if choice.loss_class == "CategoricalCrossentropy":
        return "categorical", head.classes
    return "int", head.classes


def _data_lines(
    source: str, view: PlanView, head: HeadSpec, compile_spec: CompileSpec
) -> list[str]:
    """``IMAGE_SIZE``, ``preprocess`` and ``load_images``, for a model with one image input
    of a fixed size (nothing for other models: train() takes any dataset)."""
    shapes = view.info.input_shapes
    if len(shapes) != 1 or len(shapes[0]) != 4:
        return []
    _batch, height, width, channels = shapes[0]
    if height is None or width is None or channels not in _COLOR_MODES:
        return []
    label_mode, classes = _label_mode(head, compile_spec)
    return [
        f"IMAGE_SIZE = ({height}, {width})  # the model's input: height, width",
        f"CLASSES = {classes}  # class folders the head is for",
        *_preprocess_lines(source),
        "",
        "",
        "def load_images(folder, batch_size=32, **options):",
        '    """The images of a folder with one sub-folder per class, as batches for train().',
        "",
        "    Resized to the model's input size and preprocessed as above; the labels are the",
        "    classes in the alphabetical order of the sub-folders. Other options go to",
        "    keras.utils.image_dataset_from_directory (shuffle, seed, validation_split, ...).",
        '    """',
        "    images = keras.utils.image_dataset_from_directory(",
        "        folder,",
        f'        label_mode="{label_mode}",',
        f'        color_mode="{_COLOR_MODES[channels]}",',
        "        image_size=IMAGE_SIZE,",
        "        batch_size=batch_size,",
        "        **options,",
        "    )",
        "    if len(images.class_names) != CLASSES:",
        "        raise ValueError(",
        '            f"{folder} has {len(images.class_names)} class folders, but the model is "',
        '            f"for {CLASSES} classes"',
        "        )",
        "    return images.map(preprocess)",
    ]


def _preprocess_lines(source: str) -> list[str]:
    """``preprocess``: the architecture's own ``preprocess_input``, or a stub for a model
    file, whose training inputs kfreeze cannot know."""
    function = preprocess_function(source)
    arch = _architecture(source)
    if function is not None and arch is not None:
        return [
            f"# {arch.name}'s weights were trained on inputs scaled by",
            f"# {function}: every image goes through it, in training and",
            "# in prediction (without it the model fine-tunes without an error, only worse).",
            "",
            "",
            "def preprocess(images, labels):",
            f'    """Scale images as {arch.name} expects; labels pass through."""',
            f"    return {function}(images), labels",
        ]
    return [
        "# The model was loaded from a file, so kfreeze cannot know how its inputs were scaled",
        "# in training: put that preprocessing here (the images arrive as float32 pixels in",
        "# 0..255), and use it in prediction too.",
        "",
        "",
        "def preprocess(images, labels):",
        '    """The images as the model was trained on them; labels pass through."""',
        "    return images, labels",
    ]


_TRAIN_CALL = "        train(load_images(args.train), val_ds, epochs=args.epochs)"
#: Under a strategy: every worker reads the batches in the same order (each takes its share
#: of every batch), so the shuffle has the same seed on each; only the chief saves.
_DISTRIBUTED_TRAIN = [
    "        # The same shuffle on every worker: each reads its share of the same batches.",
    "        train(load_images(args.train, seed=args.seed), val_ds, epochs=args.epochs)",
]
_SEED_ARGUMENT = [
    "    parser.add_argument(",
    '        "--seed", type=int, default=1337, help="the shuffle\'s, the same on every worker"',
    "    )",
]
_CHIEF_SAVES = [
    "        if args.save and not strategy.extended.should_checkpoint:",
    '            print(f"saved nothing: {args.save} is the chief\'s to write")',
    "        elif args.save:",
]


def _main_lines(
    images: bool, phases: bool, lora: bool = False, strategy: str | None = None
) -> list[str]:
    """Run as a program: build the model and print its size; given an image folder, train
    it and save it."""
    lines = [
        "",
        "",
        'if __name__ == "__main__":',
    ]
    if images:
        if phases:
            epochs = [
                "    parser.add_argument(",
                '        "--epochs", type=int, help="epochs of every phase (default: each '
                "phase's own)\"",
                "    )",
            ]
        else:
            epochs = [
                f'    parser.add_argument("--epochs", type=int, default={DEFAULT_EPOCHS}, '
                f'help="default: {DEFAULT_EPOCHS}")'
            ]
        lines += [
            "    parser = argparse.ArgumentParser(",
            '        description="Build the model; given TRAIN, train it on that image folder."',
            "    )",
            '    parser.add_argument("train", nargs="?", help="a folder of images, one '
            'sub-folder per class")',
            '    parser.add_argument("--val", help="a folder of validation images, same classes")',
            *epochs,
            '    parser.add_argument("--save", metavar="OUT.keras", help="save the trained model")',
            *(_SEED_ARGUMENT if strategy else []),
            *(
                [
                    "    parser.add_argument(",
                    '        "--adapters", metavar="OUT.lora.npz",',
                    '        help="resume from these adapters (save() writes them)",',
                    "    )",
                ]
                if lora
                else []
            ),
            "    args = parser.parse_args()",
        ]
    lines += [
        "    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)",
        "    total = model.count_params()",
        "    print(",
        '        f"{model.name}: {len(model.layers)} layers, {trainable:,} trainable and "',
        '        f"{total - trainable:,} non-trainable parameters"',
        "    )",
    ]
    if images:
        lines += [
            *(
                ["    if args.adapters:", "        load_adapters(model, args.adapters)"]
                if lora
                else []
            ),
            "    if args.train:",
            "        val_ds = load_images(args.val, shuffle=False) if args.val else None",
            *(_DISTRIBUTED_TRAIN if strategy else [_TRAIN_CALL]),
            *(_CHIEF_SAVES if strategy else ["        if args.save:"]),
            "            save(args.save)" if lora else "            model.save(args.save)",
            '            print(f"saved {args.save}")',
        ]
    return [*lines, ""]


def python_script(
    source: str,
    load: LoadOptions,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    compile_spec: CompileSpec,
    mixed_precision: bool = False,
    legacy: bool = False,
    phases: tuple[Phase, ...] = (),
    strategy: str | None = None,
    module: str = "finetune",
    script_dir: Path | None = None,
    adapters: Path | None = None,
    cache: FeatureCache | None = None,
) -> str:
    """The script's text.

    Args:
        source: the model source (a catalog name or a path).
        load: how it was loaded.
        view: the walked model's plan view.
        plan: the freeze plan (with phases, the model is set up for phase 1's; its LoRA
            is every phase's that does not say ``lora = false``).
        head: the head.
        compile_spec: how to compile.
        mixed_precision: the model uses a mixed precision policy (the head ends in float32).
        legacy: the source is a file from an older Keras: the script loads its converted copy.
        phases: staged training: the script gets ``train(train_ds, val_ds=None)``, which runs
            them (without phases, ``train`` runs one phase: the plan, for the given epochs).
        strategy: ``mirrored`` or ``multiworker``: build and compile inside that
            ``tf.distribute`` strategy's scope, and train with ``fit_distributed`` (a loop
            of ``strategy.run`` steps: Keras 3's fit fails under MultiWorkerMirroredStrategy).
        module: the script's file name without ``.py``, for its usage text.
        script_dir: the folder the script is written to, from which it finds the model file
            (None: the working folder).
        adapters: with LoRA, the adapters file the export writes: the script loads it when
            it is there (None: the script looks for none), if phase 1 has LoRA.
        cache: phase 1's feature cache verdict (cacheable): the script gets
            ``cache_features`` and ``train(..., cache_dir=None)`` (None: neither).

    Returns:
        A complete Python module.
    """
    # The model is set up for phase 1, as the session's export and apply_plan set it up.
    setup = phase_setup(plan, phases, 1)
    choice = loss_for(head, compile_spec)
    kept = len(kept_outputs(view.info, head))
    body = [
        "# 1. The base model.",
        *_base_lines(source, load, legacy, script_dir),
        "",
        "# 2. What trains. Set before compile(): compile() captures the trainable weights.",
        *_freeze_lines(view, setup.plan),
        *_sublayer_lines(view, setup.plan),
        *_lora_lines(view, plan, enable=setup.plan.lora is not None),
        "",
        "# 3. No head." if head.is_none else "# 3. The new head.",
        *_head_lines(view, head, mixed_precision),
        *([] if head.is_none else _compile_lines(compile_spec, setup.phase, choice, kept)),
        *_adapters_lines(setup.plan, adapters),
    ]
    # Any phase's LoRA (a phase may go without it: a head warm-up before LoRA).
    lora = plan.lora is not None
    partial = bool(sublayer_flags(view, setup.plan))
    data = [] if head.is_none else _data_lines(source, view, head, compile_spec)
    files = _base_files(source, load, legacy, script_dir)
    if setup.plan.lora is not None and adapters is not None:
        files.append(("ADAPTERS", *_file_expr(str(adapters), script_dir)))
    lines = [
        f'"""Fine-tuning model for {view.info.name}, written by kfreeze {__version__}.',
        "",
        *(_NO_HEAD_USAGE if head.is_none else _usage_lines(module, bool(data), bool(phases))),
        '"""',
        "",
        *_import_lines(
            view.info,
            bool(data),
            bool(phases),
            bool(files) or lora or cache is not None,
            strategy,
            needs_keras_hub(source),
            cache is not None,
        ),
        *_setup_lines(view.info, files),
    ]
    if lora or partial:
        what = "LoRA helpers" if lora else "helpers"
        lines += ["", f"# The {what} (kfreeze's own, copied here).", *script_source(lora, partial)]
    definitions, train = _train_lines(view, plan, phases, compile_spec, choice, strategy, kept)
    if head.is_none:  # no phases either: build_for_phase refuses them without a head
        train = list(_NO_HEAD_TRAIN)
    if definitions:
        lines += ["", *definitions]
    if strategy:
        lines += [
            "",
            f"# Build and compile inside the strategy's scope: {_STRATEGY_NOTE[strategy]}",
            f"strategy = tf.distribute.{_STRATEGY_CLASS[strategy]}()",
            "with strategy.scope():",
            *("    " + line if line else "" for line in body),
        ]
    else:
        lines += ["", *body]
    if data:
        lines += ["", "# 5. The data.", *data]
    if cache is not None:  # never with a strategy (checked_verdict refuses it)
        lines += _cache_section(view, setup.plan, head, cache, phases, compile_spec, choice, kept)
        train = cached_train(train)
    if strategy:
        lines += _FIT_DISTRIBUTED
        train = _distributed(train)
    lines += train
    if lora:
        lines += _SAVE_LORA
    if partial:
        lines += _LOAD_LINES
    main = _main_lines(bool(data), bool(phases), lora, strategy)
    lines += cached_main(main) if cache is not None else main
    return "\n".join(lines)


def _cache_section(
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    cache: FeatureCache,
    phases: tuple[Phase, ...],
    compile_spec: CompileSpec,
    choice: Any,
    kept: int,
) -> list[str]:
    """Section 6: cached features (see :mod:`kfreeze_tui.core.train.feature_script`)."""
    loss, metrics = _compile_sources(choice, kept)
    optimizer = _optimizer_source(None, compile_spec)
    return cache_lines(view, plan, head, cache, phases, optimizer, loss, metrics)


def lora_layer_names(view: PlanView, plan: FreezePlan) -> list[str]:
    """The layers ``plan.lora`` puts LoRA on, each by the names of the layers that hold it
    and its own, joined by "/" (as the script's ``enable_lora_on`` finds them)."""
    if plan.lora is None:
        return []
    return [
        chain_name(view.info, view.leaves[pos].path)
        for pos in sorted(view.lora_positions(plan.lora))
    ]


def _lora_lines(view: PlanView, plan: FreezePlan, enable: bool = True) -> list[str]:
    """Step 2b: LoRA on the layers the plan names, after the freeze (``enable`` False: phase
    1 goes without it, and ``set_phase`` puts it on when the first phase with it starts)."""
    if plan.lora is None:
        return []
    names = lora_layer_names(view, plan)
    call = (
        ["enable_lora_on(base, LORA_LAYERS, LORA_RANK)"]
        if enable
        else [
            "# Phase 1 trains without LoRA: set_phase() puts it on when the first phase with",
            "# LoRA starts.",
        ]
    )
    return [
        "",
        f"# LoRA of rank {plan.lora.rank} on {len(names)} layers: Keras freezes each one's kernel",
        "# and trains two small matrices A and B beside it (and the bias). Cannot be undone.",
        f"LORA_RANK = {plan.lora.rank}",
        "LORA_LAYERS = [",
        *(f"    {json.dumps(name)}," for name in names),
        "]",
        *call,
    ]


def _adapters_lines(plan: FreezePlan, adapters: Path | None) -> list[str]:
    """Step 4b: the adapters kfreeze's export saved apart, loaded when they are there."""
    if plan.lora is None or adapters is None:
        return []
    return [
        "",
        "# 4b. The LoRA adapters and the rest of the training state (the head, the biases),",
        "# saved apart by kfreeze's export or by save() below: loaded when the file is there,",
        "# so that training resumes with live adapters. The .keras file to deploy has LoRA",
        "# merged into its kernels and no adapters: do not resume LoRA training from it.",
        "if ADAPTERS.exists():",
        "    load_adapters(model, ADAPTERS)",
    ]


_SAVE_LORA = [
    "",
    "",
    "def save(path):",
    '    """Save the model to deploy, PATH.keras (LoRA merged into its kernels: it loads in',
    "    bare Keras as plain layers and gives this model's outputs), and beside it",
    "    PATH.lora.npz: the adapters and the rest of the training state, from which training",
    '    resumes: load_adapters(model, "PATH.lora.npz") after building the model here."""',
    "    path = Path(path)",
    "    model.save(path)",
    "    strip_lora(path)",
    '    save_adapters(model, path.with_name(path.stem + ".lora.npz"))',
]


def _compile_lines(
    compile_spec: CompileSpec, first: Phase | None, choice: Any, kept: int
) -> list[str]:
    """Step 4 of the script: compile, after the trainable flags (nothing with --no-compile),
    with phase 1's optimizer when the plan has phases (``first``)."""
    if not compile_spec.enabled:
        return []
    loss_source, metrics_source = _compile_sources(choice, kept)
    return [
        "",
        "# 4. Compile, after the trainable flags are set" + (" (for phase 1)." if first else "."),
        "model.compile(",
        f"    optimizer={_optimizer_source(first, compile_spec)},",
        f"    loss={loss_source},",
        f"    metrics={metrics_source},",
        ")",
    ]


def _usage_lines(module: str, images: bool, phases: bool) -> list[str]:
    """The script's docstring: how to run it, or import it and train."""
    runs = "every phase of the plan" if phases else "the plan"
    if not images:
        return [
            "Run it to build the model; or import it and train `model` with",
            f"train(train_ds, val_ds), which runs {runs}.",
        ]
    name = module if module.isidentifier() else "finetune"
    how = "import it" if name == module else "renamed finetune.py, import it"
    return [
        "Run it to build the model, or to train it on a folder of images (one sub-folder",
        "per class) and save it:",
        "",
        f"    python {module}.py data/train --val data/val --epochs 5 --save trained.keras",
        "",
        f"or {how} (train() runs {runs}):",
        "",
        f"    from {name} import load_images, model, train",
        '    history = train(load_images("data/train"), load_images("data/val"), epochs=5)',
    ]


def _import_lines(
    info: ModelInfo,
    images: bool,
    phases: bool,
    files: bool,
    strategy: str | None,
    keras_hub: bool = False,
    cache: bool = False,
) -> list[str]:
    """The standard library modules the script uses, then keras (keras_hub for a keras-hub
    model, tensorflow for a strategy, numpy for cached features)."""
    stdlib = [
        *(["import argparse"] if images else []),
        *(["import bisect"] if phases else []),
        *(CACHE_IMPORTS if cache else []),
        *(["import sys"] if recursion_limit(info) else []),
        *(["from pathlib import Path"] if files else []),
    ]
    return [
        *([*stdlib, ""] if stdlib else []),
        "import keras",
        *(["import numpy as np"] if cache else []),
        *(
            ["import keras_hub  # before loading: registers the keras-hub classes"]
            if keras_hub
            else []
        ),
        *(["import tensorflow as tf"] if strategy else []),
    ]


def _setup_lines(info: ModelInfo, files: list[tuple[str, str, bool]]) -> list[str]:
    """The recursion limit a deep model needs, and the files the script reads."""
    limit = recursion_limit(info)
    top = []
    if limit:
        top += [
            "# Keras loads a graph recursively, about a frame per layer: make room for "
            f"{graph_depth(info):,} layers deep.",
            f"sys.setrecursionlimit(max(sys.getrecursionlimit(), {limit:_}))",
        ]
    if files:
        top += [*([""] if top else []), *_files_lines(files)]
    return ["", *top] if top else []
