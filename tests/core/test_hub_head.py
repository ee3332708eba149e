"""A head on a keras-hub backbone's chosen output (``pooled_output``), and the backbone
exported with no head, each proven by the export's one-step proof."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("keras_hub")

import hub_presets

from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions
from kfreeze_tui.core.plan.freeze import FreezePlan
from kfreeze_tui.core.plan.head import HeadSpec, attachment
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.core.train.check import synthetic_batch
from kfreeze_tui.core.train.export import ExportRequest


@pytest.fixture(scope="module")
def bert(keras: Any) -> Any:
    return hub_presets.bert()


def _session(model: Any) -> ModelSession:
    return ModelSession(LoadedModel(model, "bert_tiny", "BERT, 2 layers"))


def test_the_outputs_of_a_backbone_by_key(bert: Any) -> None:
    info = _session(bert).info
    assert dict(info.output_keys) == {
        key: next(layer.name for layer in bert.layers if layer.output is tensor)
        for key, tensor in bert.output.items()
    }
    found = attachment(info, HeadSpec(replace="pooled_output"))
    assert found is not None and found.layer.name == "pooled_dense" and found.shape == (None, 32)
    found = attachment(info, HeadSpec(feature_layer="sequence_output"))
    assert found is not None and found.shape == (None, None, 32)


def test_a_classifier_on_pooled_output(bert: Any, keras: Any, tmp_path: Path) -> None:
    session = _session(bert)
    plan = FreezePlan(boundary=session.view.first_path())
    head = HeadSpec(replace="pooled_output", classes=3, dropout=0.0)
    request = ExportRequest(tmp_path / "bert_cls.keras")
    result = session.export(LoadOptions(), plan, head, CompileSpec(), request)
    assert result.step is not None and result.step.ok
    model = keras.saving.load_model(request.model_path)
    assert model.get_layer("head_output").input.shape == (None, 32)
    assert isinstance(model.input, dict) and set(model.input) == set(bert.input)
    x, _ = synthetic_batch(model, 2)
    assert np.asarray(model(x)).shape == (2, 3)


def test_the_backbone_with_no_head(bert: Any, keras: Any, tmp_path: Path) -> None:
    session = _session(bert)
    plan = FreezePlan(boundary=session.view.first_path())
    request = ExportRequest(tmp_path / "bert_base.keras")
    result = session.export(LoadOptions(), plan, HeadSpec(kind="none"), CompileSpec(), request)
    assert result.step is not None and result.step.trainable_changed > 0
    assert result.step.trainable_unchanged == []
    model = keras.saving.load_model(request.model_path)
    assert type(model) is type(bert)  # still a BertBackbone, for keras-hub's task models
    assert model.count_params() == bert.count_params()
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    assert trainable == session.view.totals(plan).trainable
    x, _ = synthetic_batch(bert, 2)
    for key, value in bert(x).items():
        np.testing.assert_allclose(np.asarray(model(x)[key]), np.asarray(value), atol=1e-6)
