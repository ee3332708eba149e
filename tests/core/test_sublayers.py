"""The walk into the sublayers of subclassed layers (a functional model holding a
``keras.layers.MultiHeadAttention``): rows, counts against Keras, plans applied, cuts, and
the export of a frozen MultiHeadAttention (issue 18)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from planned import assert_trains_as_planned
from sublayer_outputs import agrees, shapes_when_run

from kfreeze_tui.core.model.layers import ModelInfo, walk
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.runtime.keras_private import sublayers
from kfreeze_tui.core.train.build import apply_freeze, flags_restored, layer_at, restore_frozen

MHA_PARTS = ["query", "key", "value", "softmax", "dropout", "attention_output"]


def _transformer(keras: Any) -> Any:
    inputs = keras.Input((8, 16), name="tokens")
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="mha")(inputs, inputs)
    x = keras.layers.Dense(32, name="ffn1")(x)
    x = keras.layers.Dense(16, name="ffn2")(x)
    return keras.Model(inputs, x, name="transformer")


@pytest.fixture(scope="module")
def transformer(keras: Any) -> Any:
    return _transformer(keras)


@pytest.fixture(scope="module")
def info(transformer: Any) -> ModelInfo:
    return walk(transformer)


def _size(variables: Any) -> int:
    return sum(math.prod(v.shape) for v in variables)


def test_the_attention_layer_is_a_container_of_its_projections(
    transformer: Any, info: ModelInfo
) -> None:
    mha = info.find("mha")
    assert mha is not None and mha.is_container and mha.subclassed
    assert mha.child_count == len(MHA_PARTS)
    children = info.children(mha.path)
    # Keras names the softmax after how many it made before in the process (softmax_13).
    assert [re.sub(r"_\d+$", "", row.name) for row in children] == MHA_PARTS
    assert [row.name for row in children] == [
        layer.name for layer in (layer_at(transformer, row.path) for row in children)
    ]
    assert [row.path_text for row in children] == [f"1.{i}" for i in range(6)]
    keras_mha = transformer.get_layer("mha")
    for row in children:
        assert row.params == layer_at(transformer, row.path).count_params()
        assert row.inbound == () and row.sources == ()  # no wiring is invented
    assert keras_mha._output_dense is layer_at(transformer, (1, 5))
    assert mha.params == keras_mha.count_params() == sum(r.params for r in children)
    # The layers after it are the model's, as before.
    assert [row.name for row in info.top_level] == ["tokens", "mha", "ffn1", "ffn2"]


def test_the_projections_shapes_are_those_keras_makes_when_it_runs(
    transformer: Any, info: ModelInfo
) -> None:
    mha = info.find("mha")
    assert mha is not None
    children = info.children(mha.path)
    layers = [layer_at(transformer, row.path) for row in children]
    inputs = np.random.default_rng(0).normal(size=(3, 8, 16)).astype("float32")
    actual = shapes_when_run(transformer, inputs, layers)
    shown = {}
    for row, layer in zip(children, layers, strict=True):
        if row.output_shapes:
            assert len(row.output_shapes) == len(actual[id(layer)]), row.name
            assert all(
                agrees(s, a) for s, a in zip(row.output_shapes, actual[id(layer)], strict=True)
            ), (row.name, row.output_shapes, actual[id(layer)])
            shown[re.sub(r"_\d+$", "", row.name)] = row.output_shape_text
    # Every layer with weights has its shape; only those that record none (no build) stay "?".
    assert set(shown) == {"query", "key", "value", "attention_output"}
    # EinsumDense's own rule leaves the sequence open: (None, None, heads, key_dim).
    assert shown["query"].endswith(", 2, 16)") and shown["attention_output"].endswith(", 16)")
    assert {r.class_name for r in children if not r.output_shapes} == {"Softmax", "Dropout"}


def test_every_parameter_counts_once(transformer: Any, info: ModelInfo) -> None:
    view = PlanView(info)
    assert info.total_params == transformer.count_params()
    assert sum(leaf.own_trainable_size for leaf in view.leaves) == transformer.count_params()
    assert view.totals(FreezePlan(boundary=view.first_path())).trainable == _size(
        transformer.trainable_weights
    )


def test_every_boundary_trains_exactly_the_planned_weights(
    keras: Any, transformer: Any, info: ModelInfo
) -> None:
    view = PlanView(info)
    with flags_restored(transformer):
        for leaf in view.leaves:
            assert_trains_as_planned(
                transformer, view, FreezePlan(boundary=leaf.path), leaf.path_text
            )
    assert _size(transformer.trainable_weights) == transformer.count_params()


def test_a_boundary_inside_the_attention_is_no_clean_cut(info: ModelInfo) -> None:
    view = PlanView(info)
    cut = view.cut(FreezePlan(boundary=(1, 1)))
    assert not cut.clean and cut.inside == "mha"
    assert "partial freeze" in cut.describe()
    # Before the attention layer and after it, the graph's cuts are as before.
    assert view.cut(FreezePlan(boundary=(1,))).clean
    assert view.cut(FreezePlan(boundary=(2,))).crossing == ("mha",)


def test_keras_builds_a_frozen_attentions_projections_trainable_on_loading(
    keras: Any, tmp_path: Path
) -> None:
    """The bug of issue 18, as Keras does it; and the loader step that undoes it."""
    model = _transformer(keras)
    model.get_layer("mha").trainable = False
    frozen = _size(model.trainable_weights)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    mha = loaded.get_layer("mha")
    assert not mha.trainable
    assert all(layer.trainable for layer in sublayers(mha))  # what Keras does
    assert _size(loaded.trainable_weights) == frozen + mha.count_params()
    restore_frozen(loaded)
    assert _size(loaded.trainable_weights) == frozen
    assert {v.path for v in loaded.trainable_weights} == {v.path for v in model.trainable_weights}


def test_export_of_a_frozen_attention_verifies(keras: Any, run_cli: Any, tmp_path: Path) -> None:
    source = tmp_path / "transformer.keras"
    _transformer(keras).save(source)
    target = tmp_path / "out.keras"
    result = run_cli("export", str(source), "--freeze-before", "ffn2", "-o", str(target))
    assert result.returncode == 0, result.stderr
    loaded = keras.saving.load_model(target)
    restore_frozen(loaded)
    trains = {v.path.split("/")[0] for v in loaded.trainable_weights}
    # The head replaces the last Dense; the attention stays frozen after loading.
    assert trains and not trains & {"mha", "ffn1"}, trains


def _by_hand(keras: Any, frozen: set[str]) -> set[str]:
    """The trainable weights of mha and ffn1 when plain Keras sets the flags: the model's
    layers before mha frozen, mha trainable with the sublayers ``frozen`` frozen."""
    model = _transformer(keras)
    mha = model.get_layer("mha")
    for name in frozen:
        getattr(mha, f"_{name}_dense").trainable = False
    return {v.path for v in model.trainable_weights if v.path.split("/")[0] in ("mha", "ffn1")}


def _probe(folder: Path, code: str) -> Any:
    """Run ``code`` in a fresh Python with the exported script as ``script``; its last line
    of output, as a Python value."""
    import ast
    import subprocess
    import sys

    probe = (
        "import runpy\n"
        f"script = runpy.run_path({str(folder / 'ft.py')!r}, run_name='not_main')\n"
        "def trains(model):\n"
        "    return sorted(v.path for v in model.trainable_weights\n"
        "                  if v.path.split('/')[0] in ('mha', 'ffn1'))\n" + code
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=600, cwd=folder, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_a_boundary_inside_the_attention_exports_with_its_load_step(
    keras: Any, run_cli: Any, tmp_path: Path
) -> None:
    """Keras keeps no flag of a MultiHeadAttention's sublayers in the file: the export
    verifies the file as the script's load() loads it and says so in one sentence; the
    script, its load() and ``kfreeze apply`` of the plan train what plain Keras trains with
    ``query`` and ``key`` frozen by hand."""
    source = tmp_path / "transformer.keras"
    _transformer(keras).save(source)
    target, script, plan = tmp_path / "out.keras", tmp_path / "ft.py", tmp_path / "plan.toml"
    result = run_cli(
        "export", str(source), "--freeze-before", "mha/value", "-o", str(target),
        "--script", str(script), "--plan", str(plan),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "out.keras freezes part of mha" in result.stderr
    assert "load() from ft.py" in result.stderr
    # Verified as load() loads it; one step leaves the query and key kernels and biases
    # bitwise as they were.
    assert "every layer's trainable state is the same" in result.stdout
    assert "4 frozen weights bitwise unchanged" in result.stdout
    assert "boundary_path = [1, 2]" in plan.read_text()
    expected = sorted(_by_hand(keras, {"query", "key"}))
    assert any(path.startswith("mha/value/") for path in expected)
    assert not any(path.startswith("mha/query/") for path in expected)
    built, loaded = _probe(
        tmp_path, "print([trains(script['model']), trains(script['load']('out.keras'))])"
    )
    assert built == expected and loaded == expected
    # Loaded without the load step, the file trains the whole attention layer.
    plain = keras.saving.load_model(target)
    restore_frozen(plain)
    assert any(v.path.startswith("mha/query/") for v in plain.trainable_weights)
    # The plan keeps the boundary inside the attention layer; apply replays it.
    again = tmp_path / "again.keras"
    result = run_cli("apply", str(plan), "-o", str(again))
    assert result.returncode == 0, result.stderr
    assert "again.keras freezes part of mha" in result.stderr
    assert _probe(tmp_path, "print(trains(script['load']('again.keras')))") == expected


def test_an_exception_inside_the_attention_sets_only_its_sublayer(
    keras: Any, transformer: Any, info: ModelInfo
) -> None:
    """The script's flags for an exception that freezes ``query`` alone, set on a fresh model
    by the script's step, train what plain Keras trains with ``query`` frozen by hand."""
    from kfreeze_tui.core.runtime.keras_private import set_sublayer_flags
    from kfreeze_tui.core.train.script import sublayer_flags

    view = PlanView(info)
    query = info.find("mha/query") if info.find("mha/query") else None
    plan = FreezePlan(boundary=(1,), exceptions=frozenset({(1, 0)}))
    flags = sublayer_flags(view, plan)
    assert flags == {"mha": True, "mha/query": False}, (flags, query)
    model = _transformer(keras)
    model.trainable = False
    model.trainable = True
    set_sublayer_flags(model, flags)
    got = {v.path for v in model.trainable_weights if v.path.split("/")[0] in ("mha", "ffn1")}
    assert got == _by_hand(keras, {"query"})
    # A boundary before or after the attention layer needs no sublayer flags.
    assert sublayer_flags(view, FreezePlan(boundary=(1,))) == {}
    assert sublayer_flags(view, FreezePlan(boundary=(2,))) == {}


