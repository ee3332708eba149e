"""Legacy files open in Keras 3, repaired, and compute what ``tf_keras`` computed with them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from legacy import craft
from legacy.marshalled import LAMBDA_CODE
from legacy.oracle import CUSTOM_OBJECTS, LegacyFiles

from kfreeze_tui.core.errors import LoadError
from kfreeze_tui.core.model.legacy import checks, hard_sigmoid
from kfreeze_tui.core.model.legacy.arguments import NEUTRAL_ARGUMENTS, LayerArguments
from kfreeze_tui.core.model.legacy.repairs import Repair, RepairLog
from kfreeze_tui.core.model.loading import LoadOptions, load

#: Largest difference allowed between kfreeze's outputs and tf_keras's.
TOLERANCE = 1e-5


def open_case(path: Path, **options: Any) -> Any:
    return load(str(path), LoadOptions(weights="none", **options))


def assert_matches_oracle(files: LegacyFiles, loaded: Any, case: str) -> None:
    model = loaded.model
    assert model.count_params() == files.cases[case]["params"]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == files.cases[case]["trainable"]
    outputs = np.asarray(model.predict(files.inputs(case), verbose=0), dtype="float32")
    expected = files.output(case)
    assert outputs.shape == expected.shape
    # float32 rounding grows with the outputs' size (some cases' outputs reach 1e3).
    scale = max(1.0, float(np.max(np.abs(expected))))
    assert float(np.max(np.abs(outputs - expected))) <= TOLERANCE * scale


def codes(loaded: Any) -> set[str]:
    return {repair.code for repair in loaded.repairs}


def test_keras3_itself_refuses_these_files(legacy_files: LegacyFiles, keras: Any) -> None:
    """The premise: without repairs, Keras 3 opens none of them."""
    for case in ("mobile_h5", "mobile_v215", "recurrent_h5", "nested_h5"):
        with pytest.raises(Exception):  # noqa: B017  (Keras raises TypeError / ValueError)
            keras.saving.load_model(legacy_files.path(case), compile=False)


def test_depthwise_model_drops_groups(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("mobile_h5"))
    assert_matches_oracle(legacy_files, loaded, "mobile_h5")
    groups = next(r for r in loaded.repairs if r.code == "groups")
    assert groups.message == (
        "dropped groups=1 from 2 DepthwiseConv2D layers, 1 SeparableConv2D layer and "
        "1 Conv2DTranspose layer"
    )
    assert set(groups.layers) == {"conv_dw_1", "conv_dw_2", "sep", "up"}
    assert {"batch_input_shape", "unused_arguments"} <= codes(loaded)
    assert "Keras 2.21.0 file" in loaded.description


def test_recurrent_model_drops_time_major(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("recurrent_h5"))
    assert_matches_oracle(legacy_files, loaded, "recurrent_h5")
    time_major = next(r for r in loaded.repairs if r.code == "time_major")
    # The plain LSTM, the LSTM config inside the Bidirectional, and the GRU.
    assert time_major.message == "dropped time_major=False from 2 LSTM layers and 1 GRU layer"
    # tf_keras kept the Sequential's input shape on its first layer as well as its InputLayer.
    copy = next(r for r in loaded.repairs if r.code == "input_shape_copy")
    assert copy.layers == ("lstm",)


def test_nested_sequentials_are_renumbered(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("nested_h5"))
    assert_matches_oracle(legacy_files, loaded, "nested_h5")
    nested = next(r for r in loaded.repairs if r.code == "nested_calls")
    assert set(nested.layers) == {"tower", "inner_functional"}
    assert [layer.name for layer in loaded.model.layers] == [
        "left",
        "right",
        "tower",
        "concat",
        "inner_functional",
        "head",
    ]


def test_mixed_precision_policy(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("mixed_h5"))
    assert_matches_oracle(legacy_files, loaded, "mixed_h5")
    assert "dtype_policy" in codes(loaded)
    hidden = loaded.model.get_layer("hidden")
    assert hidden.dtype_policy.name == "mixed_float16"
    assert loaded.model.get_layer("out").dtype_policy.name == "float32"


def test_hdf5_named_keras(legacy_files: LegacyFiles) -> None:
    case = "mobile_hdf5_named_keras"
    loaded = open_case(legacy_files.path(case))
    assert_matches_oracle(legacy_files, loaded, case)
    assert loaded.repairs[0].code == "hdf5_named_keras"


@pytest.mark.parametrize("case", ["mobile_v215", "recurrent_v215", "nested_v215"])
def test_tf_keras_215_archives(legacy_files: LegacyFiles, case: str) -> None:
    loaded = open_case(legacy_files.path(case))
    assert_matches_oracle(legacy_files, loaded, case)


def test_windows_backslashes_in_archive_weights(legacy_files: LegacyFiles, tmp_path: Path) -> None:
    path = craft.archive_copy(
        legacy_files.path("mobile_v215"),
        tmp_path / "windows.keras",
        weights=craft.backslash_weight_paths,
    )
    loaded = open_case(path)
    assert_matches_oracle(legacy_files, loaded, "mobile_v215")
    assert "windows_paths" in codes(loaded)


def test_keras22_layout(legacy_files: LegacyFiles, tmp_path: Path) -> None:
    path = craft.h5_with_config(
        legacy_files.path("nested_h5"), tmp_path / "keras22.h5", craft.keras22_layout
    )
    loaded = open_case(path)
    assert_matches_oracle(legacy_files, loaded, "nested_h5")
    assert {"model_class", "sequential_list", "batch_input_shape", "nested_calls"} <= codes(loaded)


def test_wrapped_layer_without_module(
    legacy_files: LegacyFiles, tmp_path: Path, keras: Any
) -> None:
    path = craft.h5_with_config(
        legacy_files.path("recurrent_h5"),
        tmp_path / "old_wrappers.h5",
        craft.wrappers_without_module,
    )
    loaded = open_case(path)
    assert_matches_oracle(legacy_files, loaded, "recurrent_h5")
    wrapped = next(r for r in loaded.repairs if r.code == "wrapped_layer")
    assert set(wrapped.layers) == {"bidi", "td"}


def test_modules_present_need_no_wrapper_repair(legacy_files: LegacyFiles) -> None:
    """tf_keras 2.21 names the inner layer's module: nothing to report there."""
    assert "wrapped_layer" not in codes(open_case(legacy_files.path("recurrent_h5")))


