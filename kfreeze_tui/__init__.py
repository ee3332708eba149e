"""kfreeze: choose what to freeze and what to train when fine-tuning a Keras model.

Importing this package is cheap on purpose: neither Keras, TensorFlow nor Textual is
imported here, so that the command line and the app can draw something before the
heavy imports finish.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "apply_plan", "check_model"]


def check_model(model: Any) -> list[Any]:
    """What is wrong with how a live model is set up to train (nothing is trained).

    Findings have a ``code``, a ``severity`` (``error`` or ``warning``), a one-sentence
    ``message`` and the ``layers`` concerned: ``recompile`` (``trainable`` changed after
    ``compile()``), ``no_trainable``, ``bn_after_frozen``, ``float16_output``,
    ``split_block``, ``high_lr``. ``kfreeze check MODEL.keras`` gives the same for a file, with
    one real training step as proof.

    Args:
        model: a ``keras.Model``.

    Returns:
        A list of :class:`kfreeze_tui.core.check.Finding`, errors first.
    """
    from kfreeze_tui.core.check import check_model as check

    findings = check(model)
    return sorted(findings, key=lambda finding: finding.severity != "error")


def apply_plan(model: Any, plan: str | Path) -> Any:
    """Apply a kfreeze plan file to a loaded model, for training code.

    The model's layers are frozen as the plan says (by layer name, or by index where a name is
    not found), the plan's head is added and, unless the plan says otherwise, the new model is
    compiled. The layers are shared with ``model``.

    Args:
        model: a ``keras.Model`` (the same architecture the plan was made on).
        plan: the path of a ``.toml`` plan written by kfreeze.

    Returns:
        The new ``keras.Model``.

    Raises:
        kfreeze_tui.core.build.PlanError: when the plan does not fit the model.
    """
    import warnings

    from kfreeze_tui.core import planfile
    from kfreeze_tui.core.build import build_model
    from kfreeze_tui.core.layers import walk
    from kfreeze_tui.core.plan import PlanView

    doc = planfile.read(Path(plan))
    view = PlanView(walk(model))
    freeze, notes = planfile.resolve(doc, view.info)
    for note in notes:
        warnings.warn(f"kfreeze: {note}", stacklevel=2)
    return build_model(model, view, freeze, doc.head, doc.compile)
