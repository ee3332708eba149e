"""Legacy files through the installed command and the real app: repairs reported, convert."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from legacy import craft
from legacy.oracle import CUSTOM_OBJECTS, LegacyFiles

TOLERANCE = 1e-5


def test_layers_json_lists_repairs(run_cli: Any, legacy_files: LegacyFiles) -> None:
    result = run_cli("layers", str(legacy_files.path("mobile_h5")), "--json", "--no-cache")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    repairs = {repair["code"]: repair for repair in document["repairs"]}
    assert repairs["groups"]["message"].startswith("dropped groups=1 from 2 DepthwiseConv2D")
    assert sorted(repairs["groups"]["layers"]) == ["conv_dw_1", "conv_dw_2", "sep", "up"]
    assert document["total_params"] == legacy_files.cases["mobile_h5"]["params"]
    text = run_cli("layers", str(legacy_files.path("mobile_h5")))
    assert text.returncode == 0
    assert "kfreeze: note: repaired: dropped groups=1 from 2 DepthwiseConv2D" in text.stderr


def test_repairs_survive_the_cache(run_cli: Any, legacy_files: LegacyFiles) -> None:
    path = str(legacy_files.path("recurrent_h5"))
    first = run_cli("layers", path, "--json")
    second = run_cli("layers", path, "--json")  # from the layer-table cache
    assert first.returncode == second.returncode == 0
    assert json.loads(first.stdout)["repairs"] == json.loads(second.stdout)["repairs"] != []


def test_json_of_a_keras3_file_has_no_repairs(run_cli: Any, small_model_file: Path) -> None:
    result = run_cli("layers", str(small_model_file), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["repairs"] == []


@pytest.mark.parametrize(
    ("case", "options"),
    [
        ("mobile_h5", ()),
        ("recurrent_v215", ()),
        ("nested_h5", ()),
        ("mobile_hdf5_named_keras", ()),
        ("custom_layer_h5", ("--custom-objects", str(CUSTOM_OBJECTS))),
        ("seq2seq_h5", ()),
        ("teachable_h5", ()),
        ("tf_ops_h5", ()),
    ],
)
def test_convert_round_trips(
    run_cli: Any,
    legacy_files: LegacyFiles,
    tmp_path: Path,
    keras: Any,
    case: str,
    options: tuple[str, ...],
) -> None:
    target = tmp_path / f"{case}.keras"
    result = run_cli("convert", str(legacy_files.path(case)), "-o", str(target), *options)
    assert result.returncode == 0, result.stderr
    assert f"wrote {target}" in result.stdout and "outputs agree" in result.stdout
    assert "repaired:" in result.stderr
    # The file is plain Keras 3: Keras opens it without kfreeze, and it computes what
    # tf_keras computed with the original.
    custom = {}
    if options:
        sys.path.insert(0, str(CUSTOM_OBJECTS.parent))
        import custom_objects

        custom = {"Scale": custom_objects.Scale}
    model = keras.saving.load_model(target, custom_objects=custom or None, compile=False)
    outputs = np.asarray(model.predict(legacy_files.inputs(case), verbose=0), dtype="float32")
    expected = legacy_files.output(case)
    scale = max(1.0, float(np.max(np.abs(expected))))  # float32 rounding grows with the outputs
    assert float(np.max(np.abs(outputs - expected))) <= TOLERANCE * scale
    assert model.count_params() == legacy_files.cases[case]["params"]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_convert_keeps_keras2_hard_sigmoid(
    run_cli: Any, legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    """Keras 2.2's lstm_seq2seq (hard_sigmoid gates): the converted file is plain Keras 3,
    and a process that never imports kfreeze computes with it what tf_keras computed."""
    case = "hs_seq2seq_h5"
    target = tmp_path / "seq2seq.keras"
    result = run_cli("convert", str(legacy_files.path(case)), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "repaired: kept Keras 2's hard_sigmoid" in result.stderr
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, *legacy_files.inputs(case))
    code = (
        "import sys, numpy as np, keras\n"
        f"model = keras.saving.load_model({str(target)!r}, compile=False)\n"
        f"data = np.load({str(inputs)!r})\n"
        "out = model.predict([data[f'arr_{i}'] for i in range(len(data.files))], verbose=0)\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, out)\n"
        "print(model.count_params(), any(m.startswith('kfreeze') for m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert loaded.stdout.split()[-2:] == [str(legacy_files.cases[case]["params"]), "False"], (
        loaded.stderr[-2000:]
    )
    outputs = np.load(tmp_path / "out.npy")
    assert float(np.max(np.abs(outputs - legacy_files.output(case)))) <= TOLERANCE


def test_layers_json_of_tf_op_layers(run_cli: Any, legacy_files: LegacyFiles) -> None:
    result = run_cli("layers", str(legacy_files.path("tf_ops_h5")), "--json", "--no-cache")
    assert result.returncode == 0, result.stderr
    repairs = {repair["code"]: repair for repair in json.loads(result.stdout)["repairs"]}
    assert repairs["tf_ops"]["message"].endswith("SlicingOpLambda layers as keras.ops calls")
    refused = run_cli("layers", str(legacy_files.path("tf_shape_h5")))
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "tf.compat.v1.shape" in lines[0]


def test_convert_json(run_cli: Any, legacy_files: LegacyFiles, tmp_path: Path) -> None:
    target = tmp_path / "mobile.keras"
    result = run_cli("convert", str(legacy_files.path("mobile_v215")), "-o", str(target), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["output"] == str(target) and document["bytes"] == target.stat().st_size
    assert document["max_difference"] <= TOLERANCE
    assert any(repair["code"] == "groups" for repair in document["repairs"])


def test_convert_never_overwrites_without_force(
    run_cli: Any, legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    target = tmp_path / "out.keras"
    target.write_bytes(b"precious")
    refused = run_cli("convert", str(legacy_files.path("mobile_h5")), "-o", str(target))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"kfreeze: error: {target} exists already; pass --force to replace it."
    )
    assert target.read_bytes() == b"precious"
    forced = run_cli("convert", str(legacy_files.path("mobile_h5")), "-o", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes()[:2] == b"PK"


@pytest.mark.parametrize(
    ("target", "needle"),
    [("out.h5", "must end in .keras"), ("missing/out.keras", "does not exist")],
)
def test_convert_bad_targets(
    run_cli: Any, legacy_files: LegacyFiles, tmp_path: Path, target: str, needle: str
) -> None:
    result = run_cli("convert", str(legacy_files.path("mobile_h5")), "-o", str(tmp_path / target))
    assert result.returncode == 2 and needle in result.stderr
    assert result.stdout == ""


def test_convert_refusal_is_one_sentence(
    run_cli: Any, legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    target = tmp_path / "never.keras"
    result = run_cli("convert", str(legacy_files.path("subclassed_v215")), "-o", str(target))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kfreeze: error: ")
    assert "CIFAR10Model" in lines[0]
    assert not target.exists()


def test_unsafe_archive_refused_before_keras_is_imported(
    legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    """Refused before anything in the file is deserialized: Keras is not even imported."""
    path = craft.pickled_npy(legacy_files.path("mobile_v215"), tmp_path / "bad.keras")
    code = (
        "import sys\n"
        "from kfreeze_tui.core.model.loading import LoadError, load\n"
        f"try:\n    load({str(path)!r})\nexcept LoadError as exc:\n    print(exc.kind)\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.split() == ["archive", "False", "False"], result.stderr


def test_export_script_of_a_legacy_model_loads_its_converted_copy(
    run_cli: Any, legacy_files: LegacyFiles, tmp_path: Path
) -> None:
    """The script uses Keras alone, which cannot read the old file: it names the convert
    command and loads the converted copy, and then builds the model the export wrote (run
    from another folder: it finds the copy beside itself)."""
    source = tmp_path / "mobile.h5"
    shutil.copyfile(legacy_files.path("mobile_h5"), source)
    model_path, script = tmp_path / "ft.keras", tmp_path / "ft.py"
    exported = run_cli(
        "export", str(source), "--freeze-before", "conv_pw_1", "--classes", "3",
        "-o", str(model_path), "--script", str(script),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    converted = tmp_path / "mobile_keras3.keras"
    # Named from the script's folder, where the comment says to run it.
    assert "#     kfreeze convert mobile.h5 -o mobile_keras3.keras\n" in script.read_text()
    assert run_cli("convert", str(source), "-o", str(converted)).returncode == 0
    code = (
        "import runpy, sys, keras\n"
        f"model = runpy.run_path({str(script)!r})['model']\n"
        f"saved = keras.saving.load_model({str(model_path)!r})\n"
        "count = lambda ws: sum(int(w.numpy().size) for w in ws)\n"
        "print(count(model.trainable_weights) == count(saved.trainable_weights),"
        " model.count_params() == saved.count_params())\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        cwd=elsewhere, check=False,
    )  # fmt: skip
    assert result.stdout.split()[-2:] == ["True", "True"], result.stderr[-2000:]
