"""The keras.applications architectures: their names, families and default input sizes.

The list of names is read from the installed Keras (its ``keras/applications/__init__.py``
is parsed without importing Keras, which keeps the picker instant), so it follows whatever
Keras version is installed instead of rotting in a hand-written list. Default input sizes are
not exposed by Keras without building the model, so they live in a table here; a test checks
that every architecture Keras offers has an entry.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

#: Default square input size of each architecture (what it was trained at on imagenet).
DEFAULT_SIZES: dict[str, int] = {
    "ConvNeXtBase": 224,
    "ConvNeXtLarge": 224,
    "ConvNeXtSmall": 224,
    "ConvNeXtTiny": 224,
    "ConvNeXtXLarge": 224,
    "DenseNet121": 224,
    "DenseNet169": 224,
    "DenseNet201": 224,
    "EfficientNetB0": 224,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetB4": 380,
    "EfficientNetB5": 456,
    "EfficientNetB6": 528,
    "EfficientNetB7": 600,
    "EfficientNetV2B0": 224,
    "EfficientNetV2B1": 240,
    "EfficientNetV2B2": 260,
    "EfficientNetV2B3": 300,
    "EfficientNetV2S": 384,
    "EfficientNetV2M": 480,
    "EfficientNetV2L": 480,
    "InceptionResNetV2": 299,
    "InceptionV3": 299,
    "MobileNet": 224,
    "MobileNetV2": 224,
    "MobileNetV3Large": 224,
    "MobileNetV3Small": 224,
    "NASNetLarge": 331,
    "NASNetMobile": 224,
    "ResNet50": 224,
    "ResNet101": 224,
    "ResNet152": 224,
    "ResNet50V2": 224,
    "ResNet101V2": 224,
    "ResNet152V2": 224,
    "VGG16": 224,
    "VGG19": 224,
    "Xception": 299,
}

#: Fallback for an architecture a newer Keras adds before this table knows it.
FALLBACK_SIZE = 224


@dataclass(frozen=True, slots=True)
class Architecture:
    """One keras.applications architecture.

    Attributes:
        name: the constructor's name, e.g. ``ResNet50``.
        module: the module that defines it, e.g. ``keras.src.applications.resnet``; its
            ``preprocess_input`` is the one that goes with the architecture.
        default_size: the square input size it is built at unless told otherwise.
    """

    name: str
    module: str
    default_size: int

    @property
    def family(self) -> str:
        """The last part of the defining module, e.g. ``resnet`` or ``efficientnet_v2``."""
        return self.module.rsplit(".", 1)[-1]

    @property
    def default_input_shape(self) -> tuple[int, int, int]:
        """``(size, size, 3)``: channels-last, as Keras builds them by default."""
        return (self.default_size, self.default_size, 3)


def _applications_init() -> Path | None:
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "applications" / "__init__.py"
        if candidate.is_file():
            return candidate
    return None


def _parse_names(init_file: Path) -> dict[str, str]:
    """Constructor name -> defining module, from ``from X import Name as Name`` lines."""
    tree = ast.parse(init_file.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                public = alias.asname or alias.name
                if public[:1].isupper() and "applications" in node.module:
                    found[public] = node.module
    return found


def _import_names() -> dict[str, str]:
    """Slow path: import keras.applications and look at what it offers."""
    import inspect

    from kfreeze_tui.core.runtime.process import import_keras

    keras = import_keras()
    found: dict[str, str] = {}
    for name in dir(keras.applications):
        obj = getattr(keras.applications, name)
        if name[:1].isupper() and inspect.isfunction(obj):
            found[name] = obj.__module__
    return found


@functools.cache
def architectures() -> tuple[Architecture, ...]:
    """Every architecture the installed Keras offers, sorted by name.

    Returns:
        The catalog, read once per process.
    """
    init_file = _applications_init()
    names: dict[str, str] = {}
    if init_file is not None:
        try:
            names = _parse_names(init_file)
        except (OSError, SyntaxError, UnicodeDecodeError):
            names = {}
    if not names:
        names = _import_names()
    return tuple(
        Architecture(name, module, DEFAULT_SIZES.get(name, FALLBACK_SIZE))
        for name, module in sorted(names.items(), key=lambda item: item[0].lower())
    )


def find(name: str) -> Architecture | None:
    """The architecture called ``name``, ignoring case (``resnet50`` is ``ResNet50``).

    Args:
        name: a name as a user types it; ``-`` and ``_`` are ignored too.

    Returns:
        The architecture, or None when Keras has none of that name.
    """
    wanted = _fold(name)
    for arch in architectures():
        if _fold(arch.name) == wanted:
            return arch
    return None


def closest(name: str, n: int = 3) -> list[str]:
    """The catalog names most like ``name``, best first, for "did you mean" messages.

    Args:
        name: what the user typed.
        n: how many names at most.

    Returns:
        Up to ``n`` architecture names.
    """
    by_fold = {_fold(arch.name): arch.name for arch in architectures()}
    wanted = _fold(name)
    matches = difflib.get_close_matches(wanted, list(by_fold), n=n, cutoff=0.5)
    if not matches:
        matches = [key for key in by_fold if key.startswith(wanted[:3])][:n]
    return [by_fold[key] for key in matches]


def _fold(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


@functools.cache
def known_counts() -> dict[str, dict[str, int]]:
    """Layer and parameter counts of each architecture at its default size, measured once
    and shipped with kfreeze (``catalog_counts.json``), so that the picker shows them without
    building anything. Empty if the file is missing or damaged."""
    import json

    path = Path(__file__).with_name("catalog_counts.json")
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("models", {}))
    except (OSError, ValueError):
        return {}
