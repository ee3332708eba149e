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
