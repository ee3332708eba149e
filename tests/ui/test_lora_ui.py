"""LoRA in the explorer (issue 18): ``L`` on a layer or a group, the LoRA pane, the state
column, the detail and the status bar's headline, checked against Keras's own
``layer.enable_lora`` and keras-hub's ``backbone.enable_lora`` on a copy of the same BERT."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")

import hub_presets
from helpers import screen_text, type_into, wait_for, wait_for_explorer
from textual.pilot import Pilot

from kfreeze_tui import scenarios
from kfreeze_tui.app import make_app
from kfreeze_tui.core.model.loading import LoadedModel
from kfreeze_tui.screens.explorer import ExplorerScreen

RANK = 8  # the pane's rank until it is changed


@pytest.fixture(scope="module")
def bert_loaded() -> LoadedModel:
    return LoadedModel(model=hub_presets.bert(), source="bert", description="tiny BERT")


def _trainable(model: Any) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def _keras_lora(paths: list[tuple[int, ...]], rank: int) -> Any:
    """A fresh BERT with every layer frozen, then Keras's own ``enable_lora(rank)`` on the
    layers at ``paths`` (trainable again, as keras-hub's ``Backbone.enable_lora`` does)."""
    from kfreeze_tui.core.train.build import layer_at

    copy = hub_presets.bert()
    copy.trainable = True
    for layer in copy._flatten_layers(include_self=False):
        layer.trainable = False
    for path in paths:
        layer = layer_at(copy, path)
        layer.trainable = True
        layer.enable_lora(rank)
    return copy


def _lora_paths(explorer: ExplorerScreen) -> list[tuple[int, ...]]:
    view = explorer.session.view
    plan = explorer.plan
    assert plan.lora is not None
    return [view.leaves[pos].path for pos in sorted(view.lora_positions(plan.lora))]


def _status(pilot: Pilot) -> str:
    return pilot.app.screen.query_one("#status").text.plain


async def _notes(pilot: Pilot) -> list[str]:
    await pilot.pause()
    return [str(n.message) for n in pilot.app._notifications]


async def test_l_on_a_transformer_layer_counts_as_keras_enable_lora(
    bert_loaded: LoadedModel,
) -> None:
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        await pilot.press("F", "right_square_bracket")  # everything frozen; stage "encoder"
        first = table.current_layer
        assert first.class_name == "TransformerEncoder"
        await pilot.press("L")
        paths = _lora_paths(explorer)
        start, end = explorer.session.view.span(first.path)
        inside = [p for p in paths if p[: len(first.path)] == first.path]
        copy = _keras_lora(paths, RANK)
        # The layers of the block that Keras can put LoRA on are exactly those that got it.
        from kfreeze_tui.core.train.build import layer_at

        keras_can = [
            row.path
            for row in explorer.session.view.leaves[start:end]
            if hasattr(layer_at(copy, row.path), "enable_lora")
        ]
        assert inside == keras_can and len(inside) == 6
        totals = explorer.session.view.totals(explorer.plan)
        assert totals.trainable == _trainable(copy)
        assert totals.total == copy.count_params()
        percent = 100 * _trainable(copy) / copy.count_params()
        headline = (
            f"trainable {_trainable(copy):,} || all {copy.count_params():,} || {percent:.2f} %"
        )
        assert headline in _status(pilot)
        # Weights without enable_lora in the block (the layer norms) are counted as skipped.
        skipped = sum(
            1
            for row in explorer.session.view.leaves[start:end]
            if layer_at(copy, row.path).weights
            and not hasattr(layer_at(copy, row.path), "enable_lora")
        )
        assert skipped == 2
        assert any(f"{skipped} layers cannot take LoRA: skipped" in n for n in await _notes(pilot))
        # L again turns the block's LoRA off; the attention preset's layers elsewhere stay.
        await pilot.press("L")
        paths = _lora_paths(explorer)
        assert not [p for p in paths if p[: len(first.path)] == first.path]
        copy = _keras_lora(paths, RANK)
        assert explorer.session.view.totals(explorer.plan).trainable == _trainable(copy)


async def test_attention_preset_from_the_pane_equals_keras_hub(bert_loaded: LoadedModel) -> None:
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("F")
        explorer.query_one("#lora-on").focus()
        await pilot.press("right")  # off -> on, targets attention, rank 8
        await pilot.pause()
        assert explorer.plan.lora is not None and explorer.plan.lora.targets == "attention"
        await type_into(pilot, "#lora-rank", "4")
        await pilot.pause()
        assert explorer.plan.lora.rank == 4
        oracle = hub_presets.bert()
        oracle.enable_lora(4)  # keras-hub's own: freezes all, LoRA on query and value
        totals = explorer.session.view.totals(explorer.plan)
        assert totals.trainable == _trainable(oracle)
        assert totals.total == oracle.count_params()
        assert f"trainable {_trainable(oracle):,} || all {oracle.count_params():,}" in _status(
            pilot
        )
        # A rank that is not a number: one sentence, and the last good rank stays.
        await type_into(pilot, "#lora-rank", "x")
        await pilot.pause()
        info = explorer.query_one("#lora-info").text.plain
        assert "The LoRA rank must be a whole number of at least 1, not 'x'." in info
        assert explorer.plan.lora.rank == 4


async def test_regex_targets_bad_and_matching_nothing_say_so(bert_loaded: LoadedModel) -> None:
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.query_one("#lora-on").focus()
        await pilot.press("right")
        info = explorer.query_one("#lora-info")
        await type_into(pilot, "#lora-regex", "que(ry")
        await pilot.pause()
        assert "not a valid regular expression" in info.text.plain
        assert explorer.plan.lora.targets == "attention"  # the last good targets
        await type_into(pilot, "#lora-regex", "nothing_here")
        await pilot.pause()
        assert "matches no layer with weights" in info.text.plain
        assert explorer.plan.lora.targets == "attention"
        await type_into(pilot, "#lora-regex", "key")
        await pilot.pause()
        assert explorer.plan.lora.targets == "key"
        named = _lora_paths(explorer)
        keys = [row.path for row in explorer.session.view.leaves if row.name == "key"]
        assert named == keys and len(keys) == 2
        assert "✗" not in info.text.plain
        assert "LoRA can reach" in info.text.plain


async def test_state_column_and_detail_show_lora_without_colour(
    bert_loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LoRA rows say ``lora``, layers that cannot take it ``⊘``: words, not colours
    (NO_COLOR), and the detail gives A and B as Keras makes them."""
    from kfreeze_tui.core.train.build import layer_at

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(loaded=bert_loaded)
    assert app.no_color
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        table = explorer.table
        await scenarios.lora_bert(pilot)
        query = table.current_layer
        assert (
            query.name == "query"
            and explorer.session.view.lora_state(explorer.plan, query.path) == "on"
        )
        lines = screen_text(pilot).splitlines()

        def state_of(path: str) -> str:
            """The state column of the row at ``path`` (the tree is left of the pane)."""
            line = next(line for line in lines if re.match(rf"\s*{re.escape(path)}\s", line))
            return re.split(r"\s{2,}", line.split("▏")[0].strip())[-1]

        assert state_of("9.0.1").endswith("lora")  # block 0's key: L put LoRA on it
        assert state_of("10.0.0").endswith("lora")  # block 1's query: the attention preset
        assert state_of("10.0.1").endswith("frozen")  # block 1's key: frozen, no LoRA
        assert state_of("9.1").endswith("frozen ⊘")  # a LayerNorm cannot take LoRA
        assert state_of("10").endswith("lora")  # the group: only LoRA trains in it
        # The detail: A and B as Keras's enable_lora makes them.
        layer = layer_at(hub_presets.bert(), query.path)
        layer.enable_lora(RANK)
        a = tuple(layer.lora_kernel_a.shape)
        b = tuple(layer.lora_kernel_b.shape)
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "config_shown", False))
        text = screen_text(pilot)
        assert f"A {a}" in text and f"B {b}" in text
        assert f"adapters {math.prod(a) + math.prod(b):,} params" in text


async def test_export_with_lora_and_no_head_writes_the_adapters_apart(
    bert_loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export dialog with LoRA on and no head: the deployable model and, apart, the
    adapters a training run resumes from, one B matrix per LoRA layer."""
    import numpy as np

    from kfreeze_tui.screens.export import ExportRunScreen

    monkeypatch.chdir(tmp_path)
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.query_one("#head-kind").focus()
        await pilot.press("right")  # classifier -> none
        assert explorer.head.is_none
        assert "No head" in screen_text(pilot)
        explorer.table.focus()
        await pilot.press("L", "e")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportRunScreen))
        await wait_for(pilot, lambda: app.screen.done, timeout=180)
        text = re.sub(r"\s+", " ", screen_text(pilot))
        assert "Exported" in text, text
        lora_layers = len(explorer.session.view.lora_positions(explorer.plan.lora))
    (model,) = tmp_path.glob("*.keras")
    (adapters,) = tmp_path.glob("*.lora.npz")
    with np.load(adapters) as saved:
        b_matrices = [key for key in saved.files if re.search(r"lora_\w+_b$", key)]
    assert model.stat().st_size > 0 and len(b_matrices) == lora_layers > 0