def test_custom_layers_with_custom_objects(legacy_files: LegacyFiles) -> None:
    for case in ("custom_layer_h5", "custom_layer_v215", "custom_model_h5"):
        loaded = open_case(legacy_files.path(case), custom_objects=CUSTOM_OBJECTS)
        assert_matches_oracle(legacy_files, loaded, case)
    assert type(loaded.model).__name__ == "TransferModel"


def test_lambda_from_this_python_with_unsafe(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("lambda_h5"), unsafe=True)
    assert_matches_oracle(legacy_files, loaded, "lambda_h5")
    with pytest.raises(LoadError) as refused:
        open_case(legacy_files.path("lambda_h5"))
    assert refused.value.kind == "lambda" and "--unsafe" in refused.value.sentence


def repair(loaded: Any, code: str) -> Repair:
    return next(r for r in loaded.repairs if r.code == code)


@pytest.mark.parametrize("case", ["seq2seq_h5", "seq2seq_v215"])
def test_encoder_decoder_with_initial_state(legacy_files: LegacyFiles, case: str) -> None:
    """Keras 2 packed initial_state into the inputs of LSTM, GRU and Bidirectional, stored
    tensors among call arguments (attention's value=), and recorded constants=None."""
    loaded = open_case(legacy_files.path(case))
    assert_matches_oracle(legacy_files, loaded, case)
    states = repair(loaded, "initial_state")
    assert set(states.layers) == {"decoder", "gru_decoder", "bidi_decoder"}
    assert states.message == (
        "passed the initial states Keras 2 packed into the inputs of 1 LSTM layer, "
        "1 GRU layer and 1 Bidirectional layer as initial_state"
    )
    assert repair(loaded, "call_tensors").layers == ("attention",)
    assert repair(loaded, "call_arguments").layers == ("bidi_decoder",)
    assert repair(loaded, "call_shapes").layers == ("attention",)


def test_teachable_machine_nested_sequentials(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("teachable_h5"))
    assert_matches_oracle(legacy_files, loaded, "teachable_h5")
    assert repair(loaded, "single_io").layers == ("mobilenetv2_1.00_224",)


@pytest.mark.parametrize("case", ["teachable_h5", "tf_ops_h5", "seq2seq_h5"])
def test_tf24_layout(legacy_files: LegacyFiles, tmp_path: Path, case: str) -> None:
    """The same files as tf.keras 2.4 to 2.12 wrote them (no module, no build_config)."""
    path = craft.h5_with_config(legacy_files.path(case), tmp_path / "tf24.h5", craft.tf24_layout)
    assert_matches_oracle(legacy_files, open_case(path), case)


