"""From a source (a catalog name or a model file) to a ``keras.Model``.

Every way loading can fail ends in a :class:`LoadError` that says in one sentence what is
wrong with *this* input and what to do about it. Keras's own messages are often misleading
("File not found" for a file that exists but is empty or truncated), so files are examined
before and after Keras has had its go. A load is tracked (:mod:`load_progress`) so that a
progress line can say how far a long one has got.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LoadError, first_line
from kfreeze_tui.core.model import catalog, hub, load_progress
from kfreeze_tui.core.model.legacy import checks, graph, hard_sigmoid, upgrade
from kfreeze_tui.core.model.legacy.entries import MODEL_CLASSES, layer_entries
from kfreeze_tui.core.model.legacy.ops import OP_CLASSES as OP_LAYER_CLASSES
from kfreeze_tui.core.model.legacy.repairs import Repair
from kfreeze_tui.core.model.legacy.weights import load_archive_weights, load_h5_weights
from kfreeze_tui.core.model.source import MODEL_SUFFIXES as MODEL_SUFFIXES
from kfreeze_tui.core.model.source import Source, SourceKind, resolve
from kfreeze_tui.core.runtime.process import (
    RuntimeOptions,
    deep_recursion,
    import_keras,
    native_output_captured,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
#: Seconds before a weights download is given up; offline boxes fail at once anyway.
DOWNLOAD_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoadOptions:
    """How to turn a source into a model.

    Attributes:
        weights: for a catalog name: ``imagenet``, ``none`` (random), or a weights file.
        input_shape: for a catalog name: ``(H, W, C)``; None means the architecture's
            default size, so that every output shape is concrete.
        include_top: for a catalog name: keep the imagenet classifier.
        custom_objects: a Python file that defines (and registers) custom layers.
        unsafe: allow Lambda layers, whose Python code is stored in the file.
        gpu: let TensorFlow use the GPU (with memory growth); the CPU otherwise.
        compile: for a Keras 3 ``.keras`` file: restore its compiled optimizer and loss
            (``kfreeze check`` reads the learning rate); if they cannot be restored, the
            model is loaded uncompiled with a warning.
    """

    weights: str = "imagenet"
    input_shape: tuple[int, int, int] | None = None
    include_top: bool = False
    custom_objects: Path | None = None
    unsafe: bool = False
    gpu: bool = False
    compile: bool = False


@dataclass
class LoadedModel:
    """A model and what it came from.

    Attributes:
        model: the Keras model.
        source: the source as given (a catalog name or a path).
        description: one line for headers, e.g. ``ResNet50 · keras.applications · 224x224x3``.
        random_weights: the weights are random (``--weights none``), which the UI says.
        architecture: the catalog entry, when the source is a catalog name.
        warnings: things the user should know (e.g. ``--unsafe`` in effect).
        repairs: what was changed to open a file from an older Keras (empty otherwise).
    """

    model: Any
    source: str
    description: str
    random_weights: bool = False
    architecture: catalog.Architecture | None = None
    warnings: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """Parse ``H,W,C`` (also ``HxWxC``) into a tuple of three positive integers.

    Args:
        text: what the user typed.

    Returns:
        ``(H, W, C)``.

    Raises:
        LoadError: when the text is not three positive integers.
    """
    parts = [p.strip() for p in text.replace("x", ",").replace("X", ",").split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or any(d <= 0 for d in dims):
        raise LoadError(
            f"--input-shape {text!r} is not three positive integers",
            "write it as height,width,channels, e.g. --input-shape 224,224,3",
            kind="usage",
        )
    return dims  # type: ignore[return-value]


def load(source: str | Source, options: LoadOptions | None = None) -> LoadedModel:
    """Load a model from a catalog name or a ``.keras`` / ``.h5`` file.

    Args:
        source: ``resnet50`` (any case), or a path; or a source already resolved (what it
            names is decided once, by :func:`kfreeze_tui.core.model.source.resolve`).
        options: load options; defaults to imagenet weights at the default size.

    Returns:
        The loaded model.

    Raises:
        LoadError: for every way the source can fail, with one clear sentence.
    """
    options = options or LoadOptions()
    named = source if isinstance(source, Source) else resolve(source)
    text = named.text
    if named.kind is SourceKind.ARCHITECTURE and named.architecture is not None:
        arch = named.architecture
        with load_progress.tracked("Building", arch.name):
            if not options.include_top:  # the shipped counts are without the classifier
                load_progress.set_total(catalog.known_counts().get(arch.name, {}).get("layers"))
            return _build_architecture(arch, text, options)
    if named.kind is SourceKind.PRESET_DIR and named.path is not None:
        with load_progress.tracked("Loading", named.display_name):
            return _load_preset(named.path, text, options)
    if named.kind is SourceKind.PRESET_NAME:
        located = hub.locate(text)
        with load_progress.tracked("Loading", text):
            return _load_preset(located.folder, text, options, located)
    if named.path is not None and named.path.exists():
        with load_progress.tracked("Loading", named.path.name):
            return _load_file(named.path, text, options)
    if named.kind is SourceKind.UNKNOWN and hub.may_be_builtin(text):
        hub.locate(text)  # a keras-hub preset that is not cached: says so, and where it looked
    if named.kind is SourceKind.UNKNOWN:
        suggestions = catalog.closest(text)
        if hub.looks_like_name(text) and not hub.installed():
            raise hub.missing(repr(text), suggestions)
        hint = "run `kfreeze models` to list every architecture"
        if suggestions:
            hint = f"did you mean {', '.join(suggestions)}? ({hint})"
        raise LoadError(
            f"{text!r} is neither a model file nor a keras.applications architecture",
            hint,
            kind="unknown",
        )
    raise LoadError(
        f"{text} does not exist",
        "check the path, or pass an architecture name such as resnet50",
        kind="missing",
    )


def load_with_fresh_names(source: str | Source, options: LoadOptions | None = None) -> LoadedModel:
    """:func:`load`, in a thread of its own, so that automatic layer names start afresh.

    Keras numbers the names it makes up (``conv2d_203``, ``input_layer_7``) per thread and
    per process: the same architecture built twice in one thread gets other names. The
    layer-table cache compares a model with the table cached by another process; loading in
    a new thread gives the names a new process gives.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["loaded"] = load(source, options)
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="kfreeze-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["loaded"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def _keras_environment(options: LoadOptions) -> Iterator[ModuleType]:
    """Keras, imported quietly, with output captured and room for deep models."""
    with deep_recursion():
        keras = import_keras(RuntimeOptions(gpu=options.gpu))
        with native_output_captured():
            yield keras


