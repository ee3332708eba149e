"""The layer-table cache: a walked :class:`ModelInfo` kept on disk, so a second open is instant.

The table of an architecture (at given options, under a given Keras) or of an unchanged file
never changes, and reading it back costs milliseconds where importing TensorFlow, building
and walking cost seconds. An entry is JSON (never pickle: nothing in the cache runs) named
after a hash of its key; the key is stored inside it too and must match exactly, so a
corrupt, truncated, foreign or older entry is ignored (and rewritten after the next real
load), never trusted.

Keys:

* an architecture: its name, the load options that change the table (input shape, top,
  weights), the Keras version (read from the package metadata, without importing Keras) and
  kfreeze's cache schema;
* a file: its resolved path, size, modification time and SHA-256 of its content, the options
  that change how it loads (custom objects, unsafe), the Keras version and the schema.

Nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from kfreeze_tui.core.model import hub
from kfreeze_tui.core.model.layers import CallInfo, LayerInfo, ModelInfo, WeightInfo
from kfreeze_tui.core.model.legacy.repairs import Repair
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.model.source import Source, SourceKind, resolve
from kfreeze_tui.core.runtime.leftovers import Leftover, remove_leftovers, temp_file

#: Bumped whenever the stored form or the meaning of a walked field changes.
SCHEMA = 9


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kfreeze/layers`` (default ``~/.cache/kfreeze/layers``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kfreeze" / "layers"


def keras_version() -> str:
    """The installed Keras version, from its metadata (no import)."""
    return _version_of("keras")


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def key_for(source: str | Source, options: LoadOptions) -> dict[str, Any] | None:
    """The cache key of a source, or None when it cannot be cached (not found, a plan).

    Args:
        source: a catalog name or a model file, or a source already resolved (the cache
            and the loader must agree on what it names: see
            :mod:`kfreeze_tui.core.model.source`).
        options: the load options.
    """
    common = {"schema": SCHEMA, "keras": keras_version()}
    named = source if isinstance(source, Source) else resolve(source)
    if named.kind is SourceKind.MODEL_FILE and named.path is not None and named.path.is_file():
        path = named.path
        stat = path.stat()
        return {
            **common,
            "kind": "file",
            "path": str(path.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _file_digest(path),
            "custom_objects": str(options.custom_objects or ""),
            "unsafe": options.unsafe,
        }
    if named.kind in (SourceKind.PRESET_DIR, SourceKind.PRESET_NAME):
        root = named.path if named.kind is SourceKind.PRESET_DIR else hub.identity_root(named.text)
        if root is None or not root.is_dir():
            return None
        return {
            **common,
            "kind": "preset",
            "name": named.text if named.kind is SourceKind.PRESET_NAME else "",
            "path": str(root.resolve()),
            # A folder's identity: its files' sizes and mtimes (a weights file may be many GB,
            # and a table does not depend on the weights' values).
            "files": hub.folder_identity(root),
            "keras_hub": _version_of("keras-hub"),
            "weights": options.weights.strip().lower(),
        }
    arch = named.architecture
    if named.kind is not SourceKind.ARCHITECTURE or arch is None:
        return None
    weights = options.weights.lower()
    return {
        **common,
        "kind": "architecture",
        "name": arch.name,
        "input_shape": list(options.input_shape or arch.default_input_shape),
        "include_top": options.include_top,
        # A weights file may change what loads; imagenet and none give the same table but
        # say different things about the weights.
        "weights": weights if weights in ("imagenet", "none") else f"file:{options.weights}",
    }


def _entry_path(key: dict[str, Any]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / f"{name}.json"


def read(key: dict[str, Any] | None) -> ModelInfo | None:
    """The cached table for ``key``; None on a miss or an entry that cannot be trusted."""
    entry = read_entry(key)
    return entry[0] if entry else None


class Entry(NamedTuple):
    """A cached table and what its load said: warnings, and repairs of a legacy file."""

    info: ModelInfo
    warnings: tuple[str, ...]
    repairs: tuple[Repair, ...]


def read_entry(key: dict[str, Any] | None) -> Entry | None:
    """The cached table for ``key`` and what its load said; None on a miss or an entry that
    cannot be trusted."""
    if key is None:
        return None
    path = _entry_path(key)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("key") != key:
            return None  # a foreign or colliding entry
        return Entry(
            info_from_json(document["info"]),
            _strings(document["warnings"]),
            tuple(Repair.from_json(item) for item in document["repairs"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # corrupt: ignored here, rewritten by the next real load


def write(
    key: dict[str, Any] | None,
    info: ModelInfo,
    warnings: Sequence[str] = (),
    repairs: Sequence[Repair] = (),
) -> None:
    """Store ``info`` under ``key`` atomically; a cache that cannot be written is skipped."""
    if key is None:
        return
    path = _entry_path(key)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers([path.parent])  # `kfreeze cache` says what it removes; here, quietly
        temporary = temp_file(path, ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as out:
                document = {
                    "key": key,
                    "warnings": list(warnings),
                    "repairs": [repair.to_json() for repair in repairs],
                    "info": info_to_json(info),
                }
                json.dump(document, out)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def remove_leftover_entries() -> list[Leftover]:
    """Remove the half-written entries of kfreeze processes that were killed."""
    return remove_leftovers([cache_dir()])


class Usage(NamedTuple):
    """What the cache holds: how many tables, and their bytes."""

    entries: int
    size: int


def usage() -> Usage:
    """How many tables the cache holds and how many bytes they take."""
    folder = cache_dir()
    entries = list(folder.glob("*.json")) if folder.is_dir() else []
    return Usage(len(entries), sum(entry.stat().st_size for entry in entries))


def clear() -> Usage:
    """Remove every cached table.

    Returns:
        How many entries and bytes were removed.
    """
    removed = usage()
    folder = cache_dir()
    if folder.is_dir():
        shutil.rmtree(folder)
    return removed


def same_table(a: ModelInfo, b: ModelInfo) -> bool:
    """Whether two walks describe the same layers (source and description aside)."""
    return (
        a.layers == b.layers
        and a.total_params == b.total_params
        and (a.trainable_params == b.trainable_params)
    )


# -- JSON form ---------------------------------------------------------------------------


def _shape(value: Any) -> tuple[int | None, ...]:
    if not isinstance(value, list) or not all(d is None or isinstance(d, int) for d in value):
        raise ValueError("not a shape")
    return tuple(value)


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("not a list of strings")
    return tuple(value)


def _pair(value: Any) -> tuple[str, str]:
    strings = _strings(value)
    if len(strings) != 2:
        raise ValueError("not a pair of strings")
    return strings[0], strings[1]


def info_to_json(info: ModelInfo) -> dict[str, Any]:
    """A walked model as plain JSON values."""
    return {
        "name": info.name,
        "source": info.source,
        "description": info.description,
        "input_shapes": [list(s) for s in info.input_shapes],
        "output_shapes": [list(s) for s in info.output_shapes],
        "total_params": info.total_params,
        "trainable_params": info.trainable_params,
        "non_trainable_params": info.non_trainable_params,
        "random_weights": info.random_weights,
        "dtype_policy": info.dtype_policy,
        "output_layers": list(info.output_layers),
        "output_keys": [list(pair) for pair in info.output_keys],
        "input_keys": list(info.input_keys),
        "layers": [_layer_to_json(row) for row in info.layers],
    }


def _layer_to_json(row: LayerInfo) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for spec in fields(LayerInfo):
        value = getattr(row, spec.name)
        if spec.name in ("output_shapes",):
            value = [list(s) for s in value]
        elif spec.name == "weights":
            value = [
                {
                    "name": w.name,
                    "shape": list(w.shape),
                    "dtype": w.dtype,
                    "trainable": w.trainable,
                    "can_train": w.can_train,
                }
                for w in value
            ]
        elif spec.name == "ops":
            value = [[label, list(inputs)] for label, inputs in value]
        elif spec.name == "calls":
            value = [
                {
                    "sources": list(call.sources),
                    "input_shapes": [list(s) for s in call.input_shapes],
                    "output_shapes": [list(s) for s in call.output_shapes],
                }
                for call in value
            ]
        elif isinstance(value, tuple):
            value = list(value)
        document[spec.name] = value
    return document


def info_from_json(document: dict[str, Any]) -> ModelInfo:
    """The inverse of :func:`info_to_json`; raises ValueError/KeyError/TypeError on anything
    that is not exactly that form."""
    layers = tuple(_layer_from_json(row) for row in document["layers"])
    info = ModelInfo(
        name=str(document["name"]),
        source=str(document["source"]),
        description=str(document["description"]),
        input_shapes=tuple(_shape(s) for s in document["input_shapes"]),
        output_shapes=tuple(_shape(s) for s in document["output_shapes"]),
        total_params=int(document["total_params"]),
        trainable_params=int(document["trainable_params"]),
        non_trainable_params=int(document["non_trainable_params"]),
        layers=layers,
        random_weights=bool(document["random_weights"]),
        dtype_policy=str(document["dtype_policy"]),
        output_layers=_strings(document["output_layers"]),
        output_keys=tuple(_pair(item) for item in document["output_keys"]),
        input_keys=_strings(document["input_keys"]),
    )
    return info


def _layer_from_json(row: dict[str, Any]) -> LayerInfo:
    names = {spec.name for spec in fields(LayerInfo)}
    if set(row) != names:
        raise ValueError("fields differ")
    return LayerInfo(
        index=int(row["index"]),
        path=tuple(int(i) for i in row["path"]),
        name=str(row["name"]),
        class_name=str(row["class_name"]),
        output_shapes=tuple(_shape(s) for s in row["output_shapes"]),
        params=int(row["params"]),
        trainable_params=int(row["trainable_params"]),
        non_trainable_params=int(row["non_trainable_params"]),
        trainable=bool(row["trainable"]),
        has_weights=bool(row["has_weights"]),
        inbound=_strings(row["inbound"]),
        depth=int(row["depth"]),
        stage=int(row["stage"]),
        block=str(row["block"]),
        stage_name=str(row["stage_name"]),
        sources=_strings(row["sources"]),
        ops=tuple((str(label), _strings(inputs)) for label, inputs in row["ops"]),
        is_container=bool(row["is_container"]),
        child_count=int(row["child_count"]),
        weights=tuple(
            WeightInfo(
                name=str(w["name"]),
                shape=_shape(w["shape"]),
                dtype=str(w["dtype"]),
                trainable=bool(w["trainable"]),
                can_train=bool(w["can_train"]),
            )
            for w in row["weights"]
        ),
        activation=str(row["activation"]),
        lora_kernel=None if row["lora_kernel"] is None else _shape(row["lora_kernel"]),
        lora_enabled=bool(row["lora_enabled"]),
        subclassed=bool(row["subclassed"]),
        own_weight_count=int(row["own_weight_count"]),
        calls=tuple(
            CallInfo(
                sources=_strings(call["sources"]),
                input_shapes=tuple(_shape(s) for s in call["input_shapes"]),
                output_shapes=tuple(_shape(s) for s in call["output_shapes"]),
            )
            for call in row["calls"]
        ),
    )
