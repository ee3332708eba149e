"""What kfreeze knows about keras-hub: whether it is installed, preset folders, the local
preset caches, and opening a preset's backbone.

keras-hub is an optional extra (``pip install 'kfreeze[hub]'``): nothing here imports it at
module level, and only :func:`require` (called when a hub source is opened) imports it.

Three kinds of hub source:

- a **preset folder**: what ``backbone.save_to_preset(dir)`` writes and what kagglehub
  downloads (``config.json``, ``metadata.json``, ``model.weights.h5`` ...). A folder is one
  when its ``config.json`` is a format keras-hub reads (keras-hub's own rule in
  ``get_preset_loader``: a serialized Keras object, a Transformers or a timm config).
- a **preset name** (``bert_tiny_en_uncased``, ``kaggle://keras/bert/keras/bert_tiny_en_uncased/3``,
  ``hf://org/model``), opened only from the local cache, never downloaded: kagglehub's cache
  (``$KAGGLEHUB_CACHE``, default ``~/.cache/kagglehub``) and Hugging Face's
  (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``). A built-in name
  maps to the versioned Kaggle handle keras-hub's own preset table gives, so kfreeze opens
  exactly the folder ``keras_hub.models.Backbone.from_preset(name)`` reads offline; an
  unversioned handle (for which keras-hub would ask Kaggle for the latest version) opens the
  newest version in the cache, and says so.
- a ``.keras`` **file of a keras-hub model**: Keras needs keras-hub imported (its classes
  registered) before it can deserialize one (:func:`uses_keras_hub`).

What is in the caches is listed by :func:`cached_presets` (the picker, ``kfreeze models``),
from the folders alone, as everything above the opening section: kagglehub's and Hugging
Face's cache locations are computed here, neither package is imported.

A preset opens as its **backbone** (``Backbone.from_preset``), also when the folder holds a
task (``task.json``): the backbone is what a user freezes, and a task's head is rebuilt by
kfreeze's own head or by the user's task model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LoadError, first_line

#: How the extra is installed.
INSTALL = "pip install 'kfreeze[hub]'"
KAGGLE_PREFIX = "kaggle://"
HF_PREFIX = "hf://"
CONFIG_FILE = "config.json"
TASK_FILE = "task.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
SHARDED_WEIGHTS_FILE = "model.weights.json"
#: The keys of ``config.json`` by which keras-hub recognizes a preset's format.
_FORMAT_KEYS = ("registered_name", "model_type", "architecture")
#: kagglehub's completion markers (a file counts as cached only with its marker).
_COMPLETE = ".complete"
#: How keras-hub writes a preset name: words of letters, digits and dots joined by "_".
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.]*(?:_[A-Za-z0-9.]+)+")


def installed() -> bool:
    """Whether keras-hub can be found by the import system (without importing it)."""
    try:
        return importlib.util.find_spec("keras_hub") is not None
    except (ImportError, ValueError):
        return False


def missing(source: str, alternatives: list[str] | None = None) -> LoadError:
    """The sentence for a source that names a keras-hub preset when keras-hub is not
    installed: what the source looks like, and the extra that opens it.

    Args:
        source: what the user typed.
        alternatives: architectures it may be a typo of (offered after the extra).
    """
    hint = f"install it with {INSTALL}"
    if alternatives:
        hint += f", or did you mean {', '.join(alternatives)}?"
    return LoadError(
        f"{source} looks like a keras-hub preset, and keras-hub is not installed",
        hint,
        kind="hub-missing",
    )


def require(source: str) -> ModuleType:
    """keras-hub, imported; a :class:`LoadError` naming the extra when it is not installed.

    Args:
        source: what the user opened (named in the sentence).
    """
    if not installed():
        raise LoadError(
            f"{source} is a keras-hub model, and keras-hub is not installed",
            f"install it with {INSTALL}",
            kind="hub-missing",
        )
    try:
        import keras_hub
    except ImportError as exc:
        raise LoadError(
            f"{source} is a keras-hub model, and keras-hub cannot be imported ({first_line(exc)})",
            f"repair the installation, e.g. with {INSTALL}",
            kind="hub-missing",
        ) from exc
    return keras_hub


# -- what a source is (no keras-hub import) ------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def is_preset_dir(path: Path) -> bool:
    """Whether ``path`` is a folder keras-hub reads as a preset.

    keras-hub's own rule (``get_preset_loader``) reads any ``config.json`` with a
    ``registered_name`` as a serialized Keras object, which an unzipped ``.keras`` archive
    also has; so a Keras config counts only when it names a keras-hub class or the folder's
    ``metadata.json`` was written by keras-hub (``save_to_preset``). Transformers and timm
    configs (``model_type``, ``architecture``) count as keras-hub says.
    """
    config = _read_json(path / CONFIG_FILE) if path.is_dir() else None
    if config is None:
        return False
    if any(key in config for key in _FORMAT_KEYS[1:]):
        return True
    if "registered_name" not in config:
        return False
    metadata = _read_json(path / METADATA_FILE) or {}
    return uses_keras_hub(config) or "keras_hub_version" in metadata


def is_handle(text: str) -> bool:
    """Whether ``text`` is a Kaggle or Hugging Face preset handle."""
    lowered = text.lower()
    return lowered.startswith((KAGGLE_PREFIX, HF_PREFIX))


def looks_like_name(text: str) -> bool:
    """Whether ``text`` is written as keras-hub writes its preset names (``bert_tiny_en_uncased``,
    ``llama3.2_1b``: words joined by underscores) or is a handle; a text look, for the
    sentence kfreeze gives without keras-hub."""
    return is_handle(text) or _NAME.fullmatch(text) is not None


def kaggle_cache() -> Path:
    """kagglehub's cache folder, as kagglehub computes it (``kagglehub.config``)."""
    return Path(
        os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub"
    ).expanduser()


