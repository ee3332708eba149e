"""The one place kfreeze reads Keras internals, because no public API says the same.

Each function here has a test (tests/core/test_keras_private.py) that fails loudly when a
Keras release changes what it reads, so that the change is seen at once, not as a wrong
answer.
"""

from __future__ import annotations

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
