"""Regenerate kfreeze_tui/core/catalog_counts.json: layers and parameters of every
keras.applications architecture at its default size without top (what kfreeze opens by
default), shown by the picker before a model is built.

    python scripts/catalog_counts.py
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from kfreeze_tui.core.model import catalog
from kfreeze_tui.core.runtime.process import import_keras

OUT = Path(__file__).resolve().parents[1] / "kfreeze_tui" / "core" / "catalog_counts.json"


def main() -> None:
    keras = import_keras()
    counts: dict[str, dict[str, int]] = {}
    for arch in catalog.architectures():
        model = getattr(keras.applications, arch.name)(
            weights=None, include_top=False, input_shape=arch.default_input_shape
        )
        counts[arch.name] = {"layers": len(model.layers), "params": int(model.count_params())}
        print(arch.name, counts[arch.name], flush=True)
        del model
        keras.backend.clear_session()
        gc.collect()
    payload = {"keras": keras.__version__, "include_top": False, "models": counts}
    OUT.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