def test_teachable_machine_2019(legacy_files: LegacyFiles, tmp_path: Path) -> None:
    """tf.keras 2.2.4-tf: nested class Model, initializers carrying dtype='float32'."""
    path = craft.h5_with_config(
        legacy_files.path("teachable_h5"), tmp_path / "tm2019.h5", craft.keras224_teachable
    )
    loaded = open_case(path)
    assert_matches_oracle(legacy_files, loaded, "teachable_h5")
    dtype = repair(loaded, "dtype_in_objects")
    assert dtype.message.startswith(
        "dropped dtype='float32' from the initializer, regularizer and constraint configs of "
    )
    assert {"Conv1", "dense_Dense1", "dense_Dense2", "bn_Conv1"} <= set(dtype.layers)
    assert "model_class" in codes(loaded)


def test_keras21_spatial_dropout(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("keras21_h5"))
    assert_matches_oracle(legacy_files, loaded, "keras21_h5")
    noise = repair(loaded, "noise_shape")
    assert noise.message == "dropped noise_shape=None from 1 SpatialDropout2D layer"
    assert noise.layers == ("dropout_dw",)
    assert repair(loaded, "trainable").layers == ("dropout_dw",)


def test_neutral_arguments_are_keras2_defaults(legacy_files: LegacyFiles, keras: Any) -> None:
    """Each argument kfreeze drops holds, wherever Keras 3 refuses it, the default that
    tf_keras's signature gives it (TensorFlow 1's for Keras 2.2's initializers)."""
    arguments = LayerArguments(keras, {}, RepairLog())
    for argument, neutral in NEUTRAL_ARGUMENTS.items():
        checked = 0
        for key, default in legacy_files.defaults[argument].items():
            module, class_name = key.split(".", 1)
            if module == "layers":
                accepted = arguments.accepts(class_name)
                if accepted is None or argument in accepted:
                    continue
            assert default == neutral, (argument, key, default)
            checked += 1
        assert checked, f"no tf_keras class has {argument} where Keras 3 refuses it"


