"""Export with LoRA avoids the trap (a .keras file reloads LoRA as zero adapters that train
nothing): the deployable file loads in bare Keras as plain layers with the LoRA model's
outputs, the adapters are saved apart, the script rebuilds the LoRA model and resumes with
live adapters, and the session's own model never gets LoRA.

MobileNetV2 at 32x32 (weights=None, saved once to a file so that every process reads the
same weights), LoRA rank 4 on every layer that takes it, the rest frozen."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lora_probe import run_facts

from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.export import ExportRequest

RANK = 4
HEAD = HeadSpec(classes=3)
PLAN = FreezePlan(boundary=None, lora=LoraSpec(RANK, "all"))


@pytest.fixture(scope="module")
def exported(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The base file, a session on it, and two exports in a row from that session."""
    folder = tmp_path_factory.mktemp("lora_export")
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    base.save(folder / "mnv2.keras")
    session = ModelSession(load(str(folder / "mnv2.keras"), LoadOptions()))
    before = [np.array(w.numpy()) for w in session.model.weights]
    results = []
    for name in ("out", "again"):
        request = ExportRequest(
            model_path=folder / f"{name}.keras",
            plan_path=folder / f"{name}.toml",
            script_path=folder / f"{name}.py",
        )
        results.append(session.export(LoadOptions(), PLAN, HEAD, CompileSpec(), request))
    return {"folder": folder, "session": session, "results": results, "before": before}


def _keras_oracle(keras: Any, path: Path) -> int:
    """Trainable parameters as Keras's own enable_lora makes them: the base loaded in bare
    Keras, every layer frozen, LoRA on every layer that has enable_lora, and the head."""
    base = keras.saving.load_model(path)
    for layer in base.layers:
        layer.trainable = False
    for layer in base.layers:
        if hasattr(layer, "enable_lora"):
            layer.trainable = True
            layer.enable_lora(RANK)
    lora = sum(int(keras.ops.size(w)) for w in base.trainable_weights)
    return lora + 1280 * 3 + 3  # the head: Dense(3) on the pooled 1280 features


def test_the_sessions_model_is_as_before_and_exports_repeat(exported: dict[str, Any]) -> None:
    session = exported["session"]
    model = session.model
    assert not [w for w in model.weights if "lora" in w.path]
    assert not any(getattr(layer, "lora_enabled", False) for layer in model.layers)
    walked = walk(model)
    assert walked.trainable_params == session.info.trainable_params
    assert [r.trainable_params for r in walked.layers] == [
        r.trainable_params for r in session.info.layers
    ]
    assert all(
        np.array_equal(w.numpy(), old)
        for w, old in zip(model.weights, exported["before"], strict=True)
    )
    first, second = exported["results"]
    assert [f.what for f in first.files] == ["model", "LoRA adapters", "plan", "script"]
    assert [f.what for f in second.files] == [f.what for f in first.files]
    for a, b in zip(first.files, second.files, strict=True):
        assert abs(a.size - b.size) < 0.01 * a.size
    assert first.verification.trainable_params == second.verification.trainable_params
    assert first.verification.non_trainable_params == second.verification.non_trainable_params


def test_the_trainable_count_is_keras_own(exported: dict[str, Any], keras: Any) -> None:
    verification = exported["results"][0].verification
    assert verification.trainable_params == _keras_oracle(keras, exported["folder"] / "mnv2.keras")
    text = "; ".join(verification.checks)
    assert "which load as plain layers" in text
    assert "35 of 35 LoRA B matrices moved" in text
    assert "FROZEN WEIGHTS CHANGED" not in text


_FRESH = textwrap.dedent(
    """
    import json, runpy, sys
    import numpy as np
    import keras
    from lora_probe import deploy_and_step
    folder = sys.argv[1]
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    y = np.array([0, 1])
    facts, ns = deploy_and_step(folder, "out", x, y)
    model = ns["model"]
    lora_a = [w for w in model.weights if w.path.endswith("lora_kernel_a")]
    # Save (deployable + adapters), then resume in a model built again by the script.
    ns["save"](folder + "/trained.keras")
    trained = model(x)
    resumed_ns = runpy.run_path(folder + "/out.py")
    resumed = resumed_ns["model"]
    resumed_ns["load_adapters"](resumed, folder + "/trained.lora.npz")
    facts["resumed_vs_trained"] = float(np.max(np.abs(resumed(x) - trained)))
    again = keras.saving.load_model(folder + "/trained.keras")
    facts["trained_file_vs_trained"] = float(np.max(np.abs(again(x) - trained)))
    facts["trained_file_lora"] = [w.path for w in again.weights if "lora" in w.path]
    # Gradients alive: with B no longer zero, A's gradients are not zero (a file reloaded
    # with LoRA on has A = B = 0, whose gradients are exactly zero).
    import tensorflow as tf
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, resumed(x, training=True))
    resumed_a = [w for w in resumed.trainable_weights if w.path.endswith("lora_kernel_a")]
    grads = tape.gradient(loss, resumed_a)
    facts["a_alive_after_resume"] = sum(
        g is not None and bool(np.any(g.numpy() != 0)) for g in grads
    )
    facts["a_count"] = len(lora_a)
    print("FACTS " + json.dumps(facts))
    """
)


def test_in_a_fresh_process_the_file_deploys_and_the_script_resumes(
    exported: dict[str, Any], keras: Any
) -> None:
    folder = exported["folder"]
    facts = run_facts(_FRESH, str(folder))
    assert facts["deployed_lora"] == []  # nothing of LoRA to resume as zeros
    assert facts["script_trainable"] == _keras_oracle(keras, folder / "mnv2.keras")
    assert facts["deployed_vs_script"] < 1e-5  # the file = the script's model + adapters
    assert facts["b_count"] == 35 and facts["b_moved"] == 35
    assert facts["frozen_changed"] == 0  # frozen kernels bitwise unchanged
    assert facts["resumed_vs_trained"] < 1e-5
    assert facts["trained_file_vs_trained"] < 1e-4  # W + A.B merged on saving
    assert facts["trained_file_lora"] == []
    assert facts["a_alive_after_resume"] == facts["a_count"] == 35


def test_apply_reproduces_the_export(exported: dict[str, Any], run_cli: Any) -> None:
    folder = exported["folder"]
    out = folder / "applied.keras"
    result = run_cli("apply", str(folder / "out.toml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    first = exported["results"][0].verification
    assert f"{first.trainable_params:,} trainable and {first.non_trainable_params:,}" in (
        result.stdout
    )
    with (
        np.load(folder / "out.lora.npz") as exported_file,
        np.load(folder / "applied.lora.npz") as applied,
    ):
        assert sorted(exported_file.files) == sorted(applied.files)
        assert all(exported_file[k].shape == applied[k].shape for k in applied.files)


def test_adapters_of_another_plan_are_refused(exported: dict[str, Any], keras: Any) -> None:
    from kfreeze_tui.core.errors import ExportError
    from kfreeze_tui.core.train.adapters import load_adapters_checked

    folder = exported["folder"]
    other = keras.saving.load_model(folder / "mnv2.keras")  # no LoRA, no head
    other.trainable = True
    with pytest.raises(ExportError, match=r"no weight .* another plan or LoRA"):
        load_adapters_checked(other, folder / "out.lora.npz")
