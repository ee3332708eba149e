"""Cuts and blocks on graphs that are not a chain of single calls: a layer called twice, a
siamese encoder, a layer shared inside a nested model, several inputs and outputs, and 200
parallel branches.

The oracle for every cut is Keras's own graph: the tensors (one per layer, call and output,
as Keras's ``_keras_history`` names them) that frozen layers make and trainable layers read.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kfreeze_tui.core.model.cut import CutIndex
from kfreeze_tui.core.model.layers import ModelInfo, call_inputs, walk


def _nodes_in(model: Any, layer: Any) -> list[Any]:
    """The nodes (calls) of ``layer`` that belong to ``model``'s graph."""
    return [
        node for i, node in enumerate(layer._inbound_nodes) if f"{id(layer)}_ib-{i}" in model._nodes
    ]


def _read_across(model: Any, frozen: list[Any], readers: list[Any]) -> Counter[str]:
    """Tensors made by ``frozen`` layers and read by ``readers``, by the layer that makes them."""
    frozen_ids = {id(layer) for layer in frozen}
    tensors = set()
    for layer in readers:
        for node in _nodes_in(model, layer):
            for tensor in node.input_tensors:
                operation, node_index, tensor_index = tensor._keras_history
                if id(operation) in frozen_ids:
                    tensors.add((operation.name, node_index, tensor_index))
    return Counter(name for name, _, _ in tensors)


def keras_crossing(model: Any, path: tuple[int, ...]) -> Counter[str]:
    """What crosses a boundary at ``path`` by Keras's graph: at the top level, what
    ``layers[:k]`` make and ``layers[k:]`` read; inside a nested model called n times, n
    times what crosses inside it, and what its container's earlier layers feed past it."""
    if len(path) == 1:
        return _read_across(model, model.layers[: path[0]], model.layers[path[0] :])
    holder = model.layers[path[0]]
    inside = keras_crossing(holder, path[1:])
    calls = len(_nodes_in(model, holder))
    result = Counter({name: count * calls for name, count in inside.items()})
    result += _read_across(model, model.layers[: path[0]], model.layers[path[0] + 1 :])
    return result


def kfreeze_crossing(info: ModelInfo, path: tuple[int, ...]) -> Counter[str]:
    """The same count from kfreeze's cut, by the layer behind each tensor's name."""
    crossing = CutIndex(info).at(path).crossing
    assert len(set(crossing)) == len(crossing)
    return Counter(name.split(" (", 1)[0] for name in crossing)


def assert_every_cut_is_keras(model: Any, info: ModelInfo) -> None:
    for row in info.layers:
        assert kfreeze_crossing(info, row.path) == keras_crossing(model, row.path), row.name


# -- the models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_dense(keras: Any) -> Any:
    """Two inputs, each through a Dense of its own, then one Dense called on both."""
    a = keras.Input((8,), name="a")
    b = keras.Input((8,), name="b")
    pa = keras.layers.Dense(8, name="pa")(a)
    pb = keras.layers.Dense(8, name="pb")(b)
    shared = keras.layers.Dense(8, name="shared")
    joined = keras.layers.Concatenate(name="cat")([shared(pa), shared(pb)])
    out = keras.layers.Dense(1, name="out")(joined)
    return keras.Model([a, b], out, name="shared_dense")


@pytest.fixture(scope="module")
def siamese(keras: Any) -> Any:
    """A nested encoder used on two inputs, |e(l) - e(r)|, and a sigmoid."""
    x = keras.Input((16,), name="enc_in")
    h = keras.layers.Dense(16, activation="relu", name="enc_h")(x)
    encoder = keras.Model(x, keras.layers.Dense(8, name="enc_out")(h), name="encoder")
    left = keras.Input((16,), name="left")
    right = keras.Input((16,), name="right")
    diff = keras.layers.Subtract(name="diff")([encoder(left), encoder(right)])
    distance = keras.layers.Lambda(keras.ops.abs, name="distance")(diff)
    same = keras.layers.Dense(1, activation="sigmoid", name="same")(distance)
    return keras.Model([left, right], same, name="siamese")


