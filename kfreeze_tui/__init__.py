"""kfreeze: choose what to freeze and what to train when fine-tuning a Keras model.

Importing this package is cheap on purpose: neither Keras, TensorFlow nor Textual is
imported here, so that the command line and the app can draw something before the
heavy imports finish. The public functions for training code live in
:mod:`kfreeze_tui.core.train.fit` and are imported from there the first time they are
asked for (``from kfreeze_tui import apply_plan, check_model, fit_phases``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kfreeze_tui._version import __version__

if TYPE_CHECKING:
    from kfreeze_tui.core.train.fit import apply_plan, check_model, fit_phases

__all__ = ["__version__", "apply_plan", "check_model", "fit_phases"]

_PUBLIC = ("apply_plan", "check_model", "fit_phases")


def __getattr__(name: str) -> Any:
    """The public training functions, imported on first use (PEP 562)."""
    if name in _PUBLIC:
        from kfreeze_tui.core.train import fit

        return getattr(fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