def hf_cache() -> Path:
    """Hugging Face's hub cache folder, as ``huggingface_hub.constants`` computes it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _kaggle_variation(handle: str) -> tuple[Path, int | None] | None:
    """The cache folder of a Kaggle handle's variation and its version (None: unversioned);
    None for a handle that is not ``owner/model/framework/variation[/version]``."""
    parts = handle.removeprefix(KAGGLE_PREFIX).strip("/").split("/")
    if len(parts) not in (4, 5) or not all(parts):
        return None
    version: int | None = None
    if len(parts) == 5:
        if not parts[4].isdigit():
            return None
        version = int(parts[4])
    return kaggle_cache().joinpath("models", *parts[:4]), version


def _cached_versions(variation: Path) -> list[int]:
    """The versions of a Kaggle variation whose ``config.json`` is in the cache, with its
    completion marker (kagglehub's rule for a file it will not download again): the file's
    own, which keras-hub's file-by-file downloads leave, or the whole version's, which
    ``kagglehub.model_download(handle)`` leaves (keras-hub itself would ask the network for
    each file then; kfreeze opens the complete folder)."""
    if not variation.is_dir():
        return []
    versions = []
    for child in variation.iterdir():
        if child.name.isdigit() and _kaggle_file_cached(variation, int(child.name), CONFIG_FILE):
            versions.append(int(child.name))
    return sorted(versions)


def _kaggle_file_cached(variation: Path, version: int, name: str) -> bool:
    marker = variation / _COMPLETE / str(version) / f"{name}.complete"
    bundle = variation / f"{version}.complete"
    return (variation / str(version) / name).is_file() and (marker.is_file() or bundle.is_file())


def _hf_repo(handle: str) -> Path:
    repo = handle[len(HF_PREFIX) :].strip("/")
    return hf_cache() / ("models--" + repo.replace("/", "--"))


def _hf_snapshot(repo: Path) -> Path | None:
    """The snapshot of ``refs/main`` in a Hugging Face cache folder, when it has a config."""
    try:
        revision = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / revision
    return snapshot if (snapshot / CONFIG_FILE).is_file() else None


def _builtin_variations(name: str) -> list[Path]:
    """Where kagglehub caches a built-in preset of that name: keras-hub's built-in handles are
    ``kaggle://keras/<model>/keras/<name>/<version>``."""
    models = kaggle_cache() / "models" / "keras"
    if not models.is_dir() or "/" in name or name.startswith("."):
        return []
    return sorted(path for path in models.glob(f"*/keras/{name}") if path.is_dir())


def cached_name(text: str) -> bool:
    """Whether a bare name (``bert_tiny_en_uncased``) has a version in kagglehub's cache
    (a filesystem look, no import); which version opens is decided by :func:`locate`."""
    return any(_cached_versions(variation) for variation in _builtin_variations(text))


@dataclass(frozen=True)
class Cached:
    """A keras-hub preset in a local cache, as :func:`cached_presets` lists it.

    Attributes:
        name: what a user calls it: a built-in's name (``bert_tiny_en_uncased``) for keras's
            own Kaggle presets, else the handle without its version.
        handle: the handle that opens exactly this folder (``kaggle://.../3``,
            ``hf://org/model``): what the picker opens and ``kfreeze models`` shows.
        folder: the cached preset folder.
        family: the Kaggle model (``bert``); None for a Hugging Face repo.
    """

    name: str
    handle: str
    folder: Path
    family: str | None = None


def _keras_format(folder: Path) -> bool:
    """Whether a folder is a preset keras-hub saved (a Keras config naming a keras-hub class,
    or keras-hub's metadata): Hugging Face caches hold Transformers models too, which are not
    listed (keras-hub converts only some)."""
    config = _read_json(folder / CONFIG_FILE)
    if config is None or "registered_name" not in config:
        return False
    metadata = _read_json(folder / METADATA_FILE) or {}
    return uses_keras_hub(config) or "keras_hub_version" in metadata


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def cached_presets() -> list[Cached]:
    """The keras-hub presets in kagglehub's and Hugging Face's local caches, newest cached
    version of each Kaggle variation, sorted by name: a look at folders and small JSON files,
    no import of keras-hub or kagglehub (what a user can open offline)."""
    found: list[Cached] = []
    models = kaggle_cache() / "models"
    for owner in _subfolders(models):
        for model in _subfolders(owner):
            for framework in _subfolders(model):
                for variation in _subfolders(framework):
                    versions = _cached_versions(variation)
                    if not versions:
                        continue
                    folder = variation / str(versions[-1])
                    if not is_preset_dir(folder):
                        continue
                    unversioned = "/".join(p.name for p in (owner, model, framework, variation))
                    builtin = owner.name == "keras" and framework.name == "keras"
                    found.append(
                        Cached(
                            name=variation.name if builtin else unversioned,
                            handle=f"{KAGGLE_PREFIX}{unversioned}/{versions[-1]}",
                            folder=folder,
                            family=model.name,
                        )
                    )
    for repo in _subfolders(hf_cache()):
        if not repo.name.startswith("models--"):
            continue
        snapshot = _hf_snapshot(repo)
        if snapshot is None or not _keras_format(snapshot):
            continue
        handle = HF_PREFIX + repo.name.removeprefix("models--").replace("--", "/")
        found.append(Cached(name=handle, handle=handle, folder=snapshot))
    return sorted(found, key=lambda c: (c.name.lower(), c.handle))


def identity_root(text: str) -> Path | None:
    """The cache folder whose files identify what a preset name opens (for the layer-table
    cache's key): the Kaggle variation (every cached version) or the Hugging Face repo."""
    if text.lower().startswith(HF_PREFIX):
        return _hf_repo(text)
    if text.lower().startswith(KAGGLE_PREFIX):
        found = _kaggle_variation(text)
        return None if found is None else found[0]
    variations = _builtin_variations(text)
    return variations[0] if variations else None


def folder_identity(root: Path) -> list[list[Any]]:
    """Each file under ``root`` (links followed) as ``[relative path, size, mtime_ns]``,
    sorted: what says a folder changed, as size and mtime do for one file."""
    rows: list[list[Any]] = []
    for path in sorted(_files(root)):
        try:
            stat = path.stat()
        except OSError:
            continue
        rows.append([path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns])
    return rows


def _files(root: Path) -> Iterator[Path]:
    for folder, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            yield Path(folder) / name


# -- opening -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """A preset name, found in a local cache.

    Attributes:
        folder: the preset folder keras-hub reads.
        handle: the full handle it stands for (``kaggle://keras/bert/keras/bert_tiny_en_uncased/3``).
        note: said to the user when kfreeze chose (the newest cached version); None otherwise.
    """

    folder: Path
    handle: str
    note: str | None = None


def _not_cached(text: str, looked: Path, hint: str = "", shown: str = "") -> LoadError:
    return LoadError(
        f"the keras-hub preset {shown or text} is not in the local cache (looked in {looked}), "
        "and kfreeze does not download",
        hint
        or "download it once where there is network, e.g. with "
        f'keras_hub.models.Backbone.from_preset("{text}"), or pass a preset folder',
        kind="hub-not-cached",
    )


def _builtin_handle(name: str) -> str | None:
    """The Kaggle handle keras-hub's own preset table gives a built-in name (the table
    from_preset reads; importing keras-hub fills it)."""
    from keras_hub.src.utils import preset_utils

    entry = preset_utils.BUILTIN_PRESETS.get(name)
    return None if entry is None else str(entry.get("kaggle_handle") or "") or None


def locate(text: str) -> Located:
    """The local folder a preset name opens, looked up in the caches only (no network).

    Args:
        text: a built-in name, or a ``kaggle://`` or ``hf://`` handle.

    Raises:
        LoadError: keras-hub is not installed (whether or not the preset is cached: it
            cannot open without), or the name is not in the cache (the sentence says where
            kfreeze looked).
    """
    if not installed():
        raise missing(text)
    lowered = text.lower()
    if lowered.startswith(HF_PREFIX):
        repo = _hf_repo(text)
        snapshot = _hf_snapshot(repo)
        if snapshot is None:
            raise _not_cached(text, repo)
        return Located(snapshot, text)
    handle = text
    if not lowered.startswith(KAGGLE_PREFIX):
        require(text)
        found = _builtin_handle(text)
        if found is None:
            raise LoadError(
                f"{text!r} is neither a model file, a keras.applications architecture nor a "
                "keras-hub preset",
                "run `kfreeze models` to list every architecture, or pass a preset folder",
                kind="unknown",
            )
        handle = found
    variation = _kaggle_variation(handle)
    if variation is None:
        raise LoadError(
            f"{text} is not a Kaggle preset handle",
            "write it as kaggle://owner/model/framework/variation[/version]",
            kind="usage",
        )
    folder, version = variation
    cached = _cached_versions(folder)
    if version is None:
        if not cached:
            raise _not_cached(text, folder)
        newest = cached[-1]
        return Located(
            folder / str(newest),
            f"{handle.rstrip('/')}/{newest}",
            note=f"{text} names no version: opened version {newest}, the newest in the cache",
        )
    if version not in cached:
        shown = f"{text} ({handle})" if handle != text else text
        hint = ""
        if cached:
            others = ", ".join(str(v) for v in cached)
            unversioned = handle.removeprefix(KAGGLE_PREFIX).rsplit("/", 1)[0]
            wanted = "keras-hub's table names" if handle != text else "you named"
            hint = (
                f"{wanted} version {version} and the cache has version {others}: open that "
                f"as {KAGGLE_PREFIX}{unversioned}/{cached[-1]}"
            )
        raise _not_cached(text, folder, hint, shown)
    return Located(folder / str(version), handle)


def load_backbone(folder: Path, source: str, load_weights: bool) -> tuple[Any, str]:
    """The backbone of the preset in ``folder`` (keras-hub imported by the caller's
    environment), and a short description of what was opened.

    Args:
        folder: a preset folder.
        source: what the user typed (for messages).
        load_weights: load the preset's weights (``--weights none`` skips them).
    """
    keras_hub = require(source)
    try:
        backbone = keras_hub.models.Backbone.from_preset(str(folder), load_weights=load_weights)
    except Exception as exc:
        raise LoadError(
            f"keras-hub could not open the preset {source}: {first_line(exc)}",
            "check that the folder was written by save_to_preset() or downloaded whole",
            kind="hub",
        ) from exc
    what = "backbone of a task preset" if (folder / TASK_FILE).is_file() else "preset"
    return backbone, what


def uses_keras_hub(config: Any) -> bool:
    """Whether a saved model's config names a keras-hub class anywhere (so that keras-hub must
    be imported before Keras can deserialize it)."""
    if isinstance(config, dict):
        module = config.get("module")
        registered = config.get("registered_name")
        if (isinstance(module, str) and module.split(".")[0] == "keras_hub") or (
            isinstance(registered, str) and registered.startswith("keras_hub>")
        ):
            return True
        return any(uses_keras_hub(value) for value in config.values())
    if isinstance(config, list):
        return any(uses_keras_hub(value) for value in config)
    return False


def may_be_builtin(name: str) -> bool:
    """Whether keras-hub's preset tables (its ``*_presets.py`` files) mention ``name``: a
    text look, without importing keras-hub, that saves the import for a plain typo."""
    if not name or "/" in name or "\\" in name or not installed():
        return False
    spec = importlib.util.find_spec("keras_hub")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    quoted = (f'"{name}"', f"'{name}'")
    for root in roots:
        for table in Path(root).glob("src/models/*/*_presets.py"):
            try:
                text = table.read_text(encoding="utf-8")
            except OSError:
                continue
            if any(q in text for q in quoted):
                return True
    return False


def file_uses_keras_hub(path: Path) -> bool:
    """Whether a ``.keras`` archive holds a keras-hub model (read from its ``config.json``,
    nothing deserialized); False for anything that is not such an archive."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read(CONFIG_FILE))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False
    return uses_keras_hub(config)
