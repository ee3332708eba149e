"""An open model: the Keras object, kept inside the core, and what the UI may ask of it.

The app holds a :class:`ModelSession` but never the Keras model itself: it reads the walked
:class:`ModelInfo` and asks for details through methods that return plain data.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfreeze_tui.core.errors import ExportError, LoadError
from kfreeze_tui.core.model import cache
from kfreeze_tui.core.model.layers import ModelInfo, walk
from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions
from kfreeze_tui.core.model.source import Source
from kfreeze_tui.core.model.source import resolve as resolve_source
from kfreeze_tui.core.plan.features import FeatureCache
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec, Phase
from kfreeze_tui.core.plan.planfile import PlanDocument
from kfreeze_tui.core.runtime.gpus import Gpu
from kfreeze_tui.core.train.build import layer_at
from kfreeze_tui.core.train.cost import TrainingSetup, model_dtype
from kfreeze_tui.core.train.export import ExportRequest, ExportResult, Progress


@dataclass(frozen=True)
class LayerDetail:
    """What the layer detail view shows beyond the row itself.

    Attributes:
        config: the layer's ``get_config()`` as indented JSON.
    """

    config: str


class StaleCacheError(LoadError):
    """The cached layer table no longer matches the model; the cache has been refreshed."""


class ModelSession:
    """A model's walk, and the Keras model itself once something needs it.

    Args:
        loaded: the loaded model (its ``model`` is None when the walk came from the cache).
        info: the walk, when it came from the cache; otherwise the model is walked here.
        reload: how to load the model when it is first needed (a session from the cache).
        cache_key: the cache entry the walk belongs to, rewritten if it turns out stale.
        load_options: how the model was loaded.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        info: ModelInfo | None = None,
        reload: Callable[[], LoadedModel] | None = None,
        cache_key: dict[str, Any] | None = None,
        load_options: LoadOptions | None = None,
    ) -> None:
        self._loaded = loaded
        self._reload = reload
        self._cache_key = cache_key
        self._model_lock = threading.Lock()
        self.from_cache = info is not None
        """The walk came from the layer-table cache (the model is loaded on demand)."""
        self.info: ModelInfo = info or walk(
            loaded.model, loaded.source, loaded.description, loaded.random_weights
        )
        self.view = PlanView(self.info)
        self.warnings = list(loaded.warnings)
        self.repairs = list(loaded.repairs)
        """What was changed to open a file from an older Keras (empty otherwise)."""
        self.architecture = loaded.architecture
        self._preset: FreezePlan | None = None
        self._plan: FreezePlan | None = None
        self._saved_plan: FreezePlan | None = None
        self.head = HeadSpec()
        self.compile_spec = CompileSpec()
        self.training = TrainingSetup(dtype=model_dtype(self.info)[0])
        """The batch size, optimizer and dtype policy the cost estimate is for (the dtype:
        the model's own policy)."""
        self._gpus: tuple[Gpu, ...] = ()
        self._phases: tuple[Phase, ...] = ()
        self._saved_phases: tuple[Phase, ...] = ()
        self._strategy: str | None = None
        self.load_options = load_options or LoadOptions()
        """How the model was loaded (what a plan file and a script repeat)."""

    # -- the plan and the head: owned here, changed through these methods ------------------

    @property
    def plan(self) -> FreezePlan:
        """The freeze plan being edited."""
        if self._plan is None:
            self._plan = self.initial_plan()
            self._saved_plan = self._plan
        return self._plan

    def set_plan(self, plan: FreezePlan) -> bool:
        """Change the plan; returns whether it changed."""
        changed = plan != self.plan
        self._plan = plan
        return changed

    def set_head(
        self, head: HeadSpec, compile_spec: CompileSpec, training: TrainingSetup | None = None
    ) -> None:
        """Change the head, how the new model is compiled and what training costs are for."""
        self.head = head
        self.compile_spec = compile_spec
        if training is not None:
            self.training = training

    @property
    def phases(self) -> tuple[Phase, ...]:
        """Staged training (empty: one phase, the plan); phase 1 is what the export writes."""
        return self._phases

    @property
    def strategy(self) -> str | None:
        """``mirrored`` or ``multiworker``: the script builds inside that distribution scope."""
        return self._strategy

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        """The machine's GPUs (from nvidia-smi), for "does the plan fit"."""
        return self._gpus

    def set_gpus(self, gpus: Sequence[Gpu]) -> None:
        """What nvidia-smi found (read off the UI thread; applied on it, through here)."""
        self._gpus = tuple(gpus)

    def set_training_plan(self, phases: Sequence[Phase], strategy: str | None = None) -> None:
        """How the new model trains: its phases (empty: one, the plan) and the distribution
        strategy its script builds under (None: none).

        Raises:
            PlanError: a phase's boundary is not a layer of this model, a phase trains no
                epoch, or the strategy is not one kfreeze writes.
        """
        from kfreeze_tui.core.errors import PlanError
        from kfreeze_tui.core.train.script import STRATEGIES

        if strategy is not None and strategy not in STRATEGIES:
            raise PlanError(
                f"the distribution strategy {strategy!r} is not one of {', '.join(STRATEGIES)}"
            )
        paths = {row.path for row in self.info.layers}
        for number, phase in enumerate(phases, start=1):
            if phase.epochs < 1:
                raise PlanError(f"phase {number}: a phase trains at least one epoch")
            if phase.boundary is not None and phase.boundary not in paths:
                raise PlanError(f"phase {number}: its boundary is not a layer of {self.source}")
        self._phases = tuple(phases)
        self._strategy = strategy

    def add_phase(self, phase: Phase) -> None:
        """Append a training phase."""
        self._phases = (*self._phases, phase)

    def remove_phase(self, index: int) -> None:
        """Drop the phase at ``index`` (0 is phase 1)."""
        self._phases = self._phases[:index] + self._phases[index + 1 :]

    def edit_phase(self, index: int, epochs: int, rate: float | tuple[float, float] | None) -> bool:
        """Change how long phase ``index`` (0 is phase 1) trains and at what learning rate.

        Args:
            index: the phase.
            epochs: its epochs (at least 1).
            rate: one learning rate, a ``(lo, hi)`` range over the stages (see
                :mod:`kfreeze_tui.core.plan.phases`), or None for the compile settings' rate.

        Returns:
            Whether the phase changed.

        Raises:
            PlanError: fewer than one epoch, a rate that is not positive, or a range that
                goes down.
        """
        from dataclasses import replace

        from kfreeze_tui.core.errors import PlanError

        if epochs < 1:
            raise PlanError(f"phase {index + 1}: a phase trains at least one epoch")
        rates = rate if isinstance(rate, tuple) else () if rate is None else (rate,)
        if any(not r > 0 for r in rates):
            raise PlanError(f"phase {index + 1}: learning rates must be positive")
        if isinstance(rate, tuple) and rate[0] > rate[1]:
            raise PlanError(f"phase {index + 1}: the range goes down; give it low..high")
        old = self.phases[index]
        new = replace(
            old,
            epochs=epochs,
            lr=None if isinstance(rate, tuple) else rate,
            lr_range=rate if isinstance(rate, tuple) else None,
        )
        self._phases = (*self._phases[:index], new, *self._phases[index + 1 :])
        return new != old

    def mark_exported(self, plan: FreezePlan) -> None:
        """``plan`` (and the phases) were exported: quitting no longer loses anything."""
        self._saved_plan = plan
        self._saved_phases = self.phases

    @property
    def dirty(self) -> bool:
        """The plan or the phases differ from those opened or last exported."""
        _ = self.plan
        return self._plan != self._saved_plan or self.phases != self._saved_phases

    def add_note(self, note: str) -> None:
        """Something the user should know about this model (the header shows it)."""
        self.warnings.append(note)

    def apply_document(self, doc: PlanDocument) -> list[str]:
        """Start from a plan file: its freeze plan, head and compile settings.

        Returns:
            Notes on how the plan's layers were matched (by name or by index).

        Raises:
            PlanError: when the plan does not fit this model.
        """
        from kfreeze_tui.core.plan.planfile import check_outputs, resolve, resolve_phases

        check_outputs(doc, self.info)
        plan, notes = resolve(doc, self.info)
        self._phases = self._saved_phases = resolve_phases(doc, self.info, notes)
        self._preset = plan
        self._plan = self._saved_plan = plan
        self.head = doc.head
        self.compile_spec = doc.compile
        return notes

    @property
    def random_weights(self) -> bool:
        """The weights are random (``--weights none`` or the offline fallback)."""
        return self._loaded.random_weights

    def initial_plan(self) -> FreezePlan:
        """A plan file's plan, or the plan matching the model's trainable state as loaded."""
        return self._preset or self.view.plan_from_model()

    def detail(self, path: tuple[int, ...]) -> LayerDetail:
        """The config of the layer at ``path`` (calls Keras: run it off the UI thread)."""
        layer = layer_at(self.model, path)
        try:
            config: Any = layer.get_config()
        except Exception as exc:  # a custom layer without get_config
            config = {"error": f"get_config() failed: {type(exc).__name__}: {exc}"}
        if isinstance(config, dict) and "layers" in config and len(config["layers"]) > 8:
            config = {**config, "layers": f"[{len(config['layers'])} layers: see the tree]"}
        return LayerDetail(config=json.dumps(config, indent=2, default=str, sort_keys=True))

    @property
    def model(self) -> Any:
        """The Keras model, for the core's builders (not for the UI).

        A session opened from the cache loads it here, the first time it is asked for
        (seconds: call it off the UI thread), and checks that its walk is the cached one.

        Raises:
            StaleCacheError: the model's layers differ from the cached table; the cache
                now holds the new table, and the model should be opened again.
            LoadError: the model cannot be loaded.
        """
        with self._model_lock:
            if self._loaded.model is None:
                if self._reload is None:
                    raise LoadError(f"{self.source} has no model to load", kind="internal")
                fresh = self._reload()
                info = walk(fresh.model, fresh.source, fresh.description, fresh.random_weights)
                if not cache.same_table(info, self.info):
                    cache.write(self._cache_key, info, fresh.warnings, fresh.repairs)
                    raise StaleCacheError(
                        f"the layer table kfreeze had cached for {self.source} no longer "
                        "matches the model",
                        "the cache now holds the new table: open the model again",
                        kind="stale-cache",
                    )
                self._loaded = fresh
            return self._loaded.model

    @property
    def model_loaded(self) -> bool:
        """Whether the Keras model is in memory (a cached session loads it on demand)."""
        return self._loaded.model is not None

    @property
    def source(self) -> str:
        """Where the model came from."""
        return self._loaded.source

    def export(
        self,
        load_options: LoadOptions,
        plan: FreezePlan,
        head: HeadSpec,
        compile_spec: CompileSpec,
        request: ExportRequest,
        progress: Progress | None = None,
        phase: int = 1,
    ) -> ExportResult:
        """Build the model of a whole plan and write it, verified, with plan and script.

        Args:
            phase: with phases, the one (from 1) the model file is set up and compiled for:
                its boundary and learning rates. The plan and the script stay as they are
                (phase 1 first; the script's train() runs them all).

        Raises:
            PlanError: the head does not fit, or a phase without LoRA follows one with it
                (nothing is written).
            ExportError: a target exists or writing failed (nothing half-written).
        """
        from dataclasses import replace

        from kfreeze_tui.core.plan.phases import check_phase_lora
        from kfreeze_tui.core.train.build import flags_restored
        from kfreeze_tui.core.train.export import check_request, export
        from kfreeze_tui.core.train.fit import phase_setup
        from kfreeze_tui.core.train.script import sublayer_flags

        check_request(request)
        # LoRA cannot come off a layer: no phase without it after one with it.
        check_phase_lora(plan.lora is not None, self.phases)
        if request.cache_features:
            self._cache_verdict(plan, head)  # refused before building
        if phase_setup(plan, self.phases, phase).plan.lora is not None:
            return self._export_lora(
                load_options, plan, head, compile_spec, request, progress, phase
            )
        # The phase written goes without LoRA (a head warm-up before it): a plain model
        # file, and the plan and the script keep the LoRA of the later phases.
        request = replace(request, adapters_path=None)
        report = progress or (lambda _text: None)
        report("Building the model")
        base = self.model
        # The new model shares the base's layers; their flags go back as they were after the
        # export, so the session's model keeps matching ``self.info``.
        # The model file is set up for ``phase``: so are the flags its loader sets again.
        flags = sublayer_flags(self.view, phase_setup(plan, self.phases, phase).plan)
        for number in range(1, len(self.phases) + 1):
            inside = sublayer_flags(self.view, phase_setup(plan, self.phases, number).plan)
            if inside:
                raise ExportError(
                    f"phase {number} freezes part of {next(iter(inside))}, which the script's "
                    "phases cannot set yet: put its boundary before or after that layer"
                )
        with flags_restored(base):
            model, first = self.build(plan, head, compile_spec, phase)
            plan_text, script_text = self._plan_and_script(
                load_options, replace(first, lora=plan.lora), head, compile_spec, request, base
            )
            return export(model, request, plan_text, script_text, progress, sublayer_flags=flags)

    def _export_lora(
        self,
        load_options: LoadOptions,
        plan: FreezePlan,
        head: HeadSpec,
        compile_spec: CompileSpec,
        request: ExportRequest,
        progress: Progress | None,
        phase: int,
    ) -> ExportResult:
        """The export of a plan with LoRA, built on copies of the session's model: Keras's
        ``enable_lora`` cannot be undone, and the session's model must stay as its walk says.
        Writes the adapters apart (see :mod:`kfreeze_tui.core.train.adapters`). With phases,
        the model is set up for ``phase`` (which has LoRA); the script rebuilds phase 1 and
        loads the adapters file only when it is phase 1's."""
        from dataclasses import replace

        from kfreeze_tui.core.train.adapters import adapters_path, copy_model
        from kfreeze_tui.core.train.export import check_request, export
        from kfreeze_tui.core.train.fit import build_for_phase, phase_setup

        if request.adapters_path is None:
            request = replace(request, adapters_path=adapters_path(request.model_path))
            check_request(request)
        report = progress or (lambda _text: None)
        report("Building the LoRA model on a copy of the model")
        phase_setup(plan, self.phases, phase)  # no such phase: refused before copying
        base = self.model

        def rebuild() -> Any:
            return build_for_phase(
                copy_model(base), self.view, plan, self.phases, head, compile_spec, phase
            )

        model = rebuild()
        # Phase 1's freeze, and the LoRA of every phase that has it (phase 1 may not).
        first = replace(phase_setup(plan, self.phases, 1).plan, lora=plan.lora)
        plan_text, script_text = self._plan_and_script(
            load_options, first, head, compile_spec, request, base, adapters=phase == 1
        )
        return export(model, request, plan_text, script_text, progress, rebuild=rebuild)

    def _plan_and_script(
        self,
        load_options: LoadOptions,
        plan: FreezePlan,
        head: HeadSpec,
        compile_spec: CompileSpec,
        request: ExportRequest,
        base: Any,
        adapters: bool = True,
    ) -> tuple[str, str]:
        """The plan file's TOML and the script's text for an export (``adapters`` False:
        the script does not load the adapters file, which is for another phase than its
        first)."""
        from kfreeze_tui.core.plan.planfile import document, to_toml
        from kfreeze_tui.core.train.build import uses_mixed_precision
        from kfreeze_tui.core.train.script import python_script

        cache = self._cache_verdict(plan, head) if request.cache_features else None
        plan_text = to_toml(
            document(self.source, load_options, self.view, plan, head, compile_spec, self.phases)
        )
        script_text = python_script(
            self.source,
            load_options,
            self.view,
            plan,
            head,
            compile_spec,
            mixed_precision=uses_mixed_precision(base),
            legacy=bool(self.repairs),
            phases=self.phases,
            strategy=self.strategy,
            module=request.script_path.stem if request.script_path else "finetune",
            script_dir=request.script_path.parent if request.script_path else None,
            adapters=request.adapters_path if adapters else None,
            cache=cache,
        )
        return plan_text, script_text

    def _cache_verdict(self, plan: FreezePlan, head: HeadSpec) -> FeatureCache:
        """Phase 1's feature cache verdict for ``--cache-features``.

        Raises:
            PlanError: the frozen part cannot be cached, in one sentence.
        """
        from kfreeze_tui.core.train.feature_script import checked_verdict
        from kfreeze_tui.core.train.fit import phase_setup

        first = phase_setup(plan, self.phases, 1).plan
        return checked_verdict(self.view, first, head, self.phases, self.strategy)

    def cache_refusal(self, plan: FreezePlan, head: HeadSpec) -> str | None:
        """Why the export of ``plan`` cannot offer cached features (one sentence), or None
        when it can (the export dialog shows the option, or this reason)."""
        from kfreeze_tui.core.errors import PlanError

        try:
            self._cache_verdict(plan, head)
        except PlanError as error:
            return error.message
        return None

    def build(
        self, plan: FreezePlan, head: HeadSpec, compile_spec: CompileSpec, phase: int = 1
    ) -> tuple[Any, FreezePlan]:
        """The new model of a plan (set up and compiled for ``phase`` when there are phases),
        and the plan a plan file and a script start from (phase 1's). The base's flags
        change in place: wrap the call in :func:`~kfreeze_tui.core.train.build.flags_restored`
        to keep the session's model as it was.

        Raises:
            PlanError: the head does not fit, or there is no such phase.
        """
        from kfreeze_tui.core.train.fit import build_for_phase, phase_setup

        phase_setup(plan, self.phases, phase)  # no such phase: refused before the model loads
        model = build_for_phase(self.model, self.view, plan, self.phases, head, compile_spec, phase)
        return model, phase_setup(plan, self.phases, 1).plan