def _build_architecture(
    arch: catalog.Architecture, source: str, options: LoadOptions
) -> LoadedModel:
    weights_option = options.weights.strip()
    weights: str | None
    if weights_option.lower() == "imagenet":
        weights = "imagenet"
    elif weights_option.lower() in ("none", "random", ""):
        weights = None
    else:
        weights_path = Path(weights_option).expanduser()
        if not weights_path.is_file():
            raise LoadError(
                f"the weights file {weights_option} does not exist",
                "pass --weights imagenet, --weights none, or the path of a weights file",
                kind="missing",
            )
        weights = str(weights_path)
    input_shape = options.input_shape or arch.default_input_shape
    kwargs: dict[str, Any] = {
        "weights": weights,
        "include_top": options.include_top,
        "input_shape": input_shape,
    }
    shape_text = "x".join(str(d) for d in input_shape)
    with _keras_environment(options) as keras:
        constructor = getattr(keras.applications, arch.name)
        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        try:
            model = constructor(**kwargs)
        except Exception as exc:
            raise _architecture_error(arch, weights, exc, options) from exc
        finally:
            socket.setdefaulttimeout(previous_timeout)
    weights_text = {None: "random weights", "imagenet": "imagenet weights"}.get(
        weights, f"weights from {weights}"
    )
    top_text = "with top" if options.include_top else "no top"
    return LoadedModel(
        model=model,
        source=source,
        description=f"{arch.name} · {shape_text} · {top_text} · {weights_text}",
        random_weights=weights is None,
        architecture=arch,
    )


def _load_preset(
    folder: Path, source: str, options: LoadOptions, located: hub.Located | None = None
) -> LoadedModel:
    """A keras-hub preset's backbone; ``--weights none`` skips loading its weights."""
    weights = options.weights.strip().lower()
    if weights not in ("imagenet", "none", "random", ""):
        raise LoadError(
            f"--weights {options.weights} cannot be given to the keras-hub preset {source}",
            "a preset loads its own weights; pass --weights none for random ones",
            kind="usage",
        )
    load_weights = weights == "imagenet"
    with _keras_environment(options):
        model, what = hub.load_backbone(folder, source, load_weights)
    name = located.handle if located is not None else (folder.name or source)
    weights_text = "preset weights" if load_weights else "random weights"
    return LoadedModel(
        model=model,
        source=source,
        description=f"{name} · {model.name} · keras-hub {what} · {weights_text}",
        random_weights=not load_weights,
        warnings=[located.note] if located is not None and located.note else [],
    )