async def test_l_is_a_rebindable_action_in_help_and_palette(bert_loaded: LoadedModel) -> None:
    app = make_app(loaded=bert_loaded, keymap={"toggle_lora": "ctrl+l"})
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.table.move_to_path((11,))  # pooled_dense
        await pilot.press("L")
        assert explorer.plan.lora is None  # L is no longer the key
        await pilot.press("ctrl+l")
        assert explorer.session.view.lora_state(explorer.plan, (11,)) == "on"
        groups = dict(app.binding_groups())
        assert any(b.id == "toggle_lora" for b in groups["Freezing"])
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert any("LoRA on/off" in title for title in commands)


async def test_the_cost_line_prices_the_plans_lora(bert_loaded: LoadedModel) -> None:
    """The status bar's cost is the cost model's price of the boundary with the plan's LoRA
    (``price_boundary(lora=...)``, as ``kfreeze cost --lora`` prices it), not without it."""
    from kfreeze_tui.core.train.cost import brief, price_boundary

    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        await pilot.press("F", "right_square_bracket", "L")
        plan = explorer.plan
        session = explorer.session
        args = (session.view, plan.boundary, session.training, plan.bn_policy)
        with_lora = brief(price_boundary(*args, lora=plan.lora).estimate, session.training)
        without = brief(price_boundary(*args).estimate, session.training)
        assert with_lora != without
        assert with_lora in _status(pilot)


