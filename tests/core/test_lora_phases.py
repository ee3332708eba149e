"""An export of a plan with LoRA and training phases: a head warm-up without LoRA, then
phases with it. The script's ``train()`` runs every phase in a fresh process; after each,
what trained is what Keras's own API gives (the phase's ``trainable`` flags, then
``layer.enable_lora(rank)`` on the LoRA layers of a model built afresh), the kernels of the
LoRA layers are bitwise the file's and the B matrices moved. ``kfreeze apply`` of the
exported plan writes the same model.

The small functional CNN of ``tests/conftest.py`` (32x32, BatchNormalization, a classifier the
head replaces), LoRA rank 2 on ``block1_conv`` and ``block2_conv``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lora_probe import run_facts

from kfreeze_tui.core.model.loading import LoadOptions, load
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.core.plan.phases import CompileSpec, Phase
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.export import ExportRequest

RANK = 2
LORA_LAYERS = ("block1_conv", "block2_conv")
HEAD = HeadSpec(classes=3)
PLAN = FreezePlan(
    boundary=None, bn_policy=BNPolicy.TRAINABLE, lora=LoraSpec(RANK, "block[12]_conv")
)
#: (boundary, epochs, rate, lora): ``head:1:1e-3`` without LoRA, then three phases with it,
#: each unfreezing more (the third leaves block1_conv before its boundary again, whose flag
#: goes off and on: the kernel must stay frozen), the last with rates over the stages.
PHASES = (
    ("head", 1, 1e-3, False),
    ("block2_conv", 1, 1e-4, None),
    ("block1_bn", 1, 1e-4, None),
    ("stem_bn", 1, (1e-5, 1e-4), None),
)


def _phases(session: ModelSession) -> tuple[Phase, ...]:
    paths = {row.name: row.path for row in session.info.layers}
    return tuple(
        Phase(
            boundary=None if where == "head" else paths[where],
            epochs=epochs,
            lr=None if isinstance(rate, tuple) else rate,
            lr_range=rate if isinstance(rate, tuple) else None,
            lora=lora,
        )
        for where, epochs, rate, lora in PHASES
    )


@pytest.fixture(scope="module")
def exported(small_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two exports of one session: phase 1 (no LoRA yet) and phase 2 (LoRA)."""
    folder = tmp_path_factory.mktemp("lora_phases")
    session = ModelSession(load(str(small_model_file), LoadOptions()))
    session.set_training_plan(_phases(session))
    results = {}
    for phase in (1, 2):
        request = ExportRequest(
            model_path=folder / f"out{phase}.keras",
            plan_path=folder / f"out{phase}.toml",
            script_path=folder / f"out{phase}.py",
        )
        results[phase] = session.export(
            LoadOptions(), PLAN, HEAD, CompileSpec(), request, phase=phase
        )
    return {"folder": folder, "session": session, "results": results}


def _keras_reference(keras: Any, path: Path, number: int) -> list[str]:
    """The trainable variables of phase ``number`` as plain Keras gives them: the file
    loaded, the head added, each layer's flag set for the phase's boundary, then LoRA put
    on with Keras's own ``enable_lora`` (the phases from the second have it)."""
    base = keras.saving.load_model(path)
    where = PHASES[number - 1][0]
    names = [layer.name for layer in base.layers]
    cut = len(names) if where == "head" else names.index(where)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= cut
    if number > 1:
        for name in LORA_LAYERS:
            layer = base.get_layer(name)
            layer.trainable = True
            layer.enable_lora(RANK)
    head = keras.layers.Dense(3, activation="softmax", name="head_output")
    model = keras.Model(base.inputs, head(base.get_layer("gap").output))
    return sorted(str(v.path) for v in model.trainable_weights)


