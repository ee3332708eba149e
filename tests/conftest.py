"""Session-wide fixtures: real Keras models, each built once per test session.

Building ResNet50 costs about a second and importing Keras a few more, so every model the
tests share is built here once. Models are built with ``weights=None``: nothing can be
downloaded on the test machines.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from legacy.oracle import legacy_files  # noqa: F401  (a session fixture for every folder)

# Keep the test process as quiet and GPU-free as the app, and make sure no cached imagenet
# weights on a developer's machine change what the tests see.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
# The user's layer-table cache and keys must neither change what the tests see nor be
# changed by them: this process and every command it runs get folders of their own.
_HOME = tempfile.mkdtemp(prefix="kfreeze-tests-")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
# Nor the keras-hub presets in a developer's kagglehub or Hugging Face cache (the picker and
# `kfreeze models` list them): empty caches of the tests' own.
os.environ["KAGGLEHUB_CACHE"] = os.path.join(_HOME, "kagglehub")
os.environ["HF_HUB_CACHE"] = os.path.join(_HOME, "huggingface")
# A load that happens to run past the progress line's delay on a busy machine must not change
# what a test sees on stderr: progress shows only where a test asks for it (delay 0).
os.environ["KFREEZE_PROGRESS_DELAY"] = "600"


@pytest.fixture(scope="session")
def keras() -> Any:
    import sys

    from kfreeze_tui.core.runtime.process import RECURSION_LIMIT, import_keras

    keras = import_keras()
    # Tests build 3,000-layer models themselves, as a user's script would: kfreeze used as a
    # library raises the limit only while it works, so the tests raise it as that script does.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    return keras


@pytest.fixture(scope="session")
def resnet50(keras: Any) -> Any:
    """ResNet50 at 224 without top, random weights, loaded through kfreeze's own loader."""
    from kfreeze_tui.core.model.loading import LoadOptions, load

    return load("resnet50", LoadOptions(weights="none"))


@pytest.fixture(scope="session")
def resnet50_info(resnet50: Any) -> Any:
    from kfreeze_tui.core.model.layers import walk

    return walk(resnet50.model, resnet50.source, resnet50.description, resnet50.random_weights)


@pytest.fixture(scope="session")
def small_model(keras: Any) -> Any:
    """A small CNN with BatchNormalization, 3 resolutions and a classifier."""
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="block1_conv")(x)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="block2_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


@pytest.fixture(scope="session")
def small_model_file(small_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "small.keras"
    small_model.save(path)
    return path


@pytest.fixture(scope="session")
def wrapped_base(keras: Any) -> Any:
    """The everyday user model: Sequential([base, GlobalAveragePooling2D(), Dense(10)])."""
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
    return keras.Sequential(
        [
            keras.Input((224, 224, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="wrapped",
    )


@pytest.fixture(scope="session")
def multi_io_model(keras: Any) -> Any:
    """Two inputs, two outputs, and a nested model that itself has two outputs."""
    a = keras.Input((16, 16, 3), name="image")
    b = keras.Input((4,), name="meta")
    inner_in = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)
    inner = keras.Model(
        inner_in,
        [y, keras.layers.GlobalAveragePooling2D(name="inner_gap")(y)],
        name="two_headed",
    )
    fmap, pooled = inner(a)
    merged = keras.layers.Concatenate(name="merge")([pooled, b])
    out1 = keras.layers.Dense(3, name="class_out")(merged)
    out2 = keras.layers.Conv2D(1, 1, name="mask_out")(fmap)
    return keras.Model([a, b], [out1, out2], name="multi_io")


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., Any]:
    """Run ``kfreeze ARGS`` in this process, through ``kfreeze_tui.cli.run``; returns a
    CompletedProcess (``returncode``, ``stdout``, ``stderr``), as :func:`run_kfreeze` does.

    ``env`` holds for the one run (a value of None unsets the variable). Standard output and
    error are what the command wrote to ``sys.stdout`` and ``sys.stderr``; what reaches file
    descriptors 1 and 2 directly (the noise of TensorFlow's C++ code) is the business of the
    tests of the installed command, which run it in a process of its own.
    """
    import contextlib
    import io
    import subprocess

    from kfreeze_tui.cli import run as run_in_process

    def run(*args: str, env: dict[str, str | None] | None = None, timeout: float = 300) -> Any:
        stdout, stderr = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as patch:
            for name, value in (env or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = run_in_process(list(args))
        return subprocess.CompletedProcess(
            ["kfreeze", *args], code, stdout.getvalue(), stderr.getvalue()
        )

    return run


@pytest.fixture(scope="session")
def run_kfreeze() -> Callable[..., Any]:
    """Run the installed ``kfreeze`` command in a process of its own; returns the
    CompletedProcess. For what needs a real process: start-up, file descriptors, signals;
    everything else runs in this process, with :func:`run_cli`."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("kfreeze")

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
        command = [exe, *args] if exe else [sys.executable, "-m", "kfreeze_tui", *args]
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
        )

    return run


@pytest.fixture(scope="session")
def probe_layer(keras: Any) -> Any:
    """A layer that runs ``Probe.during(stage)`` while Keras loads it: when it is made from
    its config (``layers``), called on its input (``connecting``) and given its weights
    (``weights``). A test looks at the load in progress from inside it, at a known point,
    or holds the load there; ``during`` does nothing until a test sets it."""

    @keras.saving.register_keras_serializable(package="kfreeze_tests")
    class Probe(keras.layers.Layer):
        during: Callable[[str], None] = staticmethod(lambda _stage: None)

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            Probe.during("layers")
            return cls(**config)

        def call(self, x: Any) -> Any:
            Probe.during("connecting")
            return x

        def load_own_variables(self, store: Any) -> None:
            Probe.during("weights")
            super().load_own_variables(store)

    return Probe


@pytest.fixture(scope="session")
def probe_model_file(
    keras: Any, probe_layer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``probe.keras``: input, three Dense layers and the probe fourth of the five."""
    inputs = keras.Input((4,), name="features")
    x = keras.layers.Dense(4, name="d1")(inputs)
    x = keras.layers.Dense(4, name="d2")(x)
    x = probe_layer(name="probe")(x)
    outputs = keras.layers.Dense(2, name="d3")(x)
    path = tmp_path_factory.mktemp("probe") / "probe.keras"
    keras.Model(inputs, outputs, name="probed").save(path)
    return path