@pytest.fixture(scope="module")
def tied_inside(keras: Any) -> Any:
    """A nested model that calls one Dense twice (tied weights), inside a classifier."""
    x = keras.Input((8,), name="inner_in")
    tied = keras.layers.Dense(8, name="tied")
    h = keras.layers.Dense(8, name="pre")(x)
    y = keras.layers.Add(name="mix")([tied(h), tied(keras.layers.ReLU(name="act")(h))])
    inner = keras.Model(x, y, name="tied_block")
    inputs = keras.Input((8,), name="x")
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)), name="tied_model")


@pytest.fixture(scope="module")
def branches(keras: Any) -> Any:
    """200 parallel branches ``br0`` .. ``br199`` of one input, joined by ``fuse``."""
    x = keras.Input((4,), name="x")
    outs = [keras.layers.Dense(2, name=f"br{k}")(x) for k in range(200)]
    fuse = keras.layers.Concatenate(name="fuse")(outs)
    return keras.Model(x, keras.layers.Dense(1, name="head")(fuse), name="branches")


# -- cuts ---------------------------------------------------------------------------------


def test_a_dense_called_on_two_inputs(shared_dense: Any) -> None:
    info = walk(shared_dense)
    assert_every_cut_is_keras(shared_dense, info)
    shared = info.find("shared")
    assert shared is not None and shared.call_count == 2
    cut = CutIndex(info).at(shared.path)
    assert cut.crossing == ("pa", "pb") and not cut.clean
    assert cut.describe() == "2 tensors cross into shared (pa, pb)"
    after = CutIndex(info).at(info.find("cat").path)
    assert after.crossing == ("shared", "shared (call 2)") and after.into == "cat"


def test_the_distance_layer_of_a_siamese_model(siamese: Any) -> None:
    info = walk(siamese)
    assert_every_cut_is_keras(siamese, info)
    cut = CutIndex(info).at(info.find("diff").path)
    assert cut.crossing == ("encoder", "encoder (call 2)") and not cut.clean
    assert not cut.describe().startswith("clean cut")
    assert cut.brief() == "2 tensors cross into diff"
    # Inside the encoder, the cut is made once per call.
    inner = CutIndex(info).at(info.find("enc_out").path)
    assert inner.crossing == ("enc_h", "enc_h (encoder call 2)")
    assert inner.into is None and not inner.clean


def test_a_layer_shared_inside_a_nested_model(tied_inside: Any) -> None:
    info = walk(tied_inside)
    assert_every_cut_is_keras(tied_inside, info)
    tied = info.find("tied")
    assert (
        tied is not None and tied.call_count == 2 and tied.path[:-1] == info.find("pre").path[:-1]
    )
    assert CutIndex(info).at(info.find("mix").path).crossing == ("tied", "tied (call 2)")


def test_several_inputs_and_outputs(multi_io_model: Any) -> None:
    info = walk(multi_io_model)
    assert_every_cut_is_keras(multi_io_model, info)
    # Both outputs of the nested model cross a boundary after it: the map to mask_out and
    # the pooled vector to merge.
    meta = info.find("meta")
    assert meta is not None
    cut = CutIndex(info).at((meta.index + 1,))
    assert set(cut.crossing) == {"two_headed", "two_headed (output 2)", "meta"}
    # The second input is a block of its own, not part of whatever precedes or reads it.
    assert meta.block == "meta"


def test_200_branches_are_one_unit_named_after_their_join(branches: Any) -> None:
    info = walk(branches)
    top = info.top_level
    assert [row.block for row in top] == ["x"] + ["fuse"] * 201 + ["head"]
    cuts = CutIndex(info)
    at_fuse = cuts.at(info.find("fuse").path)
    assert Counter(at_fuse.crossing) == keras_crossing(branches, info.find("fuse").path)
    assert at_fuse.splits_block is None and at_fuse.into == "fuse"
    assert at_fuse.brief() == "200 tensors cross into fuse"
    assert cuts.at(info.find("br0").path).describe() == "clean cut: x"
    assert cuts.at(info.find("br7").path).splits_block == "fuse"
    assert cuts.at(info.find("head").path).describe() == "clean cut: fuse"


# -- blocks -------------------------------------------------------------------------------


