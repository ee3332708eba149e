"""``kfreeze convert``: a model file from an older Keras, written once as a Keras 3 file.

The file is written beside its target under a temporary name, loaded back with Keras 3's
own loader, compared with the model it came from (layers, trainable state, every weight, and
the outputs on a random batch) and only then renamed into place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import ExportError, first_line
from kfreeze_tui.core.model.legacy.repairs import Repair
from kfreeze_tui.core.model.loading import LoadOptions, custom_objects_for, load
from kfreeze_tui.core.runtime.leftovers import Leftover, human_size, remove_leftovers
from kfreeze_tui.core.runtime.process import deep_recursion, native_output_captured
from kfreeze_tui.core.train.check import synthetic_inputs
from kfreeze_tui.core.train.export import temp_beside, verify

#: Outputs of the converted model may differ from the original's by at most this much.
TOLERANCE = 1e-5
#: Examples in the random batch the outputs are compared on.
BATCH = 2


@dataclass
class ConvertResult:
    """What ``convert`` wrote and how it was checked."""

    path: Path
    size: int
    description: str
    repairs: list[Repair] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    max_difference: float = 0.0
    removed: list[Leftover] = field(default_factory=list)
    """Temporary files that killed runs had left beside the target, removed first."""


def check_target(source: str, target: Path, force: bool) -> None:
    """Refuse a target that is not a ``.keras`` file, is the source, or exists (without
    ``force``), before anything slow happens.

    Raises:
        ExportError: one sentence.
    """
    if target.suffix.lower() != ".keras":
        raise ExportError(f"{target} must end in .keras: convert writes the Keras 3 format")
    if Path(source).expanduser().resolve() == target.expanduser().resolve():
        raise ExportError(f"{target} is the file being converted; write to another name")
    if not target.parent.is_dir():
        raise ExportError(f"the folder {target.parent} does not exist")
    if target.exists() and not force:
        raise ExportError(f"{target} exists already; pass --force to replace it")


@deep_recursion()
def convert(
    source: str,
    target: Path,
    options: LoadOptions | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Load ``source`` (repairing a legacy file) and write it to ``target`` as Keras 3.

    Raises:
        LoadError: the source cannot be opened.
        ExportError: the target cannot be written, or the written file is not the same model.
    """
    options = options or LoadOptions(weights="none")
    report = progress or (lambda _text: None)
    check_target(source, target, force)
    report(f"Loading {source}")
    loaded = load(source, options)
    removed = remove_leftovers([target.parent])
    temp = temp_beside(target, ".keras")
    try:
        report(f"Writing {target.name}")
        checks, difference = _write_and_compare(loaded.model, temp, options, report)
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ExportError(f"could not write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return ConvertResult(
        path=target,
        size=target.stat().st_size,
        description=loaded.description,
        repairs=list(loaded.repairs),
        warnings=list(loaded.warnings),
        checks=checks,
        max_difference=difference,
        removed=removed,
    )


def _write_and_compare(
    model: Any, temp: Path, options: LoadOptions, report: Callable[[str], None]
) -> tuple[list[str], float]:
    """Save ``model`` to ``temp``, load it back, and compare the two: the checks passed and
    the largest output difference.

    Raises:
        ExportError: the file does not load back, or computes something else.
    """
    import keras

    with native_output_captured():
        model.save(temp)
        report("Loading it back to compare")
        try:
            again = keras.saving.load_model(
                temp,
                custom_objects=custom_objects_for(options) or None,
                compile=False,
                safe_mode=not options.unsafe,
            )
        except Exception as exc:
            raise ExportError(
                f"the converted file does not load back in Keras 3: {first_line(exc)}"
            ) from exc
        checks = list(verify(model, again).checks)
        difference = max_output_difference(model, again)
    if difference > TOLERANCE:
        raise ExportError(
            f"the converted model's outputs differ from the original's by {difference:.1e} "
            f"(more than {TOLERANCE:.0e}), so it was not written"
        )
    checks.append(
        f"outputs agree on a random batch of {BATCH} (largest difference {difference:.1e})"
    )
    return checks, difference


def max_output_difference(model: Any, other: Any) -> float:
    """The largest absolute difference between two models' outputs on a random batch."""
    import numpy as np
    from keras import tree

    batch = synthetic_inputs(model, BATCH)
    inputs = batch[0] if len(batch) == 1 else batch
    first = tree.flatten(model(inputs, training=False))
    second = tree.flatten(other(inputs, training=False))
    if len(first) != len(second):
        raise ExportError("the converted model has a different number of outputs")
    worst = 0.0
    for a, b in zip(first, second, strict=True):
        a_np = np.asarray(a, dtype="float64")
        b_np = np.asarray(b, dtype="float64")
        if a_np.shape != b_np.shape:
            raise ExportError(
                f"the converted model's output has shape {b_np.shape}, the original's {a_np.shape}"
            )
        if a_np.size:
            worst = max(worst, float(np.max(np.abs(a_np - b_np))))
    return worst


def summary_line(result: ConvertResult) -> str:
    """``wrote new.keras (12.1 kB), Keras 3 format; verified: ...``."""
    return (
        f"wrote {result.path} ({human_size(result.size)}), Keras 3 format; verified: "
        + "; ".join(result.checks)
    )
