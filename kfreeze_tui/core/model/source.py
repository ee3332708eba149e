"""What the user named: an architecture, a model file, a plan file, a keras-hub preset or a
folder, decided once.

A source is the text a user typed (``resnet50``, ``model.keras``, ``plan.toml``). Loading,
the layer-table cache, the session and the app all need to know what it names, and must
agree: a cache that reads ``resnet50`` as the architecture while the loader reads it as a
folder of that name shows ResNet50's table and fails at the first export. So the text is
resolved here, once, by these rules, in this order:

1. A name ending in ``.toml`` (that is not a folder) is a plan file; reading it says whether
   it exists.
2. An existing file is that file, even when its name is also an architecture's (the user
   made the file; Keras's own loaders read a path the same way).
3. A bare name (no slash, no leading dot, no model suffix) that is also an architecture's
   means the architecture, even when a folder has that name, with a note that says so
   (``./resnet50`` names the folder). Any other folder is a keras-hub preset folder when
   keras-hub would read it as one (:func:`kfreeze_tui.core.model.hub.is_preset_dir`), and
   otherwise a folder the loader refuses (a SavedModel or a plain folder, each with its own
   sentence).
4. A ``kaggle://`` or ``hf://`` handle is a keras-hub preset name (opened from the local
   cache only).
5. A name that looks like a path and names nothing on disk is missing.
6. Anything else is an architecture's name (in any case); or a keras-hub preset name that is
   in kagglehub's cache; or unknown (the loader asks keras-hub whether it is a preset that is
   not cached, to say so).

Nothing here imports Keras or keras-hub.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from kfreeze_tui.core.model import catalog, hub

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
PLAN_SUFFIX = ".toml"


class SourceKind(enum.Enum):
    """What a source names."""

    ARCHITECTURE = "architecture"
    """A ``keras.applications`` architecture, built by kfreeze."""
    MODEL_FILE = "model file"
    """An existing file, read as a model (the loader says what is wrong with it, if anything)."""
    PLAN_FILE = "plan file"
    """A kfreeze plan (``.toml``); it names a model of its own."""
    PRESET_DIR = "preset folder"
    """A keras-hub preset folder (``save_to_preset``, a kagglehub download): its backbone."""
    PRESET_NAME = "preset name"
    """A keras-hub preset name or handle, opened from the local cache (never downloaded)."""
    FOLDER = "folder"
    """An existing folder that is neither a preset nor an architecture's bare name."""
    MISSING = "missing"
    """A path that names nothing on disk."""
    UNKNOWN = "unknown"
    """A bare name that is neither on disk nor an architecture."""


@dataclass(frozen=True)
class Source:
    """A source, resolved.

    Attributes:
        text: what the user typed (kept: messages and plan files repeat it).
        kind: what it names.
        path: the expanded path, for every kind but an architecture, a preset name and an
            unknown name.
        architecture: the catalog entry, for an architecture.
        note: said to the user when the text could have meant something else (a folder named
            like an architecture); None otherwise.
    """

    text: str
    kind: SourceKind
    path: Path | None = None
    architecture: catalog.Architecture | None = None
    note: str | None = None

    @property
    def display_name(self) -> str:
        """A short name for headers and progress lines: ``ResNet50``, ``model.keras``."""
        if self.architecture is not None:
            return self.architecture.name
        if self.path is not None:
            return self.path.name or self.text
        return self.text


def looks_like_path(text: str) -> bool:
    """Whether ``text`` is written as a path rather than as an architecture's name."""
    return (
        "/" in text
        or "\\" in text
        or text.startswith(".")
        or text.lower().endswith((*MODEL_SUFFIXES, ".weights.h5", PLAN_SUFFIX, ".pb"))
    )


def resolve(text: str) -> Source:
    """What ``text`` names, by the rules in this module's docstring.

    Args:
        text: a source as the user typed it.

    Returns:
        The resolved source (never raises: a missing or unknown source is a kind, which the
        loader turns into its sentence).
    """
    if hub.is_handle(text):
        return Source(text, SourceKind.PRESET_NAME)
    path = Path(text).expanduser()
    if path.is_dir():
        arch = None if looks_like_path(text) else catalog.find(text)
        if arch is None:
            kind = SourceKind.PRESET_DIR if hub.is_preset_dir(path) else SourceKind.FOLDER
            return Source(text, kind, path)
        return Source(
            text,
            SourceKind.ARCHITECTURE,
            architecture=arch,
            note=(
                f"{text} is also a folder here, which kfreeze cannot open as a model: "
                f"opened the {arch.name} architecture (./{text} names the folder)"
            ),
        )
    if path.suffix.lower() == PLAN_SUFFIX:
        return Source(text, SourceKind.PLAN_FILE, path)
    if path.exists():
        return Source(text, SourceKind.MODEL_FILE, path)
    if looks_like_path(text):
        return Source(text, SourceKind.MISSING, path)
    arch = catalog.find(text)
    if arch is not None:
        return Source(text, SourceKind.ARCHITECTURE, architecture=arch)
    if hub.cached_name(text):
        return Source(text, SourceKind.PRESET_NAME)
    return Source(text, SourceKind.UNKNOWN)
