"""The plan file's ``[lora]`` table: written, read back to the same LoraSpec on the model,
and validated by hand-edit (misspelt keys get the nearest name, bad values one sentence)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.layers import walk
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.plan.planfile import document, read, resolve, to_toml


@pytest.fixture(scope="module")
def view(small_model: Any) -> PlanView:
    return PlanView(walk(small_model))


def _plan_text(view: PlanView, plan: FreezePlan) -> str:
    doc = document(
        "small.keras", LoadOptions(weights="none"), view, plan, HeadSpec(), CompileSpec()
    )
    return to_toml(doc)


def test_lora_reads_back_to_the_same_spec(tmp_path: Path, view: PlanView) -> None:
    by_name = {leaf.name: leaf.path for leaf in view.leaves}
    spec = LoraSpec(rank=6, targets="block.*_conv", toggles=frozenset({by_name["classifier"]}))
    plan = FreezePlan(boundary=None, lora=spec)
    text = _plan_text(view, plan)
    assert "[lora]" in text and "rank = 6" in text and 'name = "classifier"' in text
    path = tmp_path / "plan.toml"
    path.write_text(text)
    doc = read(path)
    resolved, notes = resolve(doc, view.info)
    assert resolved == plan and notes == []
    assert view.totals(resolved) == view.totals(plan)
    # A plan without LoRA writes no [lora] table and reads back without one.
    plain = replace(plan, lora=None)
    path.write_text(_plan_text(view, plain))
    assert "[lora]" not in path.read_text()
    assert resolve(read(path), view.info)[0].lora is None


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (("rank = 6", "rnak = 6"), 'unknown key "rnak" in [lora]: did you mean "rank"?'),
        (("rank = 6", "rank = 0"), "[lora] rank must be an integer >= 1, not 0"),
        (("rank = 6", 'rank = "6"'), "[lora] rank must be an integer >= 1"),
        (('targets = "all"', 'targets = "x("'), "[lora] targets must be attention, linear, all"),
        (('targets = "all"', 'target = "all"'), 'did you mean "targets"?'),
        (("[lora]", "[lroa]"), "unknown table [lroa]: did you mean [lora]?"),
        (("rank = 6\n", ""), "[lora] has no rank"),
    ],
)
def test_hand_edits_are_one_sentence(
    tmp_path: Path, view: PlanView, edit: tuple[str, str], says: str
) -> None:
    text = _plan_text(view, FreezePlan(boundary=None, lora=LoraSpec(6, "all")))
    assert edit[0] in text
    path = tmp_path / "plan.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(PlanError) as caught:
        read(path)
    message = str(caught.value)
    assert says in message, message
    assert "line" in message or "has no rank" in message
    assert len(message.splitlines()) == 1


def test_a_toggle_that_is_not_a_layer(tmp_path: Path, view: PlanView) -> None:
    plan = FreezePlan(boundary=None, lora=LoraSpec(2, "all", frozenset({view.leaves[1].path})))
    text = _plan_text(view, plan).replace('name = "stem_conv", path = [1]', 'name = "stemconv"')
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(PlanError, match=r'LoRA toggle stemconv.*did you mean "stem_conv"'):
        resolve(read(path), view.info)


def test_apply_exports_a_lora_plan_with_its_adapters_apart(
    tmp_path: Path, view: PlanView, small_model_file: Path, run_cli: Any, keras: Any
) -> None:
    """apply reproduces a plan with LoRA as an export does: the deployable file and the
    adapters beside it, with Keras's own LoRA trainable count."""
    plan = FreezePlan(boundary=None, lora=LoraSpec(2, "all"))
    head = HeadSpec(classes=3)
    doc = document(
        str(small_model_file), LoadOptions(weights="none"), view, plan, head, CompileSpec()
    )
    path = tmp_path / "plan.toml"
    path.write_text(to_toml(doc))
    out = tmp_path / "out.keras"
    result = run_cli("apply", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.keras", "out.lora.npz", "plan.toml"]
    # The oracle: the base frozen, Keras's enable_lora on every layer that has it, the head.
    base = keras.saving.load_model(small_model_file)
    for layer in base.layers:
        layer.trainable = False
    for layer in base.layers:
        if hasattr(layer, "enable_lora") and layer.name != "classifier":
            layer.trainable = True
            layer.enable_lora(2)
    lora = sum(int(keras.ops.size(w)) for w in base.trainable_weights)
    head_params = 32 * 3 + 3  # the head's Dense on gap's 32 features (the classifier replaced)
    assert f"{lora + head_params:,} trainable" in result.stdout


def _size(variables: Any) -> int:
    import math

    unique = {id(v): v for v in variables}
    return sum(math.prod(int(d) for d in v.shape) for v in unique.values())


@pytest.mark.parametrize("phase", [1, 2])
def test_apply_plan_puts_lora_on_as_keras_does(
    tmp_path: Path, view: PlanView, small_model_file: Path, keras: Any, phase: int
) -> None:
    """The library API (``apply_plan``) applies the plan's LoRA, in every phase; the counts
    are those of Keras's enable_lora on the same layers of the same file, by hand."""
    from kfreeze_tui.core.plan.phases import Phase
    from kfreeze_tui.core.train.fit import apply_plan

    by_name = {leaf.name: leaf.path for leaf in view.leaves}
    plan = FreezePlan(boundary=by_name["block2_conv"], lora=LoraSpec(3, "stem_conv|classifier"))
    phases = (Phase(None, 1, lr=1e-3), Phase(by_name["block1_conv"], 1, lr=1e-4))
    doc = document(
        str(small_model_file), LoadOptions(weights="none"), view, plan,
        HeadSpec(feature_layer="gap", pooling="none", classes=4), CompileSpec(), phases,
    )  # fmt: skip
    path = tmp_path / "plan.toml"
    path.write_text(to_toml(doc))
    model = keras.saving.load_model(small_model_file)
    new = apply_plan(model, path, phase=phase)
    lora_on = {layer.name for layer in model.layers if getattr(layer, "lora_enabled", False)}
    assert lora_on == {"stem_conv", "classifier"}
    # By hand on a fresh copy: the phase's boundary (phase 1: the head only), LoRA on top.
    oracle = keras.saving.load_model(small_model_file)
    start = 10**6 if phase == 1 else view.info.layer(by_name["block1_conv"]).index
    for i, layer in enumerate(oracle.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    for name in lora_on:
        oracle.get_layer(name).trainable = True
        oracle.get_layer(name).enable_lora(3)
    # The new head (Dense 32 -> 4) replaces the classifier, which is not in the new model.
    dropped = _size(oracle.get_layer("classifier").trainable_weights)
    assert _size(new.trainable_weights) == _size(oracle.trainable_weights) - dropped + 32 * 4 + 4
    kernel = model.get_layer("stem_conv").trainable_weights
    assert [v.path.rsplit("/", 1)[-1] for v in kernel] == ["bias", "lora_kernel_a", "lora_kernel_b"]


def _phased_text(view: PlanView, plan: FreezePlan, phases: tuple[Any, ...]) -> str:
    doc = document(
        "small.keras", LoadOptions(weights="none"), view, plan, HeadSpec(), CompileSpec(), phases
    )
    return to_toml(doc)


def test_phase_lora_reads_back_and_is_checked(tmp_path: Path, view: PlanView) -> None:
    from kfreeze_tui.core.plan.phases import Phase
    from kfreeze_tui.core.plan.planfile import resolve_phases

    plan = FreezePlan(boundary=None, lora=LoraSpec(2, "all"))
    phases = (Phase(None, 1, lr=1e-3, lora=False), Phase(None, 2, lr=1e-4, lora=True))
    path = tmp_path / "plan.toml"
    path.write_text(_phased_text(view, plan, phases))
    assert "lora = false" in path.read_text()
    doc = read(path)
    notes: list[str] = []
    assert resolve_phases(doc, view.info, notes) == phases
    # The warm-up trains the head alone; the next phase has the plan's LoRA.
    assert phases[0].plan(plan).lora is None and phases[1].plan(plan).lora == plan.lora
    # LoRA cannot come off again, and lora = true needs a [lora] table.
    path.write_text(_phased_text(view, plan, tuple(reversed(phases))))
    with pytest.raises(PlanError, match="phase 2 has lora = false after phase 1 put LoRA on"):
        resolve_phases(read(path), view.info, notes)
    path.write_text(_phased_text(view, replace(plan, lora=None), phases[1:]))
    with pytest.raises(PlanError, match="phase 1 has lora = true, but the plan has no"):
        resolve_phases(read(path), view.info, notes)
    path.write_text(_phased_text(view, plan, phases).replace("lora = false", 'lora = "no"'))
    with pytest.raises(PlanError, match=r"\[\[phase\]\] 1 lora must be true or false"):
        read(path)


def test_fit_phases_warm_up_then_lora(
    tmp_path: Path, view: PlanView, small_model_file: Path, keras: Any
) -> None:
    """A head warm-up without LoRA, then LoRA on every layer that takes it: the second phase
    puts LoRA on the base (not on the new head), moves B and leaves the LoRA kernels
    bitwise as they were."""
    import numpy as np

    from kfreeze_tui.core.plan.phases import Phase
    from kfreeze_tui.core.train.fit import fit_phases

    plan = FreezePlan(boundary=None, lora=LoraSpec(2, "all"))
    phases = (Phase(None, 1, lr=1e-2, lora=False), Phase(None, 1, lr=1e-2))
    doc = document(
        str(small_model_file), LoadOptions(weights="none"), view, plan,
        HeadSpec(feature_layer="gap", pooling="none", classes=3), CompileSpec(), phases,
    )  # fmt: skip
    path = tmp_path / "plan.toml"
    path.write_text(to_toml(doc))
    base = keras.saving.load_model(small_model_file)
    before = {name: base.get_layer(name).kernel.numpy() for name in ("stem_conv", "block2_conv")}
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 3
    seen: list[set[str]] = []

    class Watch(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            seen.append({v.path for v in self.model.trainable_weights})

    fit_phases(base, path, x, y=y, batch_size=4, verbose=0, callbacks=[Watch()])
    warm, lora = seen
    assert not any("lora" in name for name in warm)
    assert "stem_conv/kernel" not in warm and "stem_conv/kernel" not in lora
    assert {"stem_conv/lora_kernel_a", "stem_conv/lora_kernel_b"} <= lora
    assert not any(name.startswith("head_") and "lora" in name for name in lora)
    for name, kernel in before.items():
        layer = base.get_layer(name)
        assert layer.lora_enabled
        # The frozen kernel variable itself (``layer.kernel`` adds A.B to it).
        frozen = next(v for v in layer.weights if v.path == f"{name}/kernel")
        assert np.array_equal(frozen.numpy(), kernel)
        assert np.any(layer.lora_kernel_b.numpy() != 0)  # B moved (it starts at zeros)
