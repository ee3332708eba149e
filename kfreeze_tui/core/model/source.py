"""What the user named: an architecture, a model file, a plan file or a folder, decided once.

A source is the text a user typed (``resnet50``, ``model.keras``, ``plan.toml``). Loading,
the layer-table cache, the session and the app all need to know what it names, and must
agree: a cache that reads ``resnet50`` as the architecture while the loader reads it as a
folder of that name shows ResNet50's table and fails at the first export. So the text is
resolved here, once, by these rules, in this order:

1. A name ending in ``.toml`` (that is not a folder) is a plan file; reading it says whether
   it exists.
2. An existing file is that file, even when its name is also an architecture's (the user
   made the file; Keras's own loaders read a path the same way).
3. A folder is never a model kfreeze can open. A bare name (no slash, no leading dot, no
   model suffix) that is also an architecture's therefore means the architecture, with a note
   that says so (``./resnet50`` names the folder). Any other folder is refused by the loader
   (a SavedModel or a plain folder, each with its own sentence).
4. A name that looks like a path and names nothing on disk is missing.
5. Anything else is an architecture's name (in any case), or unknown.

Nothing here imports Keras.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from kfreeze_tui.core.model import catalog

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
    FOLDER = "folder"
    """An existing folder that is not an architecture's bare name (never a model)."""
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
        path: the expanded path, for every kind but an architecture and an unknown name.
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
    path = Path(text).expanduser()
    if path.is_dir():
        arch = None if looks_like_path(text) else catalog.find(text)
        if arch is None:
            return Source(text, SourceKind.FOLDER, path)
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
    if arch is None:
        return Source(text, SourceKind.UNKNOWN)
    return Source(text, SourceKind.ARCHITECTURE, architecture=arch)
