"""Write legacy Keras model files with ``tf_keras`` (Keras 2), and what ``tf_keras`` computes.

Run as a script in a process of its own (``python make_files.py OUTDIR``), because it imports
``tf_keras``, the Keras 2 that TensorFlow still maintains: the oracle the legacy loader is
tested against. It writes, into OUTDIR:

- one model file per case (``.h5``, HDF5 named ``.keras``, tf.keras 2.15-style ``.keras``),
- ``oracle.npz``: for each case, the input batch given to the model and ``tf_keras``'s output,
- ``oracle.json``: for each case, the file name, the parameter counts ``tf_keras`` reports, its
  inputs' names, and the layer classes in the file.

Nothing here knows about kfreeze: the numbers are ``tf_keras``'s own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import numpy as np
import tensorflow as tf
import tf_keras as k

tf.get_logger().setLevel("ERROR")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from legacy_custom import (  # noqa: E402
    make_custom_layer_class,
    make_custom_model_class,
    make_subclassed_class,
)

L = k.layers


def mobile() -> Any:
    """MobileNet-style: DepthwiseConv2D and Conv2DTranspose (both written with groups=1)."""
    inputs = k.Input((32, 32, 3), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(6.0, name="conv1_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="conv_dw_1")(x)
    x = L.BatchNormalization(name="conv_dw_1_bn")(x)
    x = L.ReLU(6.0, name="conv_dw_1_relu")(x)
    x = L.Conv2D(16, 1, use_bias=False, name="conv_pw_1")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", name="conv_dw_2")(x)
    x = L.SeparableConv2D(16, 3, padding="same", name="sep")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="up")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    outputs = L.Dense(4, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name="mobilenet_like")


def recurrent() -> Any:
    """LSTM and GRU (time_major=False), a Bidirectional LSTM, TimeDistributed Dense."""
    return k.Sequential(
        [
            L.LSTM(6, input_shape=(7, 3), return_sequences=True, name="lstm"),
            L.Bidirectional(L.LSTM(4, return_sequences=True), name="bidi"),
            L.TimeDistributed(L.Dense(5), name="td"),
            L.GRU(3, name="gru"),
            L.Dense(2, name="out"),
        ],
        name="recurrent",
    )


def nested() -> Any:
    """Multi-input functional with a Sequential shared twice and a nested functional."""
    tower = k.Sequential(
        [L.Dense(8, activation="relu", input_shape=(6,)), L.BatchNormalization(), L.Dense(4)],
        name="tower",
    )
    inner_in = k.Input((8,), name="inner_in")
    inner_out = L.Dense(3, name="inner_dense")(L.Dropout(0.1)(inner_in))
    inner = k.Model(inner_in, inner_out, name="inner_functional")
    left = k.Input((6,), name="left")
    right = k.Input((6,), name="right")
    merged = L.Concatenate(name="concat")([tower(left), tower(right)])
    outputs = L.Dense(2, name="head")(inner(merged))
    return k.Model([left, right], outputs, name="two_towers")


def mixed_precision() -> Any:
    """A model built under the mixed_float16 policy, with a float32 output layer."""
    k.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = k.Input((16,), name="features")
        x = L.Dense(8, activation="relu", name="hidden")(inputs)
        outputs = L.Dense(3, dtype="float32", name="out")(x)
        return k.Model(inputs, outputs, name="mixed")
    finally:
        k.mixed_precision.set_global_policy("float32")


def custom_layer() -> Any:
    scale = make_custom_layer_class(k)
    inputs = k.Input((5,), name="x")
    x = L.Dense(4, name="dense")(inputs)
    outputs = scale(name="scale")(x)
    return k.Model(inputs, outputs, name="with_custom_layer")


def custom_model() -> Any:
    model_class = make_custom_model_class(k)
    inputs = k.Input((5,), name="x")
    outputs = L.Dense(3, name="dense")(L.Dense(4, name="hidden")(inputs))
    return model_class(inputs, outputs, name="cifar")


def subclassed() -> Any:
    model = make_subclassed_class(k)(name="cifar10_model")
    model(np.zeros((1, 5), "float32"))
    return model


def lambda_model() -> Any:
    inputs = k.Input((4,), name="x")
    doubled = L.Lambda(lambda t: t * 2.0, name="double")(inputs)
    outputs = L.Dense(2, name="out")(doubled)
    return k.Model(inputs, outputs, name="with_lambda")


def batch_for(model: Any, rng: np.random.Generator) -> list[Any]:
    if model.inputs is None:  # a subclassed model: called once on (1, 5) when it was made
        return [rng.standard_normal((3, 5)).astype("float32")]
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]
    return [rng.standard_normal((3, *shape)).astype("float32") for shape in shapes]


def main(out: Path) -> None:
    import warnings

    warnings.simplefilter("ignore")  # tf_keras's advice to leave HDF5: the point here is HDF5
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    arrays: dict[str, Any] = {}
    cases: dict[str, Any] = {}

    def record(case: str, model: Any, filename: str, **save: Any) -> None:
        # Non-trivial weights everywhere (BatchNormalization statistics included), so that a
        # weight loaded into the wrong place cannot go unnoticed.
        model.set_weights(
            [rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()]
        )
        path = out / filename
        model.save(path, **save)
        batch = batch_for(model, rng)
        result = model.predict(batch if len(batch) > 1 else batch[0], verbose=0)
        for i, array in enumerate(batch):
            arrays[f"{case}__in{i}"] = array
        arrays[f"{case}__out"] = np.asarray(result, dtype="float32")
        cases[case] = {
            "file": filename,
            "inputs": len(batch),
            "params": int(model.count_params()),
            "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "layers": sorted({type(layer).__name__ for layer in model.layers}),
        }

    record("mobile_h5", mobile(), "mobile.h5")
    record("mobile_hdf5_named_keras", mobile(), "mobile_hdf5.keras", save_format="h5")
    record("mobile_v215", mobile(), "mobile_v215.keras")
    record("recurrent_h5", recurrent(), "recurrent.h5")
    record("recurrent_v215", recurrent(), "recurrent_v215.keras")
    record("nested_h5", nested(), "nested.h5")
    record("nested_v215", nested(), "nested_v215.keras")
    record("mixed_h5", mixed_precision(), "mixed.h5")
    record("custom_layer_h5", custom_layer(), "custom_layer.h5")
    record("custom_layer_v215", custom_layer(), "custom_layer_v215.keras")
    record("custom_model_h5", custom_model(), "custom_model.h5")
    record("lambda_h5", lambda_model(), "lambda.h5")
    # A subclassed model keeps its architecture in code only: refused without that code.
    record("subclassed_v215", subclassed(), "subclassed_v215.keras")

    np.savez(out / "oracle.npz", **arrays)
    (out / "oracle.json").write_text(json.dumps({"tf_keras": k.__version__, "cases": cases}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