def open_session(
    source: str | Source,
    options: LoadOptions,
    *,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ModelSession:
    """Open a catalog name or a model file: from the layer-table cache when it has it.

    On a hit nothing imports TensorFlow: the session holds the cached walk and loads the
    model when something needs it. On a miss the model is loaded and walked, and the walk is
    cached for next time.

    Args:
        source: a catalog name or a model file, as typed or already resolved (see
            :mod:`kfreeze_tui.core.model.source`).
        options: the load options.
        use_cache: read and write the cache (``--no-cache`` turns both off).
        progress: told each slow step, for a loading view.

    Raises:
        LoadError: the source cannot be opened (one sentence).
    """
    from kfreeze_tui.core.model.loading import load_with_fresh_names

    report = progress or (lambda _text: None)
    # Resolved once: the cache, the load and a later reload all read it the same way.
    named = source if isinstance(source, Source) else resolve_source(source)
    key = cache.key_for(named, options) if use_cache else None
    hit = cache.read_entry(key)
    if hit is not None:
        info, warnings, repairs = hit
        loaded = LoadedModel(
            model=None,
            source=named.text,
            description=info.description,
            random_weights=info.random_weights,
            architecture=named.architecture,
            warnings=list(warnings),
            repairs=list(repairs),
        )
        session = ModelSession(
            loaded,
            info,
            reload=lambda: load_with_fresh_names(named, options),
            cache_key=key,
            load_options=options,
        )
    else:
        loaded = _load_reporting(named, options, report)
        session = ModelSession(loaded, cache_key=key, load_options=options)
        cache.write(key, session.info, loaded.warnings, loaded.repairs)
    if named.note:  # said on every open, never cached: it is about the working folder
        session.add_note(named.note)
    return session


def _load_reporting(
    named: Source, options: LoadOptions, report: Callable[[str], None]
) -> LoadedModel:
    """Load the model, telling ``report`` each slow step (the import, the build or the
    load, the walk)."""
    from kfreeze_tui.core.model.loading import load_with_fresh_names
    from kfreeze_tui.core.runtime.process import RuntimeOptions, import_keras

    report("Importing TensorFlow and Keras")
    import_keras(RuntimeOptions(gpu=options.gpu))
    arch = named.architecture
    if arch is not None:
        shape = options.input_shape or arch.default_input_shape
        what = f"Building {arch.name} at {'x'.join(map(str, shape))}"
        if options.weights.lower() == "imagenet":
            what += " with imagenet weights"
        report(what)
    else:
        report(f"Loading {named.display_name}")
    loaded = load_with_fresh_names(named, options)
    report(f"Reading {len(loaded.model.layers)} layers")
    return loaded


def open_plan(
    path: Path,
    *,
    gpu: bool = False,
    random_weights: bool = False,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[ModelSession, list[str]]:
    """Open the model a plan file names, with the plan's freeze, head and compile settings.

    The one way a plan file is opened, by the explorer (``kfreeze PLAN.toml``) and by
    ``kfreeze apply``.

    Args:
        path: the ``.toml`` plan.
        gpu: let TensorFlow use the GPU.
        random_weights: build the architecture with random weights whatever the plan says
            (chosen after a failed imagenet download).
        use_cache: read and write the layer-table cache.
        progress: told each slow step.

    Returns:
        The session (its initial plan is the file's; the notes are among its warnings too)
        and notes on how the plan's layers were matched.

    Raises:
        LoadError: the plan cannot be read, its model cannot be opened, or the plan does not
            fit the model (one sentence each).
    """
    from dataclasses import replace

    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.plan import planfile

    (progress or (lambda _text: None))(f"Reading the plan {path.name}")
    try:
        document = planfile.read(path)
    except PlanError as exc:  # the message says what is wrong, with the key and its line
        raise LoadError(str(exc), "", "plan") from exc
    options = replace(document.load, gpu=gpu)
    if random_weights:
        options = replace(options, weights="none")
    try:
        session = open_session(document.source, options, use_cache=use_cache, progress=progress)
    except LoadError as exc:
        hint = _plan_hint(exc, path)
        if hint is None:
            raise
        raise LoadError(exc.message, hint, exc.kind) from exc
    try:
        notes = session.apply_document(document)
    except PlanError as exc:
        message = str(exc)
        raise LoadError(
            f"the plan {path.name} does not fit {document.source}: {message}",
            ""
            if message.endswith("?") or "not an output" in message  # it lists the outputs
            else "check the plan's boundary and exceptions against `kfreeze layers`",
            "plan",
        ) from exc
    session.warnings += notes  # the header shows how the plan's layers were matched
    return session, notes


def _plan_hint(error: LoadError, path: Path) -> str | None:
    """What to change in the plan file, for a load error whose hint names command-line
    options (``--weights none``) that a plan's model was not given by."""
    where = f"under [source] in {path.name}"
    if error.kind == "download":
        return (
            f'set weights = "none" {where} for random weights, or weights = "PATH" for a '
            "weights file you have"
        )
    if error.kind == "missing" and error.message.startswith("the weights file"):
        return f'set weights {where} to "imagenet", "none" or the path of a weights file'
    if error.kind == "weights":
        return f"set weights {where} to weights saved from the same architecture and input shape"
    if error.kind == "shape":
        return f"set input_shape {where} to a size the architecture accepts, or remove it"
    if error.kind == "build":
        return f"check input_shape, include_top and weights {where}"
    if error.kind == "lambda":
        return f"if you trust the file, set unsafe = true {where}"
    if "--custom-objects" in error.hint:
        return (
            f'set custom_objects = "FILE.py" {where}, a Python file that defines the custom classes'
        )
    return None
