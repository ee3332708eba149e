"""A standalone, readable Python script that rebuilds the exported model with Keras alone.

It is written the way a careful engineer writes it by hand: build or load the base, set the
trainable flags (by name, with the index range in a comment), add the head, compile after the
flags. Users keep it in their training code, so it imports nothing but keras.
"""

from __future__ import annotations

from pathlib import Path

from kfreeze_tui import __version__
from kfreeze_tui.core import catalog
from kfreeze_tui.core.build import CompileSpec, loss_for
from kfreeze_tui.core.head import HeadSpec, feature_layer, pooling_class, resolved_pooling
from kfreeze_tui.core.loading import LoadOptions
from kfreeze_tui.core.plan import BNPolicy, FreezePlan, PlanView


def converted_name(source: str) -> str:
    """Where the script expects the Keras 3 copy of a legacy model file."""
    path = Path(source)
    return str(path.with_name(f"{path.stem}_keras3.keras"))


def _base_lines(source: str, load: LoadOptions, legacy: bool = False) -> list[str]:
    arch = catalog.find(source)
    if arch is not None and not source.endswith((".keras", ".h5", ".hdf5")):
        weights = load.weights.strip()
        if weights.lower() in ("none", "random", ""):
            weights_src = "None"
        elif weights.lower() == "imagenet":
            weights_src = '"imagenet"'
        else:
            weights_src = repr(weights)
        shape = load.input_shape or arch.default_input_shape
        return [
            f"base = keras.applications.{arch.name}(",
            f"    weights={weights_src},",
            f"    include_top={load.include_top},",
            f"    input_shape={tuple(shape)!r},",
            ")",
        ]
    lines = []
    if load.custom_objects:
        lines += [
            f"# The model uses custom layers: import {load.custom_objects} before loading it,",
            "# so that they are registered with Keras.",
        ]
    safe = ", safe_mode=False" if load.unsafe else ""
    if legacy:
        target = converted_name(source)
        extra = f" --custom-objects {load.custom_objects}" if load.custom_objects else ""
        extra += " --unsafe" if load.unsafe else ""
        lines += [
            f"# {Path(source).name} was written by an older Keras, which Keras 3 cannot load as it",
            "# is. Convert it once (the repairs are listed and the result verified):",
            f"#     kfreeze convert {source}{extra} -o {target}",
            "# and this script loads the Keras 3 file:",
        ]
        source = target
    lines.append(f"base = keras.saving.load_model({source!r}, compile=False{safe})")
    return lines


def _freeze_lines(view: PlanView, plan: FreezePlan) -> list[str]:
    info = view.info
    boundary = view.boundary_layer(plan)
    keep_bn = plan.bn_policy is BNPolicy.FROZEN
    exceptions = sorted(info.layer(p).name for p in plan.exceptions)
    nested = any(row.is_container for row in info.layers)
    lines: list[str] = []
    if boundary is None:
        lines += ["# Every layer is frozen.", "base.trainable = False"]
        return lines
    if not nested:
        lines += [
            f"# Freeze every layer before {boundary.name}: by index, that is",
            f"# `for layer in base.layers[:{boundary.index}]`.",
            "base.trainable = True",
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
        if exceptions:
            lines.append("# Exceptions to the boundary:")
            for path in sorted(plan.exceptions):
                row = info.layer(path)
                state = view.leaf_trainable(plan, path)
                lines.append(f'base.get_layer("{row.name}").trainable = {state}')
        return lines
    lines += [
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
        "base.trainable = True",
        "for container in containers(base):",
        "    container.trainable = any(trains[id(layer)] for layer in leaves(container))",
        "for layer in all_layers:",
        "    layer.trainable = trains[id(layer)]",
    ]
    return lines


def _head_lines(view: PlanView, head: HeadSpec, mixed_precision: bool) -> list[str]:
    info = view.info
    layer = feature_layer(info, head)
    assert layer is not None
    pooling = resolved_pooling(info, head)
    lines = [f'x = base.get_layer("{layer.name}").output  # {layer.output_shape_text}']
    if pooling != "none":
        pool_class = pooling_class(pooling, layer.output_shapes[0])
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
        'name="head_output")(x)'
    )
    lines.append(f'model = keras.Model(base.inputs, outputs, name="{info.name}_finetune")')
    return lines


def python_script(
    source: str,
    load: LoadOptions,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    compile_spec: CompileSpec,
    mixed_precision: bool = False,
    legacy: bool = False,
) -> str:
    """The script's text.

    Args:
        source: the model source (a catalog name or a path).
        load: how it was loaded.
        view: the walked model's plan view.
        plan: the freeze plan.
        head: the head.
        compile_spec: how to compile.
        mixed_precision: the model uses a mixed precision policy (the head ends in float32).
        legacy: the source is a file from an older Keras: the script loads its converted copy.

    Returns:
        A complete Python module.
    """
    lines = [
        f'"""Fine-tuning model for {view.info.name}, written by kfreeze {__version__}.',
        "",
        "Run it to build the model; or import it and train `model`.",
        '"""',
        "",
        "import keras",
        "",
        "# 1. The base model.",
        *_base_lines(source, load, legacy),
        "",
        "# 2. What trains. Set before compile(): compile() captures the trainable weights.",
        *_freeze_lines(view, plan),
        "",
        "# 3. The new head.",
        *_head_lines(view, head, mixed_precision),
    ]
    if compile_spec.enabled:
        choice = loss_for(head, compile_spec)
        lines += [
            "",
            "# 4. Compile, after the trainable flags are set.",
            "model.compile(",
            f"    optimizer=keras.optimizers.Adam(learning_rate={compile_spec.learning_rate!r}),",
            f"    loss={choice.loss_source},",
            f'    metrics=["{choice.metric}"],',
            ")",
        ]
    lines += [
        "",
        'if __name__ == "__main__":',
        "    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)",
        "    total = model.count_params()",
        '    print(f"{model.name}: {len(model.layers)} layers, {trainable:,} trainable and "',
        '          f"{total - trainable:,} non-trainable parameters")',
        "",
    ]
    return "\n".join(lines)
