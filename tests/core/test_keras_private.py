"""Each read of Keras internals in :mod:`kfreeze_tui.core.keras_private` against Keras's own
public behaviour on small real models, so that a Keras release that changes one fails here,
under the function's name, rather than as a wrong layer table.

``load_position`` is checked against real loads in test_load_progress.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from kfreeze_tui.core.runtime.keras_private import (
    compiled_trainable_state,
    created_trainable_variables,
    flatten_layers,
    functional_graph,
    inbound_nodes,
    nodes_in_graph,
    tensor_operation,
    tensor_origin,
)


def _walk_layers(layer: Any) -> list[Any]:
    """A depth-first walk of the public ``.layers``."""
    found = []
    for child in getattr(layer, "layers", None) or []:
        found.append(child)
        found.extend(_walk_layers(child))
    return found


@pytest.fixture(scope="module")
def models(keras: Any) -> dict[str, Any]:
    """A nested model, a shared layer called twice in one model and once in another, a
    Sequential and a subclassed model."""
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="in_a"), keras.layers.Dense(4, name="in_b")],
        name="inner",
    )
    inputs = keras.Input((4,), name="x")
    y = inner(inputs)
    y = keras.layers.BatchNormalization(name="bn")(y)
    nested = keras.Model(inputs, keras.layers.Dense(2, name="out")(y), name="nested")

    shared = keras.layers.Dense(4, name="shared")
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    merged = keras.layers.Add(name="join")([shared(a), shared(b)])
    plus = merged + 1.0  # an operation that is not a layer
    siamese = keras.Model([a, b], keras.layers.Dense(1, name="head")(plus), name="siamese")
    c = keras.Input((4,), name="c")
    other = keras.Model(c, shared(c), name="other")

    class Sub(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    sub = Sub()
    sub(keras.ops.zeros((1, 4)))
    return {"nested": nested, "inner": inner, "siamese": siamese, "other": other, "sub": sub}


def test_flatten_layers_is_a_recursive_walk_of_layers(keras: Any, models: dict[str, Any]) -> None:
    model = models["nested"]
    walked = _walk_layers(model)
    assert [layer.name for layer in walked] == ["x", "inner", "in_a", "in_b", "bn", "out"]
    flat = flatten_layers(model, include_self=False)
    assert len(flat) == len({id(layer) for layer in flat})  # each once
    # The same layers, and the Sequential's own InputLayer, which its .layers hides.
    extra = [layer for layer in flat if id(layer) not in set(map(id, walked))]
    assert len(flat) == len(walked) + 1
    assert [type(layer) for layer in extra] == [keras.layers.InputLayer]
    assert flatten_layers(model)[0] is model and flatten_layers(model)[1:] == flat


def test_flatten_layers_reaches_a_subclassed_models_attributes(models: dict[str, Any]) -> None:
    sub = models["sub"]
    assert flatten_layers(sub, include_self=False) == [sub.dense]


def test_created_trainable_variables_survive_freezing(keras: Any) -> None:
    bn = keras.layers.BatchNormalization()
    dense = keras.layers.Dense(2)
    dense(bn(keras.ops.zeros((1, 3))))
    for layer in (bn, dense):
        created = [id(v) for v in layer.trainable_weights]  # Keras's own, while trainable
        assert len(created) == 2  # gamma and beta; kernel and bias
        layer.trainable = False
        assert layer.trainable_weights == []
        assert [id(v) for v in created_trainable_variables(layer) or []] == created


def test_functional_graph(models: dict[str, Any]) -> None:
    nested, inner = models["nested"], models["inner"]
    assert functional_graph(nested) is nested
    graph = functional_graph(inner)  # a built Sequential keeps a functional graph inside
    assert graph is not None and graph.outputs[0] is inner.outputs[0]
    assert functional_graph(models["sub"]) is None


def test_a_shared_layers_nodes_in_a_graph_count_its_calls(models: dict[str, Any]) -> None:
    siamese, other = models["siamese"], models["other"]
    shared = siamese.get_layer("shared")
    assert len(inbound_nodes(shared)) == 3  # every call on symbolic tensors, in any model
    in_siamese = nodes_in_graph(siamese, shared)
    assert len(in_siamese) == 2
    assert [node.input_tensors[0] for node in in_siamese] == list(siamese.inputs)
    in_other = nodes_in_graph(other, shared)
    assert len(in_other) == 1 and in_other[0].outputs[0] is other.outputs[0]
    for layer in siamese.layers:  # every other layer is called once in the model
        if layer is not shared:
            assert len(nodes_in_graph(siamese, layer)) == 1, layer.name


def test_tensor_origin(models: dict[str, Any]) -> None:
    siamese = models["siamese"]
    head = siamese.get_layer("head")
    operation, node, output = tensor_origin(siamese.outputs[0]) or (None, None, -1)
    assert operation is head and node is nodes_in_graph(siamese, head)[0] and output == 0
    # The head reads the `+ 1.0`, an operation that is not one of the model's layers, which
    # reads what the Add layer made.
    plus, plus_node, _ = tensor_origin(node.input_tensors[0]) or (None, None, -1)
    assert plus is not None and plus not in siamese.layers
    add, _, _ = tensor_origin(plus_node.input_tensors[0]) or (None, None, -1)
    assert add is siamese.get_layer("join")
    assert tensor_origin(object()) is None


def test_tensor_operation_is_the_layer_that_made_each_output(models: dict[str, Any]) -> None:
    nested, siamese = models["nested"], models["siamese"]
    assert tensor_operation(nested.outputs[0]) is nested.get_layer("out")
    assert tensor_operation(siamese.outputs[0]) is siamese.get_layer("head")
    head_input = nodes_in_graph(siamese, siamese.get_layer("head"))[0].input_tensors[0]
    assert tensor_operation(head_input) not in siamese.layers  # the `+ 1.0`
    assert tensor_operation(object()) is None


def test_compiled_trainable_state_is_the_flags_at_compile(keras: Any) -> None:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    assert compiled_trainable_state(model) is None  # not compiled
    model.compile(optimizer="sgd", loss="mse")
    dense = model.get_layer("d")
    dense.trainable = False
    state = compiled_trainable_state(model)
    assert state is not None and state[dense] is True  # as it was when compile() ran
    assert set(map(id, state)) == {id(layer) for layer in [model, *_walk_layers(model)]}


def test_sublayers_are_a_models_layers_or_what_a_layer_tracks(
    keras: Any, models: dict[str, Any]
) -> None:
    from kfreeze_tui.core.runtime.keras_private import sublayers

    nested = models["nested"]
    assert sublayers(nested) == nested.layers
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
    x = keras.ops.zeros((1, 3, 8))
    mha(x, x)
    inner = sublayers(mha)
    # Every weight of the layer is in one of its direct sublayers (it holds none itself),
    # and the trainable setter reaches the same layers.
    assert {id(v) for layer in inner for v in layer.weights} == {id(v) for v in mha.weights}
    assert len(inner) == 6 and sum(len(layer.weights) for layer in inner) == 8
    mha.trainable = False
    assert not any(layer.trainable for layer in inner)
    assert sublayers(keras.layers.Dense(2)) == []


def test_enable_lora_on_reaches_a_frozen_subclassed_layers_sublayer(keras: Any) -> None:
    """The script's LoRA step: LoRA on ``mha/query`` inside a frozen MultiHeadAttention
    trains the query's A, B and bias and nothing else of the layer, as Keras's own
    enable_lora on that sublayer does once its holders train."""
    from kfreeze_tui.core.runtime.keras_private import enable_lora_on

    inputs = keras.Input((4, 8))
    mha = keras.layers.MultiHeadAttention(2, 4, name="mha")
    outputs = keras.layers.Dense(3, name="out")(mha(inputs, inputs))
    model = keras.Model(inputs, outputs)
    model.trainable = False
    assert enable_lora_on(model, ["mha/query"], 2) == 1
    assert mha.query_dense.lora_enabled
    assert sorted(w.path for w in model.trainable_weights) == [
        "mha/query/bias",
        "mha/query/lora_kernel_a",
        "mha/query/lora_kernel_b",
    ]
    with pytest.raises(ValueError, match="no layer mha/nothing"):
        enable_lora_on(model, ["mha/nothing"], 2)


def test_enable_lora_on_again_keeps_the_kernel_frozen(keras: Any) -> None:
    """A later training phase sets the flags off and on (which makes an adapted kernel
    trainable again in Keras 3.15) and calls enable_lora_on again: the layer trains what
    Keras's own enable_lora on a trainable layer trains, its A, B and bias."""
    from kfreeze_tui.core.runtime.keras_private import enable_lora_on

    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3, name="dense")(keras.layers.Embedding(10, 6, name="emb")(inputs))
    model = keras.Model(inputs, outputs)
    assert enable_lora_on(model, ["dense", "emb"], 2) == 2
    reference = sorted(w.path for w in model.trainable_weights)
    for layer in model.layers:
        layer.trainable = False
        layer.trainable = True
    assert "dense/kernel" in [w.path for w in model.trainable_weights]  # Keras's own reset
    enable_lora_on(model, ["dense", "emb"], 2)
    assert (
        sorted(w.path for w in model.trainable_weights)
        == reference
        == [
            "dense/bias",
            "dense/lora_kernel_a",
            "dense/lora_kernel_b",
            "emb/lora_embeddings_a",
            "emb/lora_embeddings_b",
        ]
    )


def test_built_input_shapes_are_those_a_layer_was_built_with(keras: Any) -> None:
    from kfreeze_tui.core.runtime.keras_private import built_input_shapes

    dense = keras.layers.Dense(5)
    assert built_input_shapes(dense) is None  # not built
    dense(keras.ops.zeros((2, 3, 7)))
    assert built_input_shapes(dense) == {"input_shape": (2, 3, 7)}
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    mha(keras.ops.zeros((1, 3, 8)), keras.ops.zeros((1, 5, 6)))
    shapes = built_input_shapes(mha)
    assert shapes is not None
    assert shapes["query_shape"] == (1, 3, 8) and shapes["value_shape"] == (1, 5, 6)
    dropout = keras.layers.Dropout(0.5)  # no build of its own: nothing recorded
    dropout(keras.ops.zeros((1, 2)))
    assert built_input_shapes(dropout) is None
