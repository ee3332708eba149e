"""What a legacy file is, and what in one is refused before anything in it is built.

Every check reads the stored config or the archive's bytes only: nothing from the file is
deserialized, unpickled or run. An archive that could run code or hide what it holds, a model
class kfreeze cannot rebuild, a Lambda whose code another Python version marshalled, and
TensorFlow functions with no exact ``keras.ops`` equivalent are refused, each with a sentence.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zipfile
from collections import Counter
from typing import Any

from kfreeze_tui.core.errors import LegacyError
from kfreeze_tui.core.model.legacy import ops as legacy_ops
from kfreeze_tui.core.model.legacy.entries import MODEL_CLASSES, layer_entries

# -- what kind of file --------------------------------------------------------------------


def h5_is_legacy(keras_version: str | None, named_keras: bool) -> bool:
    """An HDF5 model file that Keras 3 did not write (or HDF5 in a ``.keras`` name)."""
    return named_keras or not (keras_version or "").startswith("3")


def archive_is_legacy(config: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """A ``.keras`` archive written by tf.keras 2.13-2.15 (or tf_keras), not by Keras 3."""
    version = str(metadata.get("keras_version", ""))
    if version and not version.startswith("3"):
        return True
    module = str(config.get("module") or "")
    return module.startswith(("tf_keras", "keras.engine", "keras.src.engine"))


def read_archive_metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The archive's ``metadata.json`` (empty when it has none, or none that is readable)."""
    try:
        data = json.loads(archive.read("metadata.json"))
    except (KeyError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- archives: checked before anything in them is read --------------------------------------

PICKLE_PROTOCOLS = (2, 3, 4, 5)
NPY_MAGIC = b"\x93NUMPY"


def check_archive(archive: zipfile.ZipFile, source: str) -> None:
    """Refuse an archive that could run code or hide what it holds, before deserializing.

    Raises:
        LegacyError: for duplicate member names (two members, one name: which one a reader
            takes is up to the reader) and for pickled data (unpickling runs code).
    """
    names = [info.filename for info in archive.infolist()]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise LegacyError(
            f"{source} is refused: its archive holds several members named "
            f"{', '.join(duplicates[:3])}, so what is loaded would depend on the reader",
            "save the model again with model.save() to get a well-formed file",
            kind="archive",
        )
    for name in names:
        if name.endswith("/"):
            continue
        with archive.open(name) as member:
            head = member.read(256)
        if _is_pickle(name, head) or _is_object_npy(head):
            raise LegacyError(
                f"{source} is refused: its member {name} holds pickled Python objects, "
                "and unpickling them would run code from the file",
                "save the model again with model.save() from the code that built it",
                kind="archive",
            )


def _is_pickle(name: str, head: bytes) -> bool:
    if name.lower().endswith((".pkl", ".pickle")):
        return True
    return len(head) >= 2 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS


def _is_object_npy(head: bytes) -> bool:
    if not head.startswith(NPY_MAGIC):
        return False
    return b"'|O'" in head or b"'O'" in head


# -- what cannot be opened ------------------------------------------------------------------


def check_model_class(config: dict[str, Any], source: str, custom: dict[str, Any]) -> None:
    """Refuse a model whose class kfreeze cannot rebuild, naming the class.

    Raises:
        LegacyError: a subclassed model whose architecture is not in the file, or a custom
            model class that ``--custom-objects`` did not define.
    """
    class_name = str(config.get("class_name"))
    if class_name in MODEL_CLASSES or class_name in custom:
        return
    inner = config.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
        raise LegacyError(
            f"{source} is a model of the custom model class {class_name}, which kfreeze "
            "does not know",
            "pass --custom-objects FILE.py with a Python file that defines it (decorated with "
            "@keras.saving.register_keras_serializable())",
            kind="custom",
        )
    raise LegacyError(
        f"{source} holds a subclassed model, {class_name}, whose architecture is not stored in "
        "the file (only its weights are), so its layers cannot be rebuilt from the file",
        f"pass --custom-objects FILE.py with the Python file that defines {class_name} (its code "
        "is needed)",
        kind="subclassed",
    )


def check_lambdas(config: dict[str, Any], source: str) -> None:
    """Refuse a Lambda whose code another Python version marshalled: it cannot run here.

    Raises:
        LegacyError: naming the layer and the Python version that wrote its code.
    """
    for entry in layer_entries(config):
        if entry.get("class_name") != "Lambda":
            continue
        inner = entry.get("config") or {}
        code = _lambda_code(inner.get("function"))
        if code is None:
            continue
        written = marshal_python(code)
        here = marshal_python(_own_marshal())
        if written is not None and written != here:
            name = inner.get("name") or entry.get("name") or "Lambda"
            raise LegacyError(
                f"{source} has a Lambda layer, {name}, whose code was marshalled by {written} "
                f"and cannot run in this Python ({here})",
                "rebuild the Lambda in Python, or pass --custom-objects FILE.py with a layer "
                "class that replaces it",
                kind="lambda-version",
            )


def _lambda_code(function: Any) -> bytes | None:
    text = None
    if isinstance(function, list) and function and isinstance(function[0], str):
        text = function[0]
    elif isinstance(function, dict) and function.get("class_name") == "__lambda__":
        text = (function.get("config") or {}).get("code")
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text.encode("ascii"), validate=False)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _own_marshal() -> bytes:
    import marshal

    return marshal.dumps((lambda x: x).__code__)


#: First opcode of every 3.11+ function: RESUME, by the versions that number it so.
_RESUME = {0x97: "Python 3.11 or 3.12", 0x95: "Python 3.13", 0x80: "Python 3.14"}


def marshal_python(data: bytes) -> str | None:
    """Which Python version wrote a marshalled code object, read from its layout alone.

    The header of a code object changed with CPython versions: 4 integer fields before the
    bytecode in Python 2, 5 in 3.0-3.7, 6 in 3.8-3.10 (``co_posonlyargcount``), 5 again from
    3.11 (``co_nlocals`` went), where the bytecode starts with RESUME. Nothing is unmarshalled.

    Returns:
        e.g. ``Python 3.8 to 3.10``; None when the bytes are not a marshalled code object.
    """
    if len(data) < 30 or data[0] & 0x7F != ord("c"):
        return None
    for fields in (4, 5, 6):
        at = 1 + 4 * fields
        if data[at] & 0x7F != ord("s"):
            continue
        (length,) = struct.unpack_from("<i", data, at + 1)
        if not 0 < length <= len(data) - at - 5:
            continue
        code = data[at + 5 : at + 5 + length]
        if fields == 4:
            return "Python 2"
        if fields == 6:
            return "Python 3.8 to 3.10"
        if code[:1] and code[0] in _RESUME and code[1] == 0:
            return _RESUME[code[0]]
        return "Python 3.7 or earlier"
    return None


def check_tf_ops(config: dict[str, Any], source: str) -> None:
    """Refuse tf.keras op layers whose TensorFlow function has no exact ``keras.ops``
    equivalent, naming the functions.

    Raises:
        LegacyError: kind ``tf-op``.
    """
    refused = legacy_ops.unsupported(layer_entries(config))
    if refused:
        raise LegacyError(
            f"{source} calls TensorFlow functions that kfreeze cannot rebuild in Keras 3: "
            + "; ".join(refused),
            "rebuild those steps with keras.ops in Keras 3 code, load the weights into that "
            "model, and save it with model.save()",
            kind="tf-op",
        )