_RUN = textwrap.dedent(
    """
    import json, runpy, sys, warnings
    import numpy as np
    import keras
    warnings.simplefilter("ignore")
    script = sys.argv[1]
    ns = runpy.run_path(script)
    model, train = ns["model"], ns["train"]
    facts = {"built": sorted(str(v.path) for v in model.trainable_weights), "phases": []}

    def kernels():
        return {
            str(v.path): v.numpy().copy()
            for v in model.weights
            if v.path.split("/")[0] in ("block1_conv", "block2_conv")
            and v.path.endswith(("/kernel", "lora_kernel_b"))
        }

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.before = kernels()
            self.trainable = sorted(str(v.path) for v in model.trainable_weights)
            self.optimizer = type(model.optimizer).__name__

        def on_train_end(self, logs=None):
            after = kernels()
            facts["phases"].append(
                {
                    "trainable": self.trainable,
                    "optimizer": self.optimizer,
                    "lora": sorted(p for p in after if "lora" in p),
                    "kernel_changed": sorted(
                        p for p, v in after.items()
                        if p.endswith("/kernel") and not np.array_equal(v, self.before[p])
                    ),
                    "b_moved": sorted(
                        p for p, v in after.items()
                        if p.endswith("lora_kernel_b") and not np.array_equal(v, self.before[p])
                    ),
                }
            )

    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 3
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    train(data, callbacks=[Watch()], verbose=0)
    facts["final_kernels"] = {p: v.tolist() for p, v in kernels().items() if p.endswith("/kernel")}
    print("FACTS " + json.dumps(facts))
    """
)


@pytest.fixture(scope="module")
def trained(exported: dict[str, Any]) -> dict[str, Any]:
    """The phase-1 export's script, run in a fresh process through every phase."""
    return run_facts(_RUN, str(exported["folder"] / "out1.py"))


def test_the_exports_are_verified_for_their_phase(exported: dict[str, Any], keras: Any) -> None:
    first, second = exported["results"][1], exported["results"][2]
    # Phase 1 has no LoRA yet: a plain file, proved by one step, and no adapters file.
    assert [f.what for f in first.files] == ["model", "plan", "script"]
    loaded = keras.saving.load_model(exported["folder"] / "out1.keras")
    assert not [w for w in loaded.weights if "lora" in w.path]
    assert sorted(str(v.path) for v in loaded.trainable_weights) == [
        "head_output/bias",
        "head_output/kernel",
    ]
    # Phase 2 has LoRA: the deployable file and the adapters, the LoRA step proved.
    assert [f.what for f in second.files] == ["model", "LoRA adapters", "plan", "script"]
    text = "; ".join(second.verification.checks)
    assert "2 of 2 LoRA B matrices moved" in text
    assert "FROZEN WEIGHTS CHANGED" not in text
    statistics = ("moving_mean", "moving_variance")
    with np.load(exported["folder"] / "out2.lora.npz") as adapters:
        assert sorted(adapters.files) == sorted(
            [
                *(f"{name}/lora_kernel_{ab}" for name in LORA_LAYERS for ab in "ab"),
                *(f"{name}/bias" for name in LORA_LAYERS),
                *(f"{bn}/{s}" for bn in ("stem_bn", "block1_bn") for s in statistics),
                "head_output/kernel", "head_output/bias",
            ]
        )  # fmt: skip
    # The session's model never gets LoRA.
    model = exported["session"].model
    assert not any(getattr(layer, "lora_enabled", False) for layer in model.layers)


def test_the_plan_file_keeps_the_lora_of_the_later_phases(exported: dict[str, Any]) -> None:
    from kfreeze_tui.core.plan import planfile

    document = planfile.read(exported["folder"] / "out1.toml")
    assert document.lora is not None and document.lora.rank == RANK
    assert [phase.lora for phase in document.phases] == [False, None, None, None]
    script = (exported["folder"] / "out1.py").read_text()
    assert "lora=False" in script and "lora=True" in script
    assert "ADAPTERS" not in script  # phase 1 has no adapters to load


def test_the_script_trains_each_phase_as_keras_sets_it_up(
    trained: dict[str, Any], small_model_file: Path, keras: Any
) -> None:
    assert trained["built"] == _keras_reference(keras, small_model_file, 1)
    assert len(trained["phases"]) == len(PHASES)
    for number, phase in enumerate(trained["phases"], start=1):
        assert phase["trainable"] == _keras_reference(keras, small_model_file, number), number
        assert phase["kernel_changed"] == [], number  # frozen kernels bitwise unchanged
        if number == 1:  # LoRA goes on when the first phase with it starts, not before
            assert phase["lora"] == []
        else:
            assert phase["b_moved"] == [f"{name}/lora_kernel_b" for name in LORA_LAYERS]
    assert [phase["optimizer"] for phase in trained["phases"]] == [
        "Adam",
        "Adam",
        "Adam",
        "MultiOptimizer",
    ]
    original = keras.saving.load_model(small_model_file)
    for path, value in trained["final_kernels"].items():
        layer = original.get_layer(path.split("/")[0])
        assert np.array_equal(np.asarray(value, dtype="float32"), layer.kernel.numpy()), path


