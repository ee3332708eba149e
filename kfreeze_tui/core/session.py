"""An open model: the Keras object, kept inside the core, and what the UI may ask of it.

The app holds a :class:`ModelSession` but never the Keras model itself: it reads the walked
:class:`ModelInfo` and asks for details through methods that return plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.build import CompileSpec, layer_at
from kfreeze_tui.core.export import ExportRequest, ExportResult, Progress
from kfreeze_tui.core.head import HeadSpec
from kfreeze_tui.core.layers import ModelInfo, walk
from kfreeze_tui.core.loading import LoadedModel, LoadOptions
from kfreeze_tui.core.plan import FreezePlan, PlanView
from kfreeze_tui.core.planfile import PlanDocument


@dataclass(frozen=True)
class LayerDetail:
    """What the layer detail view shows beyond the row itself.

    Attributes:
        config: the layer's ``get_config()`` as indented JSON.
    """

    config: str


class ModelSession:
    """A loaded model and its walk.

    Args:
        loaded: the loaded model.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self.info: ModelInfo = walk(
            loaded.model, loaded.source, loaded.description, loaded.random_weights
        )
        self.view = PlanView(self.info)
        self.warnings = list(loaded.warnings)
        self.architecture = loaded.architecture
        self._preset: FreezePlan | None = None
        self.head = HeadSpec()
        self.compile_spec = CompileSpec()
        self.load_options = LoadOptions()

    def apply_document(self, doc: PlanDocument) -> list[str]:
        """Start from a plan file: its freeze plan, head and compile settings.

        Returns:
            Notes on how the plan's layers were matched (by name or by index).

        Raises:
            PlanError: when the plan does not fit this model.
        """
        from kfreeze_tui.core.planfile import resolve

        plan, notes = resolve(doc, self.info)
        self._preset = plan
        self.head = doc.head
        self.compile_spec = doc.compile
        self.load_options = doc.load
        return notes

    @property
    def random_weights(self) -> bool:
        """The weights are random (``--weights none`` or the offline fallback)."""
        return self._loaded.random_weights

    def initial_plan(self) -> FreezePlan:
        """A plan file's plan, or the plan matching the model's trainable state as loaded."""
        return self._preset or self.view.plan_from_model()

    def detail(self, path: tuple[int, ...]) -> LayerDetail:
        """The config of the layer at ``path`` (calls Keras: run it off the UI thread)."""
        layer = layer_at(self._loaded.model, path)
        try:
            config: Any = layer.get_config()
        except Exception as exc:  # a custom layer without get_config
            config = {"error": f"get_config() failed: {type(exc).__name__}: {exc}"}
        if isinstance(config, dict) and "layers" in config and len(config["layers"]) > 8:
            config = {**config, "layers": f"[{len(config['layers'])} layers: see the tree]"}
        return LayerDetail(config=json.dumps(config, indent=2, default=str, sort_keys=True))

    @property
    def model(self) -> Any:
        """The Keras model, for the core's builders (not for the UI)."""
        return self._loaded.model

    @property
    def source(self) -> str:
        """Where the model came from."""
        return self._loaded.source

    def export(
        self,
        load_options: LoadOptions,
        plan: FreezePlan,
        head: HeadSpec,
        compile_spec: CompileSpec,
        request: ExportRequest,
        progress: Progress | None = None,
    ) -> ExportResult:
        """Build the model of a whole plan and write it, verified, with plan and script.

        Raises:
            PlanError: the head does not fit (nothing is written).
            ExportError: a target exists or writing failed (nothing half-written).
        """
        from kfreeze_tui.core.build import build_model, uses_mixed_precision
        from kfreeze_tui.core.export import check_request, export
        from kfreeze_tui.core.planfile import document, to_toml
        from kfreeze_tui.core.script import python_script

        check_request(request)
        report = progress or (lambda _text: None)
        report("Building the model")
        model = build_model(self.model, self.view, plan, head, compile_spec)
        plan_text = to_toml(
            document(self.source, load_options, self.view, plan, head, compile_spec)
        )
        script_text = python_script(
            self.source,
            load_options,
            self.view,
            plan,
            head,
            compile_spec,
            mixed_precision=uses_mixed_precision(self.model),
        )
        return export(model, request, plan_text, script_text, progress)


def parse_layer_ref(info: ModelInfo, text: str, notes: list[str] | None = None) -> tuple[int, ...]:
    """A layer given as a name, an index (``143``) or a path (``0.143``).

    Keras 2 names of ResNet's layers (``res5a_branch2a``) are accepted; a note saying
    which layer they stand for is appended to ``notes``.

    Raises:
        PlanError: when no layer matches, with the closest names.
    """
    import difflib

    from kfreeze_tui.core.build import PlanError
    from kfreeze_tui.core.names import find_layer

    stripped = text.strip()
    if stripped and all(part.isdigit() for part in stripped.split(".")):
        path = tuple(int(part) for part in stripped.split("."))
        try:
            return info.layer(path).path
        except KeyError:
            raise PlanError(
                f"the model has no layer at index {stripped} (it has {len(info.top_level)} "
                "layers at the top level)"
            ) from None
    row, note = find_layer(info, stripped)
    if note and notes is not None:
        notes.append(note)
    if row is None:
        close = difflib.get_close_matches(stripped, [r.name for r in info.layers], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PlanError(f"the model has no layer named {stripped!r}{hint}")
    return row.path