def test_a_slash_path_names_a_sublayer(info: ModelInfo) -> None:
    from kfreeze_tui.core.model.names import parse_layer_ref

    assert parse_layer_ref(info, "mha/key") == (1, 1)
    assert parse_layer_ref(info, "1.5") == (1, 5)


def test_the_script_freezes_a_boundary_at_the_attention_as_planned(
    keras: Any, tmp_path: Path
) -> None:
    """The boundary at ``mha`` is its first leaf (``query``) in leaf order; the script sets
    the attention layer, which it reaches by name, not its sublayers."""
    import ast
    import subprocess
    import sys

    from kfreeze_tui.core.model.loading import LoadOptions
    from kfreeze_tui.core.plan.head import HeadSpec
    from kfreeze_tui.core.plan.phases import CompileSpec
    from kfreeze_tui.core.train.script import python_script

    model = _transformer(keras)
    source = tmp_path / "transformer.keras"
    model.save(source)
    view = PlanView(walk(model))
    plan = FreezePlan(boundary=(1,), exceptions=frozenset({(3,)}))  # ffn2 frozen
    text = python_script(
        str(source), LoadOptions(), view, plan, HeadSpec(classes=2), CompileSpec(),
        script_dir=tmp_path,
    )  # fmt: skip
    (tmp_path / "ft.py").write_text(text)
    probe = (
        "import runpy\n"
        f"script = runpy.run_path({str(tmp_path / 'ft.py')!r}, run_name='not_main')\n"
        "print(sorted({v.path.split('/')[0] for v in script['model'].trainable_weights}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trains = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    with flags_restored(model):
        apply_freeze(model, view, plan)
        planned = {v.path.split("/")[0] for v in model.trainable_weights}
    assert "mha" in trains and "ffn2" not in trains
    assert set(trains) - {"head_output"} == planned - {"ffn2"} - {"head_output"}


def test_a_phase_boundary_inside_the_attention_is_refused_in_one_sentence(
    keras: Any, run_cli: Any, tmp_path: Path
) -> None:
    """The script's phases set model-level flags only: a phase that stops inside mha is
    refused by name, and nothing is written."""
    source = tmp_path / "transformer.keras"
    _transformer(keras).save(source)
    target = tmp_path / "out.keras"
    result = run_cli(
        "export", str(source), "--phase", "head:1:1e-3", "--phase", "mha/value:1:1e-4",
        "-o", str(target),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "phase 2 freezes part of mha" in result.stderr
    assert "Traceback" not in result.stderr and not target.exists()