async def test_the_pane_gives_the_coverage_keras_gives(bert_loaded: LoadedModel) -> None:
    """The share of parameters LoRA can reach: the trainable weights of the layers that have
    ``enable_lora`` in Keras, out of all trainable weights; and how many layers with weights
    have no ``enable_lora``."""
    from kfreeze_tui.core.train.build import layer_at

    copy = hub_presets.bert()
    layers = [layer_at(copy, row.path) for row in bert_loaded_leaves(bert_loaded)]
    with_weights = [layer for layer in layers if layer.trainable_weights]
    reach = sum(
        math.prod(v.shape)
        for layer in with_weights
        if hasattr(layer, "enable_lora")
        for v in layer.trainable_weights
    )
    cannot = sum(1 for layer in with_weights if not hasattr(layer, "enable_lora"))
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(140, 45)) as pilot:
        explorer = await wait_for_explorer(pilot)
        explorer.query_one("#lora-on").focus()
        await pilot.press("right")
        info = explorer.query_one("#lora-info").text.plain
        total = _trainable(copy)
        assert f"LoRA can reach {reach / total:.1%} of the parameters" in info
        assert f"({reach:,} of {total:,})" in info
        assert f"{cannot} layers with weights cannot take it" in info


def bert_loaded_leaves(loaded: LoadedModel) -> list[Any]:
    """The walk's leaves (layers and containers' own weights) of the loaded BERT."""
    from kfreeze_tui.core.model.layers import walk

    info = walk(loaded.model, loaded.source, loaded.description, True)
    return [row for row in info.layers if row.is_leaf]


async def test_the_summarys_lora_line_shows_at_120x36(bert_loaded: LoadedModel) -> None:
    """The side pane's summary has a height limit; the LoRA line is never what it cuts."""
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(120, 36)) as pilot:
        await scenarios.lora_bert(pilot)  # the cursor on a query layer with LoRA
        await pilot.pause()
        layer = pilot.app.screen.table.current_layer
        assert layer.name == "query" and layer.lora_kernel is not None
        shown = screen_text(pilot)
        assert re.search(r"LoRA on · \+[\d,]+ params at r8", shown), shown


async def test_the_lora_pane_fits_at_80x24(bert_loaded: LoadedModel) -> None:
    """At a narrow width ``p`` shows the side pane alone: each LoRA field, once focused, is
    on the screen whole (label and value on one line), and so is the status headline."""
    app = make_app(loaded=bert_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        await scenarios.lora_bert(pilot)
        await pilot.press("p")
        await pilot.pause()
        expected = {
            "lora-on": r"LoRA +◂ on ▸",
            "lora-rank": r"rank +8\b",
            "lora-targets": r"targets +◂ attention ▸",
            "lora-regex": r"regex +over layer names, e\.g\. \.\*_dense",
        }
        for field, line in expected.items():
            pilot.app.screen.query_one(f"#{field}").focus()
            await pilot.pause()
            shown = screen_text(pilot)
            assert re.search(line, shown), (field, shown)
        assert "LoRA can reach" in shown and "on 8 layers, rank 8" in shown
        headline = next(row for row in shown.splitlines() if "|| all" in row)
        assert re.search(r"LoRA r8 on 8 layers \(\+[\d,]+\)$", headline), headline