def _architecture_error(
    arch: catalog.Architecture, weights: str | None, exc: Exception, options: LoadOptions
) -> LoadError:
    text = str(exc)
    lowered = text.lower()
    if weights == "imagenet" and (
        "url fetch failure" in lowered
        or "urlopen" in lowered
        or "name or service not known" in lowered
        or "timed out" in lowered
        or isinstance(exc, (OSError, socket.timeout))
    ):
        return LoadError(
            f"could not download the imagenet weights for {arch.name} (no network access?)",
            "pass --weights none for random weights, or --weights PATH for a weights file you have",
            kind="download",
        )
    if "input" in lowered and ("shape" in lowered or "size" in lowered):
        shape = options.input_shape or arch.default_input_shape
        return LoadError(
            f"{arch.name} cannot be built for input shape {shape}: {first_line(exc)}",
            f"pass --input-shape with a size {arch.name} accepts, or leave it out to use "
            f"{arch.default_size},{arch.default_size},3",
            kind="shape",
        )
    if weights not in (None, "imagenet"):
        return LoadError(
            f"the weights in {weights} do not fit {arch.name}: {first_line(exc)}",
            "pass weights saved from the same architecture, input shape and --include-top",
            kind="weights",
        )
    return LoadError(
        f"{arch.name} could not be built: {first_line(exc)}",
        "check --input-shape, --include-top and --weights",
        kind="build",
    )


