"""Tiny keras-hub backbones, built offline from constructor arguments, and the local caches
keras-hub reads presets from, laid out by kagglehub's own code.

Importing this imports nothing of keras-hub: :func:`hide_keras_hub` works without it, the
builders and the cache layouts need it (their test modules ``pytest.importorskip`` it).
"""

from __future__ import annotations

import importlib.abc
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The built-in preset the cache tests put into a fake kagglehub cache.
BUILTIN = "bert_tiny_en_uncased"


def with_fresh_names(build: Callable[[], Any]) -> Any:
    """``build()`` in a thread of its own: Keras numbers the names it makes up (a
    MultiHeadAttention's ``softmax_3``) per thread, so the model gets the names a fresh
    process gives, whatever this process built before (a snapshot shows them)."""
    built: list[Any] = []
    thread = threading.Thread(target=lambda: built.append(build()))
    thread.start()
    thread.join()
    return built[0]


def bert() -> Any:
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=1000,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )


def gemma() -> Any:
    import keras_hub

    return keras_hub.models.GemmaBackbone(
        vocabulary_size=256,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=16,
    )


def vit() -> Any:
    import keras_hub

    return keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
    )


def builtin_handle(name: str = BUILTIN) -> str:
    """The Kaggle handle keras-hub's own preset table gives a built-in name."""
    import keras_hub  # noqa: F401  (fills the table)
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    return str(BUILTIN_PRESETS[name]["kaggle_handle"])


def put_in_kaggle_cache(preset: Path, handle: str, whole: bool = False) -> Path:
    """Copy a preset folder where kagglehub caches ``handle`` (under ``$KAGGLEHUB_CACHE``, as
    kagglehub computes it now) and mark every file complete, as keras-hub's file-by-file
    downloads do; or, with ``whole``, the version complete, as
    ``kagglehub.model_download(handle)`` does.

    Returns:
        The cached folder.
    """
    from kagglehub.cache import Cache, get_cached_path
    from kagglehub.handle import parse_model_handle

    parsed = parse_model_handle(handle.removeprefix("kaggle://"))
    folder = Path(get_cached_path(parsed))
    shutil.copytree(preset, folder)
    if whole:
        Cache().mark_as_complete(parsed)
        return folder
    for file in folder.iterdir():
        Cache().mark_as_complete(parsed, file.name)
    return folder


def put_in_hf_cache(preset: Path, repo_id: str, revision: str = "abc123") -> Path:
    """Copy a preset folder where ``huggingface_hub`` caches ``repo_id`` (under
    ``$HF_HUB_CACHE``): ``models--org--name/snapshots/<revision>``, with ``refs/main`` naming
    the revision (``test_a_hugging_face_snapshot_in_the_cache`` checks this layout against
    ``huggingface_hub.try_to_load_from_cache``).

    Returns:
        The snapshot folder.
    """
    import os

    repo = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    shutil.copytree(preset, snapshot)
    return snapshot


class _Hidden(importlib.abc.MetaPathFinder):
    """keras-hub as an environment without it sees it: the import system cannot find it."""

    def find_spec(self, name: str, *_args: Any) -> None:
        if name == "keras_hub" or name.startswith("keras_hub."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def hide_keras_hub(monkeypatch: Any) -> None:
    """Make keras-hub unimportable for the rest of the test (``monkeypatch`` undoes it)."""
    for name in [n for n in sys.modules if n == "keras_hub" or n.startswith("keras_hub.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Hidden(), *sys.meta_path])