def test_blocks_of_two_inputs_joined_through_a_shared_layer(shared_dense: Any) -> None:
    blocks = {row.name: row.block for row in walk(shared_dense).layers}
    assert blocks == {
        "a": "a",
        "b": "b",
        "pa": "cat",
        "pb": "cat",
        "shared": "cat",
        "cat": "cat",
        "out": "out",
    }


def test_the_siamese_encoder_calls_and_their_join_are_one_block(siamese: Any) -> None:
    blocks = {row.name: row.block for row in walk(siamese).top_level}
    assert blocks["left"] == "left" and blocks["right"] == "right"
    assert blocks["encoder"] == blocks["diff"] == "diff"
    assert blocks["same"] == "same"


# -- what the UI and the command line show -------------------------------------------------


def test_the_detail_and_the_side_pane_show_every_call(shared_dense: Any) -> None:
    from kfreeze_tui.core.model.loading import LoadedModel
    from kfreeze_tui.core.session import ModelSession
    from kfreeze_tui.screens.detail import detail_text
    from kfreeze_tui.screens.explorer import layer_summary

    session = ModelSession(LoadedModel(model=shared_dense, source="shared", description="s"))
    info = session.info
    assert call_inputs(info.find("shared")) == (("pa",), ("pb",))
    assert call_inputs(info.find("cat")) == (("shared", "shared (call 2)"),)
    console = Console(width=120, record=True, color_system=None)
    console.print(detail_text(session, session.plan, info.find("shared")))
    console.print(detail_text(session, session.plan, info.find("cat")))
    shown = console.export_text()
    assert "called 2 times: pa; pb" in shown
    assert "shared, shared (call 2)" in shown
    pane = layer_summary(session, session.plan, info.find("shared")).plain
    assert "called 2 times, from pa; pb" in pane


def test_layers_json_reports_each_call_and_the_cut(
    shared_dense: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfreeze_tui.cli import run

    path = tmp_path / "shared_dense.keras"
    shared_dense.save(path)
    code = run(["layers", str(path), "--boundary", "cat", "--json", "--no-cache"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["cut"] == {
        "boundary": "cat",
        "crossing": ["shared", "shared (call 2)"],
        "clean": False,
        "splits_block": None,
        "into": "cat",
        "inside": None,
    }
    rows = {row["name"]: row for row in document["layers"]}
    assert rows["shared"]["calls"] == [
        {"inbound": ["pa"], "output_shape": [None, 8]},
        {"inbound": ["pb"], "output_shape": [None, 8]},
    ]
    assert rows["cat"]["calls"] == [
        {"inbound": ["shared", "shared (call 2)"], "output_shape": [None, 16]}
    ]


def test_the_feature_cache_counts_every_call(shared_dense: Any, siamese: Any, keras: Any) -> None:
    """A cut before the join of a shared layer's two calls caches both calls' outputs; a cut
    inside a model called twice caches its tensor once per call (Keras's tensors as the
    reference)."""
    import numpy as np

    from kfreeze_tui.core.plan.features import feature_cache
    from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView

    info = walk(shared_dense)
    view = PlanView(info)
    cache = feature_cache(view, FreezePlan(boundary=info.find("cat").path))
    assert cache.cacheable and cache.tensors == ("shared", "shared (call 2)")
    joined = shared_dense.get_layer("cat").input  # the two calls' outputs, as Keras has them
    assert list(cache.shapes) == [tuple(t.shape[1:]) for t in joined]
    assert cache.bytes_per_example == 4 * sum(int(np.prod(t.shape[1:])) for t in joined)
    part = keras.Model(shared_dense.inputs, joined)
    batch = [np.ones((2, 8), "float32"), np.zeros((2, 8), "float32")]
    first, second = part(batch, training=True), part(batch, training=True)
    assert all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(first, second, strict=True)
    )

    info = walk(siamese)
    view = PlanView(info)
    enc_out = next(row for row in info.layers if row.name == "enc_out")
    cache = feature_cache(view, FreezePlan(boundary=enc_out.path))
    assert cache.cacheable, cache
    assert cache.tensors == ("enc_h", "enc_h (encoder call 2)")
    hidden = siamese.get_layer("encoder").get_layer("enc_h").output
    assert list(cache.shapes) == [tuple(hidden.shape[1:])] * 2
    assert cache.bytes_per_example == 2 * 4 * int(np.prod(hidden.shape[1:]))