def _load_file(path: Path, source: str, options: LoadOptions) -> LoadedModel:
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise LoadError(
                f"{source} is a TensorFlow SavedModel, which Keras 3 can only load for "
                "inference (keras.layers.TFSMLayer), not as a model whose layers can be frozen",
                "re-save it from the code that built it with model.save('model.keras') and "
                "open that file",
                kind="savedmodel",
            )
        raise LoadError(
            f"{source} is a directory, not a model file",
            "pass a .keras or .h5 file, or an architecture name such as resnet50",
            kind="directory",
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise LoadError(
            f"{source} cannot be read ({exc.strerror or exc})",
            "check its permissions",
            kind="unreadable",
        ) from exc
    if size == 0:
        raise LoadError(
            f"{source} is empty (0 bytes), so it holds no model",
            "save the model again with model.save(path)",
            kind="empty",
        )
    lowered = path.name.lower()
    if head.startswith(HDF5_MAGIC):
        config, version = _h5_config(path, source)
        load_progress.set_total(load_progress.top_level_count(config))
        named_h5 = lowered.endswith((".h5", ".hdf5"))
        if checks.h5_is_legacy(version, not named_h5):
            return _load_legacy(path, source, options, config, version, archive=False)
        return _deserialize(path, source, options, config, "h5")
    if head.startswith(ZIP_MAGIC) or zipfile.is_zipfile(path):
        config, metadata = _zip_config(path, source)
        load_progress.set_total(load_progress.top_level_count(config))
        if not lowered.endswith(".keras"):
            raise LoadError(
                f"{source} is a Keras archive but is not named .keras",
                "rename it to end in .keras",
                kind="format",
            )
        if checks.archive_is_legacy(config, metadata):
            version = str(metadata.get("keras_version") or "2")
            return _load_legacy(path, source, options, config, version, archive=True)
        return _deserialize(path, source, options, config, "keras")
    raise LoadError(
        f"{source} is not a Keras model: it is neither a .keras archive nor an HDF5 file",
        "pass a file written by model.save()",
        kind="format",
    )


def _zip_config(path: Path, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config and metadata of a ``.keras`` archive, once the archive has been checked
    for what could run code (nothing in it is deserialized before that)."""
    if not zipfile.is_zipfile(path):
        raise LoadError(
            f"{source} is a truncated or damaged .keras archive (its zip directory is missing)",
            "copy or save the model again; the file was probably cut short",
            kind="truncated",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            checks.check_archive(archive, source)
            names = set(archive.namelist())
            if "config.json" not in names:
                raise LoadError(
                    f"{source} is a zip archive without config.json, so not a Keras model",
                    "pass a file written by model.save('model.keras')",
                    kind="format",
                )
            config = json.loads(archive.read("config.json"))
            metadata = checks.read_archive_metadata(archive)
    except LoadError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise LoadError(
            f"{source} is a damaged .keras archive ({first_line(exc)})",
            "copy or save the model again",
            kind="truncated",
        ) from exc
    if not isinstance(config, dict):
        raise LoadError(
            f"{source} has a config.json that does not describe a model",
            "pass a file written by model.save('model.keras')",
            kind="format",
        )
    return config, metadata


def _h5_config(path: Path, source: str) -> tuple[dict[str, Any], str | None]:
    """The model config stored in an HDF5 file, and the Keras version that wrote it."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            version = handle.attrs.get("keras_version")
    except OSError as exc:
        raise LoadError(
            f"{source} is a truncated or damaged HDF5 file ({first_line(exc)})",
            "copy or save the model again",
            kind="truncated",
        ) from exc
    if raw is None:
        raise LoadError(
            f"{source} holds only weights, not a model architecture",
            "build the architecture in code and call model.load_weights() with it, or pass "
            "it with --weights to the architecture it belongs to",
            kind="weights-only",
        )
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise LoadError(
            f"{source} has a model description that is not valid JSON",
            "save the model again with model.save(path)",
            kind="format",
        ) from exc
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return (config if isinstance(config, dict) else {}), (str(version) if version else None)


def _import_custom_objects(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LoadError(
            f"the --custom-objects file {path} does not exist",
            "pass the Python file that defines your custom layers",
            kind="missing",
        )
    spec = importlib.util.spec_from_file_location(f"kfreeze_custom_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise LoadError(
            f"the --custom-objects file {path} is not an importable Python file",
            "pass a .py file that defines your custom layers",
            kind="custom",
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise LoadError(
            f"importing {path} failed with {type(exc).__name__}: {first_line(exc)}",
            "fix the error in that file and try again",
            kind="custom",
        ) from exc
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and not name.startswith("_")
    }


def _unknown_classes(
    config: dict[str, Any], fmt: str, custom: dict[str, Any], keras: ModuleType
) -> list[str]:
    registered = keras.saving.get_custom_objects()
    known_short = {key.split(">")[-1] for key in registered} | set(custom)
    unknown: list[str] = []
    for entry in layer_entries(config):
        name = str(entry.get("class_name"))
        if name in known_short or name in registered:
            continue
        if fmt == "keras":
            module = entry.get("module")
            if isinstance(module, str) and module.startswith("keras"):
                continue
            registered_name = entry.get("registered_name")
            if registered_name in registered:
                continue
        elif hasattr(keras.layers, name) or name in (*MODEL_CLASSES, *OP_LAYER_CLASSES):
            continue  # op layers are rebuilt as keras.ops (or refused by name) in legacy
        if name not in unknown:
            unknown.append(name)
    return unknown


def _unknown_model_class(
    config: dict[str, Any], custom: dict[str, Any], keras: ModuleType
) -> str | None:
    """The class of a Keras 3 file's model when it is neither Keras's own nor registered nor
    given by ``--custom-objects`` (a subclassed model whose code Keras needs)."""
    name = str(config.get("class_name"))
    module = config.get("module")
    if name in MODEL_CLASSES or name in custom:
        return None
    if isinstance(module, str) and (module == "keras" or module.startswith("keras.")):
        return None
    registered = keras.saving.get_custom_objects()
    if config.get("registered_name") in registered or name in registered:
        return None
    return name


def _lambda_warnings(config: dict[str, Any], source: str, options: LoadOptions) -> list[str]:
    """Refuse a Lambda layer unless ``--unsafe``; the warnings ``--unsafe`` brings."""
    has_lambda = any(entry.get("class_name") == "Lambda" for entry in layer_entries(config))
    if has_lambda and not options.unsafe:
        raise LoadError(
            f"{source} contains a Lambda layer, whose Python code would run on loading and "
            "could do anything, so kfreeze refuses it by default",
            "if you trust the file, pass --unsafe to allow it",
            kind="lambda",
        )
    if options.unsafe:
        return [
            "--unsafe: Python code stored in the model file may run; use it only on files you trust"
        ]
    return []


def custom_objects_for(options: LoadOptions) -> dict[str, Any]:
    """The classes ``--custom-objects`` defines, by name (empty without the option)."""
    if not options.custom_objects:
        return {}
    return _import_custom_objects(options.custom_objects.expanduser())


def _custom_class_error(source: str, unknown: list[str]) -> LoadError:
    return LoadError(
        f"{source} uses the custom layer class {', '.join(unknown)}, which kfreeze does not know",
        "pass --custom-objects FILE.py with a Python file that defines it (decorated "
        "with @keras.saving.register_keras_serializable())",
        kind="custom",
    )


def _load_legacy(
    path: Path,
    source: str,
    options: LoadOptions,
    config: dict[str, Any],
    version: str | None,
    *,
    archive: bool,
) -> LoadedModel:
    """A file from Keras 1/2 or tf.keras: checked, repaired, rebuilt and given its weights."""
    written_by = f"Keras {version}" if version else "an older Keras"
    checks.check_lambdas(config, source)
    warnings = _lambda_warnings(config, source, options)
    with _keras_environment(options) as keras:
        custom = custom_objects_for(options)
        try:
            checks.check_model_class(config, source, custom)
            checks.check_tf_ops(config, source)
            unknown = _unknown_classes(config, "h5", custom, keras)
            if unknown:
                raise _custom_class_error(source, unknown)
            repaired, repairs = upgrade.repair_config(config, keras, custom)
            if not archive and not path.name.lower().endswith((".h5", ".hdf5")):
                repairs.insert(
                    0,
                    Repair(
                        "hdf5_named_keras",
                        f"read an HDF5 file named {path.suffix or path.name} (tf.keras before 2.12 "
                        "wrote HDF5 into .keras files)",
                    ),
                )
            model = graph.build(repaired, keras, custom, options.unsafe, source)
            if archive:
                build_config = config.get("build_config")
                if not model.built and isinstance(build_config, dict):
                    graph.build_subclassed(model, build_config, keras)
                with zipfile.ZipFile(path) as handle:
                    repairs += load_archive_weights(model, handle, source)
            else:
                load_h5_weights(model, path, source)
            if any(repair.code == "hard_sigmoid" for repair in repairs):
                hard_sigmoid.keep_hard_sigmoid(model, keras, source)
        except LoadError:
            raise
        except Exception as exc:
            raise LoadError(
                f"{source} (written by {written_by}) could not be rebuilt in Keras 3: "
                f"{first_line(exc)}",
                "open it in the Keras that wrote it and save it again with model.save(); "
                "if it has custom layers, pass --custom-objects FILE.py",
                kind="legacy",
            ) from exc
    _check_is_model(model, source, keras)
    return LoadedModel(
        model=model,
        source=source,
        description=f"{path.name} · {model.name} · {written_by} file",
        warnings=warnings,
        repairs=repairs,
    )


def _check_is_model(model: Any, source: str, keras: ModuleType) -> None:
    if not isinstance(model, keras.Model):
        raise LoadError(
            f"{source} holds a {type(model).__name__}, not a Keras model",
            "pass a file written by model.save() on a keras.Model",
            kind="format",
        )


def _load_keras_file(
    keras: ModuleType,
    path: Path,
    custom: dict[str, Any],
    options: LoadOptions,
    warnings: list[str],
) -> Any:
    """``keras.saving.load_model``, compiled when asked; a file whose compile settings do
    not load (a custom loss, say) is loaded uncompiled, with a warning."""

    def load_model(compile: bool) -> Any:
        return keras.saving.load_model(
            str(path), custom_objects=custom or None, compile=compile, safe_mode=not options.unsafe
        )

    if not options.compile:
        return load_model(False)
    try:
        return load_model(True)
    except Exception as exc:
        model = load_model(False)  # raises if the model itself does not load
        warnings.append(
            f"the compile settings saved in {path.name} could not be restored "
            f"({first_line(exc)}): the model was read without its optimizer"
        )
        return model


def _deserialize(
    path: Path, source: str, options: LoadOptions, config: dict[str, Any], fmt: str
) -> LoadedModel:
    warnings = _lambda_warnings(config, source, options)
    with _keras_environment(options) as keras:
        if hub.uses_keras_hub(config):
            hub.require(source)  # registers keras-hub's classes, which Keras then finds
        custom = custom_objects_for(options)
        unknown = _unknown_classes(config, fmt, custom, keras)
        try:  # safe_mode is scoped to this call; nothing process-wide is switched off
            model = _load_keras_file(keras, path, custom, options, warnings)
        except Exception as exc:
            model_class = _unknown_model_class(config, custom, keras)
            if model_class:
                raise LoadError(
                    f"{source} is a model of the custom model class {model_class}, which "
                    "kfreeze does not know",
                    "pass --custom-objects FILE.py with a Python file that defines it "
                    "(decorated with @keras.saving.register_keras_serializable())",
                    kind="custom",
                ) from exc
            if unknown:
                raise _custom_class_error(source, unknown) from exc
            if "lambda" in str(exc).lower() and "safe_mode" in str(exc):
                raise LoadError(
                    f"{source} contains a Lambda layer that Keras refuses to load safely",
                    "if you trust the file, pass --unsafe to allow it",
                    kind="lambda",
                ) from exc
            raise LoadError(
                f"{source} could not be loaded by Keras: {first_line(exc)}",
                "check that it was saved by Keras 3 with model.save()",
                kind="keras",
            ) from exc
    _check_is_model(model, source, keras)
    return LoadedModel(
        model=model,
        source=source,
        description=f"{path.name} · {model.name}",
        warnings=warnings,
    )
