"""The session owns the plan and the head; screens only send it changes."""

from __future__ import annotations

from typing import Any

from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.session import ModelSession


def test_plan_and_head_changes_go_through_the_session(small_model: Any) -> None:
    session = ModelSession(
        LoadedModel(small_model, "small", "small"), load_options=LoadOptions(weights="none")
    )
    opened = session.plan
    assert not session.dirty and session.load_options.weights == "none"
    assert session.set_plan(opened.with_boundary((5,))) is True
    assert session.set_plan(opened.with_boundary((5,))) is False  # no change, no redraw
    assert session.dirty and session.plan.boundary == (5,)
    session.mark_exported(session.plan)
    assert not session.dirty
    session.set_head(HeadSpec(classes=3), CompileSpec(learning_rate=1e-3))
    assert session.head.classes == 3 and session.compile_spec.learning_rate == 1e-3


def test_phases_strategy_and_gpus_change_only_through_the_session(small_model: Any) -> None:
    import pytest

    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.plan.phases import Phase
    from kfreeze_tui.core.runtime.gpus import Gpu

    session = ModelSession(LoadedModel(small_model, "small", "small"))
    boundary = session.info.find("block1_conv").path
    phases = (Phase(None, 2, lr=1e-3), Phase(boundary, 3, lr_range=(1e-5, 1e-4)))
    session.set_training_plan(phases, "mirrored")
    assert session.phases == phases and session.strategy == "mirrored"
    with pytest.raises(AttributeError):
        session.phases = ()  # type: ignore[misc]
    with pytest.raises(PlanError, match="'ring' is not one of mirrored, multiworker"):
        session.set_training_plan(phases, "ring")
    with pytest.raises(PlanError, match="phase 2: its boundary is not a layer of small"):
        session.set_training_plan((phases[0], Phase((99,), 1)))
    assert session.phases == phases and session.strategy == "mirrored"  # unchanged
    session.set_gpus([Gpu(index=0, name="A100", total_bytes=80 << 30, free_bytes=79 << 30)])
    assert [gpu.name for gpu in session.gpus] == ["A100"]