def test_tf_op_layers_become_keras_ops(legacy_files: LegacyFiles) -> None:
    for case in ("tf_ops_h5", "tf_ops_v215"):
        loaded = open_case(legacy_files.path(case))
        assert_matches_oracle(legacy_files, loaded, case)
        # The same TensorFlow kernels: not close, equal.
        outputs = loaded.model.predict(legacy_files.inputs(case), verbose=0)
        assert np.array_equal(outputs, legacy_files.output(case))
        ops = repair(loaded, "tf_ops")
        assert ops.message.startswith("rebuilt ") and ops.message.endswith(" as keras.ops calls")
        assert "SlicingOpLambda" in ops.message
        assert any(name.startswith("tf.tile") for name in ops.layers)
        config = loaded.model.get_config()
        classes = {entry["class_name"] for entry in config["layers"]}
        assert {"Tile", "GetItem", "Concatenate", "Mean"} <= classes
        assert not classes & {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def test_tf_op_layers_in_a_model_nested_in_a_sequential(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("tf_ops_nested_h5"))
    assert_matches_oracle(legacy_files, loaded, "tf_ops_nested_h5")
    assert type(loaded.model).__name__ == "Sequential"
    assert repair(loaded, "tf_ops").message == (
        "rebuilt 2 TFOpLambda layers and 1 SlicingOpLambda layer as keras.ops calls"
    )


# -- refusals ---------------------------------------------------------------------------------


def refusal(path: Path, **options: Any) -> LoadError:
    with pytest.raises(LoadError) as raised:
        open_case(path, **options)
    sentence = raised.value.sentence
    assert "\n" not in sentence and sentence.endswith(".")
    assert "Traceback" not in sentence
    return raised.value


@pytest.mark.parametrize("version", sorted(LAMBDA_CODE))
def test_lambda_marshalled_by_another_python(
    legacy_files: LegacyFiles, tmp_path: Path, version: str
) -> None:
    here = checks.marshal_python(checks._own_marshal())
    path = craft.h5_with_config(
        legacy_files.path("lambda_h5"),
        tmp_path / "lambda.h5",
        craft.lambda_code(LAMBDA_CODE[version]),
    )
    assert checks.marshal_python(base64.b64decode(LAMBDA_CODE[version])) == version
    if version == here:
        pytest.skip(f"{version} is this Python: its Lambda code can run here")
    error = refusal(path, unsafe=True)  # even --unsafe cannot run it
    assert error.kind == "lambda-version"
    assert f"marshalled by {version}" in error.sentence
    assert "double" in error.sentence and "--custom-objects" in error.sentence


def test_subclassed_model_without_architecture(legacy_files: LegacyFiles) -> None:
    error = refusal(legacy_files.path("subclassed_v215"))
    assert error.kind == "subclassed"
    assert "CIFAR10Model" in error.sentence and "--custom-objects" in error.sentence


def test_subclassed_model_with_its_code(legacy_files: LegacyFiles) -> None:
    loaded = open_case(legacy_files.path("subclassed_v215"), custom_objects=CUSTOM_OBJECTS)
    assert_matches_oracle(legacy_files, loaded, "subclassed_v215")


def test_custom_model_class_gets_the_custom_objects_sentence(legacy_files: LegacyFiles) -> None:
    error = refusal(legacy_files.path("custom_model_h5"))
    assert error.kind == "custom"
    assert "custom model class TransferModel" in error.sentence
    assert "--custom-objects FILE.py" in error.sentence
    layer_error = refusal(legacy_files.path("custom_layer_h5"))
    assert layer_error.kind == "custom" and "Scale" in layer_error.sentence


@pytest.mark.parametrize(
    ("layer", "key", "value", "needle"),
    [
        ("lstm", "time_major", True, "time_major=True"),
        ("gru", "time_major", True, "time_major=True"),
        # LSTM applies its activation to the cell state too: no weight scales that.
        ("lstm", "activation", "hard_sigmoid", "applies it to the cell state too"),
    ],
)
def test_repair_that_changes_the_computation_is_refused(
    legacy_files: LegacyFiles, tmp_path: Path, layer: str, key: str, value: Any, needle: str
) -> None:
    path = craft.h5_with_config(
        legacy_files.path("recurrent_h5"),
        tmp_path / "changed.h5",
        craft.set_argument(layer, key, value),
    )
    error = refusal(path)
    assert error.kind == "repair" and needle in error.sentence and layer in error.sentence


def test_depthwise_groups_other_than_one_is_refused(
    legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    path = craft.h5_with_config(
        legacy_files.path("mobile_h5"),
        tmp_path / "groups.h5",
        craft.set_argument("conv_dw_1", "groups", 4),
    )
    error = refusal(path)
    assert error.kind == "repair" and "groups=4" in error.sentence


@pytest.mark.parametrize("make", [craft.duplicate_config, craft.pickled_npy, craft.pickled_member])
def test_unsafe_archives_refused_before_deserializing(
    legacy_files: LegacyFiles, tmp_path: Path, make: Any
) -> None:
    path = make(legacy_files.path("mobile_v215"), tmp_path / "bad.keras")
    error = refusal(path)
    assert error.kind == "archive"
    assert "refused" in error.sentence


def test_unsafe_archive_refused_even_from_keras3(small_model_file: Path, tmp_path: Path) -> None:
    """The archive checks are not only for legacy files."""
    path = craft.pickled_member(small_model_file, tmp_path / "small_bad.keras")
    assert refusal(path).kind == "archive"


def test_tf_shape_is_refused_by_name(legacy_files: LegacyFiles) -> None:
    error = refusal(legacy_files.path("tf_shape_h5"))
    assert error.kind == "tf-op"
    assert error.sentence.startswith(f"{legacy_files.path('tf_shape_h5')} cannot be rebuilt")
    assert "uses dimension 0 of the shape that layer tf.compat.v1.shape" in error.sentence
    assert "(tf.compat.v1.shape) gives, which is known only at run time" in error.sentence
    assert "custom" not in error.sentence


@pytest.mark.parametrize(
    ("layer", "key", "value", "needle"),
    [
        ("dropout_dw", "noise_shape", [None, 1, 1, 8], "noise_shape=[None, 1, 1, 8]"),
        ("conv1", "kernel_initializer.dtype", "float16", "dtype='float16'"),
    ],
)
def test_dropped_argument_at_another_value_is_refused(
    legacy_files: LegacyFiles, tmp_path: Path, layer: str, key: str, value: Any, needle: str
) -> None:
    path = craft.h5_with_config(
        legacy_files.path("keras21_h5"), tmp_path / "k21.h5", craft.set_nested(layer, key, value)
    )
    error = refusal(path)
    assert error.kind == "repair" and needle in error.sentence and layer in error.sentence


def test_unregistered_keras3_model_class(keras: Any, tmp_path: Path) -> None:
    """A Keras 3 subclassed model saved from a script: the class is named, with the way out."""

    class Net(keras.Model):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, inputs: Any) -> Any:
            return self.dense(inputs)

    model = Net()
    model(np.zeros((1, 3), "float32"))
    model.save(tmp_path / "saved.keras")
    path = craft.archive_copy(
        tmp_path / "saved.keras", tmp_path / "net.keras", config=craft.unimportable_model_module
    )
    error = refusal(path)
    assert error.kind == "custom"
    assert "custom model class Net" in error.sentence and "--custom-objects" in error.sentence


def test_changed_activations_are_the_ones_keras_changed(
    legacy_files: LegacyFiles, keras: Any
) -> None:
    """Of the activations tf_keras and Keras 3 share by name, exactly those in kfreeze's
    table compute something else."""
    grid = np.linspace(-6.0, 6.0, 49, dtype="float32").reshape(1, 49)
    changed = set()
    for name, expected in legacy_files.activations.items():
        function = getattr(keras.activations, name, None)
        if not callable(function):
            continue
        got = np.asarray(function(keras.ops.convert_to_tensor(grid)), dtype="float32").ravel()
        if float(np.max(np.abs(got - np.asarray(expected, dtype="float32")))) > 1e-5:
            changed.add(name)
    assert changed == set(hard_sigmoid.CHANGED_ACTIVATIONS)


@pytest.mark.parametrize(
    ("case", "layers"),
    [
        ("hs_seq2seq_h5", {"encoder", "decoder"}),
        ("hs_seq2seq_v215", {"encoder", "decoder"}),
        (
            "hs_layers_h5",
            # and the layers inside bidi, rnn_cell and td, named by tf_keras's counters
            {"gru_after", "gru_before", "simple", "dense", "conv", "separable", "depthwise"}
            | {"transpose", "conv_lstm"},
        ),
    ],
)
def test_keras2_hard_sigmoid_is_kept_by_scaling_weights(
    legacy_files: LegacyFiles, case: str, layers: set[str]
) -> None:
    """Keras 2's hard_sigmoid(z) = clip(0.2z + 0.5) is Keras 3's hard_sigmoid(1.2z): the
    weights that make z (LSTM i/f/o and GRU z/r/h columns, kernels and biases) are scaled,
    and the model computes what tf_keras computed, in hard_sigmoid's linear part and its clips
    (the files' weights have both signs, their inputs are spread x3)."""
    loaded = open_case(legacy_files.path(case))
    assert_matches_oracle(legacy_files, loaded, case)
    kept = repair(loaded, "hard_sigmoid")
    assert kept.message.startswith(
        "kept Keras 2's hard_sigmoid (clip(0.2 * x + 0.5, 0, 1)) exactly by scaling by 1.2 "
        "the weights that make its input in "
    )
    assert layers <= set(kept.layers)
    if case == "hs_layers_h5":
        assert len(kept.layers) == len(layers) + 3
    else:
        assert kept.message.endswith(" in 2 LSTM layers")


def test_hard_sigmoid_without_weights_is_refused(legacy_files: LegacyFiles) -> None:
    error = refusal(legacy_files.path("hs_activation_h5"))
    assert error.kind == "repair"
    assert "layer gate (Activation) has activation='hard_sigmoid'" in error.sentence
    assert "clip(0.2 * x + 0.5, 0, 1)" in error.sentence
    assert "has no weights that make its input" in error.sentence


def test_hard_sigmoid_scaling_names_the_penalties_it_changes(
    legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    """A regularizer on weights scaled for hard_sigmoid sees other values: said, not hidden."""
    regularizer = {"class_name": "L2", "config": {"l2": 0.01}}
    path = craft.h5_with_config(
        legacy_files.path("hs_seq2seq_h5"),
        tmp_path / "regularized.h5",
        craft.set_argument("decoder", "kernel_regularizer", regularizer),
    )
    loaded = open_case(path)
    assert_matches_oracle(legacy_files, loaded, "hs_seq2seq_h5")
    assert repair(loaded, "hard_sigmoid_penalties").layers == ("decoder",)