def test_the_range_gives_the_adapters_their_stages_rates(exported: dict[str, Any]) -> None:
    """optimizer_for maps the adapters of the layers after the boundary to their stage's
    rate, as the library's phase_optimizer does."""
    code = textwrap.dedent(
        """
        import json, runpy, sys, warnings
        warnings.simplefilter("ignore")
        ns = runpy.run_path(sys.argv[1])
        ns["set_phase"](ns["PHASES"][3])
        optimizer = ns["optimizer_for"](ns["PHASES"][3])
        # The OptimizerMap it was made with ({variable path: optimizer}): Keras keeps it
        # without a public accessor.
        mapping = optimizer._optimizer_map
        print("FACTS " + json.dumps(
            {p: float(o.learning_rate) for p, o in mapping.items() if "lora" in p}
        ))
        """
    )
    rates = run_facts(code, str(exported["folder"] / "out1.py"))
    assert set(rates) == {f"{name}/lora_kernel_{ab}" for name in LORA_LAYERS for ab in "ab"}
    assert all(1e-5 <= rate < 1e-4 for rate in rates.values())


def test_apply_reproduces_the_exports(exported: dict[str, Any], run_cli: Any) -> None:
    folder = exported["folder"]
    for phase in (1, 2):
        out = folder / f"applied{phase}.keras"
        result = run_cli("apply", str(folder / "out1.toml"), "--phase", str(phase), "-o", str(out))
        assert result.returncode == 0, result.stderr
        verification = exported["results"][phase].verification
        assert (
            f"{verification.trainable_params:,} trainable and {verification.non_trainable_params:,}"
        ) in result.stdout
    assert not (folder / "applied1.lora.npz").exists()
    with np.load(folder / "out2.lora.npz") as ours, np.load(folder / "applied2.lora.npz") as theirs:
        assert sorted(ours.files) == sorted(theirs.files)
        assert all(ours[k].shape == theirs[k].shape for k in theirs.files)


def test_lora_off_after_lora_on_is_still_refused(exported: dict[str, Any], run_cli: Any) -> None:
    folder = exported["folder"]
    text = (folder / "out1.toml").read_text()
    assert text.count("lora = false") == 1
    bad = folder / "bad.toml"
    # LoRA on from phase 1, off in phase 4: Keras cannot take it off.
    head, *rest = text.split("[[phase]]")
    rest = [part.replace("lora = false", "") for part in rest]
    rest[-1] = rest[-1].rstrip("\n") + "\nlora = false\n"
    bad.write_text("[[phase]]".join([head, *rest]))
    result = run_cli("apply", str(bad), "-o", str(folder / "bad.keras"))
    assert result.returncode != 0
    assert "phase 4 has lora = false after phase 1 put LoRA on" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / "bad.keras").exists()


def test_the_session_refuses_lora_off_after_lora_on(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    from dataclasses import replace

    from kfreeze_tui.core.errors import PlanError

    session = exported["session"]
    phases = session.phases
    try:
        session.set_training_plan((replace(phases[0], lora=None), replace(phases[1], lora=False)))
        request = ExportRequest(model_path=tmp_path / "never.keras")
        with pytest.raises(PlanError, match=r"^phase 2 has lora = false after phase 1 put LoRA on"):
            session.export(LoadOptions(), PLAN, HEAD, CompileSpec(), request)
        with pytest.raises(PlanError, match=r"^phase 2 has lora = true, but the plan has no"):
            session.set_training_plan((phases[0], replace(phases[1], lora=True)))
            session.export(LoadOptions(), replace(PLAN, lora=None), HEAD, CompileSpec(), request)
    finally:
        session.set_training_plan(phases)
    assert list(tmp_path.iterdir()) == []


def test_adapters_with_lora_do_not_load_silently_without_it(
    exported: dict[str, Any], keras: Any
) -> None:
    """Phase 2's adapters into phase 1's model (no LoRA yet): refused, not half loaded."""
    from kfreeze_tui.core.errors import ExportError
    from kfreeze_tui.core.train.adapters import load_adapters_checked

    folder = exported["folder"]
    first = keras.saving.load_model(folder / "out1.keras")
    with pytest.raises(ExportError, match=r"has LoRA weights the model has no LoRA for \(block"):
        load_adapters_checked(first, folder / "out2.lora.npz")
