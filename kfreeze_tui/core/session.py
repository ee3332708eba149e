"""An open model: the Keras object, kept inside the core, and what the UI may ask of it.

The app holds a :class:`ModelSession` but never the Keras model itself: it reads the walked
:class:`ModelInfo` and asks for details through methods that return plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kfreeze_tui.core.build import layer_at
from kfreeze_tui.core.layers import ModelInfo, walk
from kfreeze_tui.core.loading import LoadedModel
from kfreeze_tui.core.plan import FreezePlan, PlanView


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

    @property
    def random_weights(self) -> bool:
        """The weights are random (``--weights none`` or the offline fallback)."""
        return self._loaded.random_weights

    def initial_plan(self) -> FreezePlan:
        """The plan matching the model's trainable state as loaded."""
        return self.view.plan_from_model()

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
