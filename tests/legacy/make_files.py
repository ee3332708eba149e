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


def encoder_decoder() -> Any:
    """Keras 2 seq2seq: decoders called with ``initial_state`` (an LSTM, a GRU and a
    Bidirectional LSTM), and attention called with ``value=`` a tensor."""
    encoder_in = k.Input((5, 3), name="encoder_in")
    decoder_in = k.Input((4, 2), name="decoder_in")
    _, h, c = L.LSTM(6, return_state=True, name="encoder")(encoder_in)
    _, g = L.GRU(6, return_state=True, name="gru_encoder")(encoder_in)
    decoded = L.LSTM(6, return_sequences=True, name="decoder")(decoder_in, initial_state=[h, c])
    gru = L.GRU(6, return_sequences=True, name="gru_decoder")(decoder_in, initial_state=g)
    both = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bidi_decoder")(
        decoder_in, initial_state=[h[:, :3], c[:, :3], h[:, 3:], c[:, 3:]]
    )
    attended = L.MultiHeadAttention(2, 4, name="attention")(decoded, value=gru)
    merged = L.Concatenate(name="merge")([decoded, attended, both])
    outputs = L.Dense(3, name="out")(merged)
    return k.Model([encoder_in, decoder_in], outputs, name="seq2seq")


def teachable_machine() -> Any:
    """Teachable Machine's export: a Sequential of a Sequential [a MobileNet-like Functional,
    GlobalAveragePooling2D] and a Sequential [Dense, Dense] (tf.keras 2.4 wrote the same)."""
    init = k.initializers.VarianceScaling()
    image = k.Input((16, 16, 3), name="input_1")
    x = L.Conv2D(8, 3, strides=2, kernel_initializer=init, name="Conv1")(image)
    x = L.BatchNormalization(name="bn_Conv1")(x)
    x = L.ReLU(6.0, name="Conv1_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="expanded_conv_depthwise")(x)
    base = k.Model(image, x, name="mobilenetv2_1.00_224")
    features = k.Sequential([base, L.GlobalAveragePooling2D(name="gap")], name="sequential_1")
    head = k.Sequential(
        [
            L.Dense(5, input_shape=(8,), kernel_initializer=init, name="dense_Dense1"),
            L.Dense(3, activation="softmax", kernel_initializer=init, name="dense_Dense2"),
        ],
        name="sequential_3",
    )
    model = k.Sequential([features, head], name="sequential_4")
    model.build((None, 16, 16, 3))
    return model


def keras21_mobilenet() -> Any:
    """MobileNet's layers flattened into one Sequential, SpatialDropout2D among them."""
    return k.Sequential(
        [
            L.Conv2D(8, 3, strides=2, padding="same", input_shape=(16, 16, 3), name="conv1"),
            L.BatchNormalization(name="conv1_bn"),
            L.ReLU(6.0, name="conv1_relu"),
            L.DepthwiseConv2D(3, padding="same", name="conv_dw_1"),
            L.SpatialDropout2D(0.3, name="dropout_dw"),
            L.Conv2D(8, 1, name="conv_pw_1"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(3, name="predictions"),
        ],
        name="mobilenet_1.00_128",
    )


def tf_ops(ellipsis: bool = True) -> Any:
    """TensorFlow functions called on Keras tensors: tf.keras records TFOpLambda and
    SlicingOpLambda layers (its .keras format cannot write a slice with an Ellipsis)."""
    x = k.Input((4, 6), name="x")
    h = L.Dense(6, name="dense")(x)
    shape = tf.shape(h)  # its static dimensions only: folded into constants
    pieces = [
        h / tf.math.sqrt(tf.cast(shape[-1], tf.float32)),
        tf.reshape(h, [-1, shape[1] * shape[2]]),
        tf.tile(h, [1, 2, 1]),
        h[:, 1:3],
        h[..., 0] if ellipsis else h[:, :, 0],
        h[:, None, 0],
        h * 2.0 + 1.0,
        1.0 - h / 3.0,
        tf.concat([h, -h], axis=-1),
        tf.stack([h, tf.square(h)], axis=1),
        tf.reduce_mean(h, axis=1),
        tf.reduce_sum(h, axis=-1, keepdims=True),
        tf.expand_dims(tf.reduce_max(h, axis=1), 1),
        tf.transpose(h, [0, 2, 1]),
        tf.squeeze(tf.expand_dims(h, 1), 1),
        tf.nn.softmax(h),
        tf.nn.relu6(tf.sigmoid(h) * 8.0),
        tf.where(h > 1.0, tf.sqrt(tf.abs(h)), tf.exp(-h)),
        tf.clip_by_value(tf.tanh(h), -0.5, 0.5),
        tf.matmul(h, tf.transpose(h, [0, 2, 1])),
        tf.cast(tf.maximum(h, 1.2), "float16"),
        tf.gather(h, [0, 2], axis=1),
        tf.floor(h * 3.0) + tf.math.ceil(h) + tf.round(h * 2.0) + tf.math.sign(h - 1.0),
        tf.math.log1p(tf.abs(h)) + tf.math.erf(h) + tf.nn.softplus(-h),
        tf.nn.leaky_relu(1.0 - h) + tf.nn.elu(1.0 - h),
    ]
    flat = [
        tf.reshape(tf.cast(piece, "float32"), (-1, int(np.prod(piece.shape[1:]))))
        for piece in pieces
    ]
    return k.Model(x, tf.concat(flat, axis=-1), name="tf_ops")


def tf_ops_nested() -> Any:
    """Op layers inside a model nested in a Sequential."""
    image = k.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, name="conv")(image)
    base = k.Model(image, (x * 2.0 + 1.0)[:, 1:], name="base")
    model = k.Sequential([base, L.GlobalAveragePooling2D(name="gap"), L.Dense(2, name="out")])
    model.build((None, 8, 8, 3))
    return model


def tf_shape() -> Any:
    """The batch size from tf.shape has no Keras 3 operation: refused, named."""
    x = k.Input((4, 6), name="x")
    return k.Model(x, tf.reshape(x, [tf.shape(x)[0], -1]), name="tf_shape")


#: Arguments whose Keras 2 default the tests compare with kfreeze's table.
DEFAULT_ARGUMENTS = (
    "groups", "time_major", "noise_shape", "fused", "virtual_batch_size", "adjustment",
    "dynamic", "conv_op", "force_generator", "rng_type", "robust_masking",
    "softmax_robust_masking", "sparse", "dtype", "trainable",
)  # fmt: skip


def keras2_defaults() -> dict[str, dict[str, Any]]:
    """For each argument, the default each tf_keras layer class gives it (and each
    tf.compat.v1 initializer class, as Keras 2.2 wrote them), read from the signatures of the
    class and of the bases it hands ``**kwargs`` on to: ``{argument: {"layers.X": default}}``."""
    import inspect

    found: dict[str, dict[str, Any]] = {name: {} for name in DEFAULT_ARGUMENTS}
    # tf.keras 2.2.4-tf's initializers were TensorFlow 1's (tf.compat.v1.*_initializer).
    classes = [(f"layers.{name}", getattr(L, name)) for name in dir(L)]
    classes += [
        (f"initializers.{name}", getattr(tf.compat.v1, name))
        for name in dir(tf.compat.v1)
        if name.endswith("_initializer")
    ]
    for key, cls in classes:
        if not isinstance(cls, type):
            continue
        for base in cls.__mro__:
            if "__init__" not in vars(base):
                continue
            parameters = inspect.signature(base.__init__).parameters
            for name, parameter in parameters.items():
                if name == "dtype" and key.startswith("layers."):
                    continue  # a layer's dtype: Keras 3 takes it
                if name in found and parameter.default is not inspect.Parameter.empty:
                    default = parameter.default
                    found[name].setdefault(key, getattr(default, "name", default))
            if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                break
    return found


HS = "hard_sigmoid"


def hard_sigmoid_seq2seq() -> Any:
    """Keras 2.2's lstm_seq2seq example: LSTMs with its default recurrent_activation,
    hard_sigmoid, the decoder called with the encoder's states as initial_state."""
    encoder_in = k.Input((6, 4), name="encoder_inputs")
    decoder_in = k.Input((5, 3), name="decoder_inputs")
    _, h, c = L.LSTM(8, return_state=True, recurrent_activation=HS, name="encoder")(encoder_in)
    decoded, _, _ = L.LSTM(
        8, return_sequences=True, return_state=True, recurrent_activation=HS, name="decoder"
    )(decoder_in, initial_state=[h, c])
    outputs = L.Dense(3, activation="softmax", name="decoder_dense")(decoded)
    return k.Model([encoder_in, decoder_in], outputs, name="lstm_seq2seq")


def hard_sigmoid_layers() -> Any:
    """hard_sigmoid in every place whose input a layer's own weights make: GRU gates and
    candidate (reset_after True and False), a Bidirectional LSTM, an LSTMCell in RNN, a
    SimpleRNN, TimeDistributed Dense, Dense, convolutions (plain, separable, depthwise,
    transposed) and a ConvLSTM1D."""
    seq = k.Input((6, 3), name="seq")
    image = k.Input((6, 6, 2), name="image")
    frames = k.Input((4, 6, 2), name="frames")
    pieces = [
        L.GRU(4, activation=HS, recurrent_activation=HS, name="gru_after")(seq),
        L.GRU(4, activation=HS, recurrent_activation=HS, reset_after=False, name="gru_before")(seq),
        L.Bidirectional(L.LSTM(3, recurrent_activation=HS), name="bidi")(seq),
        L.RNN(L.LSTMCell(3, recurrent_activation=HS), name="rnn_cell")(seq),
        L.SimpleRNN(3, activation=HS, name="simple")(seq),
        L.TimeDistributed(L.Dense(2, activation=HS), name="td")(seq),
        L.Dense(3, activation=HS, name="dense")(L.Flatten(name="flat")(seq)),
        L.Conv2D(3, 3, activation=HS, name="conv")(image),
        L.SeparableConv2D(3, 3, activation=HS, name="separable")(image),
        L.DepthwiseConv2D(3, activation=HS, name="depthwise")(image),
        L.Conv2DTranspose(2, 3, activation=HS, name="transpose")(image),
        L.ConvLSTM1D(2, 3, recurrent_activation=HS, name="conv_lstm")(frames),
    ]
    flat = [L.Flatten(name=f"flat_{i}")(piece) for i, piece in enumerate(pieces)]
    outputs = L.Concatenate(name="merge")(flat)
    return k.Model([seq, image, frames], outputs, name="hard_sigmoid_layers")


def hard_sigmoid_activation() -> Any:
    """A standalone Activation('hard_sigmoid'): no weights of its own to keep it with."""
    inputs = k.Input((4,), name="x")
    x = L.Dense(3, name="dense")(inputs)
    return k.Model(inputs, L.Activation(HS, name="gate")(x), name="hard_sigmoid_activation")


#: Where each activation is compared between tf_keras and Keras 3.
ACTIVATION_GRID = np.linspace(-6.0, 6.0, 49, dtype="float32").reshape(1, 49)


def activation_values() -> dict[str, list[float]]:
    """What each tf_keras activation (taking a tensor alone) gives on ACTIVATION_GRID."""
    values = {}
    for name in dir(k.activations):
        function = getattr(k.activations, name)
        if name.startswith("_") or not callable(function) or name in ("get", "serialize"):
            continue
        try:
            result = function(tf.constant(ACTIVATION_GRID))
        except (TypeError, ValueError):
            continue
        values[name] = np.asarray(result, dtype="float32").ravel().tolist()
    return values


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

    def record(
        case: str, model: Any, filename: str, low: float = 0.5, spread: float = 1.0, **save: Any
    ) -> None:
        # Non-trivial weights everywhere (BatchNormalization statistics included), so that a
        # weight loaded into the wrong place cannot go unnoticed.
        model.set_weights(
            [rng.uniform(low, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()]
        )
        path = out / filename
        model.save(path, **save)
        batch = [array * spread for array in batch_for(model, rng)]
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

    record("seq2seq_h5", encoder_decoder(), "seq2seq.h5")
    record("seq2seq_v215", encoder_decoder(), "seq2seq_v215.keras")
    record("teachable_h5", teachable_machine(), "teachable.h5")
    record("keras21_h5", keras21_mobilenet(), "keras21.h5")
    record("tf_ops_h5", tf_ops(), "tf_ops.h5")
    record("tf_ops_v215", tf_ops(ellipsis=False), "tf_ops_v215.keras")
    record("tf_ops_nested_h5", tf_ops_nested(), "tf_ops_nested.h5")
    record("tf_shape_h5", tf_shape(), "tf_shape.h5")

    # Weights of both signs and inputs spread x3, so that hard_sigmoid's input falls both
    # in its linear part (|z| < 2.5) and where it clips.
    hard = {"low": -1.5, "spread": 3.0}
    record("hs_seq2seq_h5", hard_sigmoid_seq2seq(), "hs_seq2seq.h5", **hard)
    record("hs_seq2seq_v215", hard_sigmoid_seq2seq(), "hs_seq2seq_v215.keras", **hard)
    record("hs_layers_h5", hard_sigmoid_layers(), "hs_layers.h5", **hard)
    record("hs_activation_h5", hard_sigmoid_activation(), "hs_activation.h5")

    np.savez(out / "oracle.npz", **arrays)

    document = {
        "tf_keras": k.__version__,
        "cases": cases,
        "defaults": keras2_defaults(),
        "activations": activation_values(),
    }
    (out / "oracle.json").write_text(json.dumps(document))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
