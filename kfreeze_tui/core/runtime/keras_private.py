"""The one place kfreeze reads Keras internals, because no public API says the same.

Each function here has a test (tests/core/test_keras_private.py) that fails loudly when a
Keras release changes what it reads, so that the change is seen at once, not as a wrong
answer.
"""

from __future__ import annotations

import sys
from typing import Any


def compiled_trainable_state(model: Any) -> dict[Any, bool] | None:
    """Each layer's ``trainable`` flag as it was when ``model.compile()`` last ran.

    Keras 3 records it in ``Trainer._compiled_trainable_state`` (to warn, on the first
    ``fit()`` after a change); there is no public accessor. None when the model was not
    compiled or the attribute is not there.
    """
    if not getattr(model, "compiled", False):
        return None
    state = getattr(model, "_compiled_trainable_state", None)
    return state if isinstance(state, dict) else None


#: Where Keras is while it loads a model: (module, function) of the frames that say how far
#: it has got, and the stage each one is.
_LOAD_FRAMES = {
    ("keras.src.models.functional", "functional_from_config"): "functional",
    ("keras.src.models.sequential", "from_config"): "sequential",
    ("keras.src.saving.saving_lib", "_load_container_state"): "weights",
}


def load_position(thread_id: int) -> tuple[str, int, int] | None:
    """How far ``keras.saving.load_model``, running in thread ``thread_id``, has got with
    the outermost model: ``(stage, done, total)`` in layers, the stage being ``layers``
    (layers made from their configs), ``connecting`` (layers called on their inputs) or
    ``weights`` (layers given their weights).

    Keras has no progress hook. This reads, without changing anything, the local variables
    of the Keras functions on that thread's stack: ``functional_from_config`` (the layers
    created, then the calls still to connect), ``Sequential.from_config`` (the layer being
    added) and ``saving_lib._load_container_state`` (the layer whose weights are read).
    None when the thread is in none of them, or they are no longer as read here.
    """
    try:
        frame = sys._current_frames().get(thread_id)
        found = None
        while frame is not None:
            kind = _LOAD_FRAMES.get((frame.f_globals.get("__name__"), frame.f_code.co_name))
            if kind is not None:
                position = _position(kind, frame.f_locals)
                found = position or found  # the outermost frame is the whole model's
            frame = frame.f_back
        return found
    except Exception:  # a Keras whose functions look otherwise: no position, the load goes on
        return None


def _position(kind: str, local: Any) -> tuple[str, int, int] | None:
    if kind == "functional":
        config = local.get("functional_config")
        created, waiting = local.get("created_layers"), local.get("unprocessed_nodes")
        if not isinstance(config, dict) or not isinstance(created, dict):
            return None
        total = len(config["layers"])
        if len(created) < total or not isinstance(waiting, dict):
            return "layers", len(created), total
        return "connecting", total - len(waiting), total
    if kind == "sequential":
        configs, current = local.get("layer_configs"), local.get("layer_config")
        if not isinstance(configs, list):
            return None
        return "layers", _index(configs, current), len(configs)
    container, current = local.get("container"), local.get("saveable")
    if not isinstance(container, list):
        return None
    return "weights", _index(container, current), len(container)


def _index(items: list[Any], item: Any) -> int:
    """The position of ``item`` (by identity) in ``items``: how many come before it."""
    return next((i for i, each in enumerate(items) if each is item), 0)
