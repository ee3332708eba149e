"""KFreezeApp: screens, the loading worker, the command palette and quitting.

The app starts drawing before TensorFlow is imported: opening a model runs in a thread
worker that imports Keras, builds or loads the model and walks it, reporting each step with
a message. The app keeps a :class:`ModelSession` (core), never a Keras object.
"""

from __future__ import annotations

import gc
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker

from kfreeze_tui.core.errors import LoadError, first_line
from kfreeze_tui.core.model.loading import LoadedModel, LoadOptions
from kfreeze_tui.core.session import ModelSession
from kfreeze_tui.keymap import Keymap, display_keys
from kfreeze_tui.screens.confirm import ConfirmScreen
from kfreeze_tui.screens.error import ErrorScreen
from kfreeze_tui.screens.explorer import ExplorerScreen
from kfreeze_tui.screens.help import HelpScreen
from kfreeze_tui.screens.loading import LoadingScreen
from kfreeze_tui.screens.picker import PickerScreen
from kfreeze_tui.widgets.layer_table import LayerTable
from kfreeze_tui.workers import ReportsWorkerFailures


class KFreezeApp(ReportsWorkerFailures, App[None]):
    """The kfreeze TUI."""

    CSS_PATH = Path(__file__).with_name("kfreeze.tcss")  # absolute: subclasses live elsewhere
    TITLE = "kfreeze"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]

    @dataclass
    class LoadProgress(Message):
        """A step of opening a model (only the latest matters)."""

        text: str

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, KFreezeApp.LoadProgress)

    @dataclass
    class ModelReady(Message):
        """The model is open and walked."""

        session: ModelSession

    @dataclass
    class LoadFailed(Message):
        """The model could not be opened."""

        source: str
        error: LoadError

    def __init__(
        self,
        source: str | None = None,
        options: LoadOptions | None = None,
        *,
        loaded: LoadedModel | None = None,
        root: Path | None = None,
        keymap: Keymap | None = None,
        use_cache: bool = True,
    ) -> None:
        super().__init__()
        self.use_cache = use_cache
        """Read and write the layer-table cache (``--no-cache`` turns it off)."""
        self.keymap: Keymap = keymap or {}
        """The user's keys by binding id (checked by :func:`kfreeze_tui.keymap.check`)."""
        self.set_keymap(self.keymap)
        self.source = source
        self.options = options or LoadOptions()
        self.preloaded = loaded
        self.root = root or Path.cwd()
        self.session: ModelSession | None = None
        self.random_weights_chosen = False
        self.pending_note: str | None = None
        """Said in the header of the next model opened (why it was opened again)."""
        self.crash_log: Path | None = None
        """Where the traceback of an unexpected error went (set by :func:`run_app`)."""

    def on_mount(self) -> None:
        if self.preloaded is not None:
            self.open_model(self.preloaded.source)
        elif self.source:
            self.open_model(self.source)
        else:
            self.action_open_picker()

    # -- opening models --------------------------------------------------------------------

    def open_model(self, source: str, options: LoadOptions | None = None) -> None:
        """Show the loading view and open ``source`` in a worker."""
        if options is not None:
            self.options = options
        self.source = source
        self.switch_to(LoadingScreen(source))
        self._open(source, self.options, self.preloaded, self.random_weights_chosen)

    def open_with_random_weights(self, source: str) -> None:
        """After a failed imagenet download: the same architecture with random weights."""
        self.random_weights_chosen = True
        self.open_model(source, replace(self.options, weights="none"))

    def switch_to(self, screen: Screen[None]) -> None:
        """Replace the whole screen stack with ``screen``."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(screen)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="load",
        description="opening the model",
    )
    def _open(
        self,
        source: str,
        options: LoadOptions,
        preloaded: LoadedModel | None,
        random_weights: bool,
    ) -> ModelSession:
        """Open ``source`` off the UI thread; :meth:`worker_done` shows the session it
        returns, :meth:`worker_failed` the error it raises (a LoadError: one sentence).

        Args:
            random_weights: chosen after a failed imagenet download (a plan's model is
                then built with random weights whatever the plan says).
        """
        from kfreeze_tui.core.model.source import SourceKind, resolve
        from kfreeze_tui.core.session import open_plan, open_session

        def progress(text: str) -> None:
            self.post_message(self.LoadProgress(text))

        if preloaded is not None:
            return ModelSession(preloaded, load_options=options)
        named = resolve(source)
        if named.kind is SourceKind.PLAN_FILE:
            session, _notes = open_plan(
                Path(source),
                gpu=options.gpu,
                random_weights=random_weights,
                use_cache=self.use_cache,
                progress=progress,
            )
            return session
        return open_session(named, options, use_cache=self.use_cache, progress=progress)

    def worker_done(self, worker: Worker[object]) -> None:
        if worker.group == "load" and isinstance(worker.result, ModelSession):
            self.post_message(self.ModelReady(worker.result))

    @on(LoadProgress)
    def _on_load_progress(self, message: LoadProgress) -> None:
        if isinstance(self.screen, LoadingScreen):
            self.screen.step(message.text)

    @on(ModelReady)
    def _on_model_ready(self, message: ModelReady) -> None:
        self.preloaded = None
        self.session = message.session
        self.options = message.session.load_options  # a plan file's own, once opened
        if self.pending_note:
            message.session.add_note(self.pending_note)
            self.pending_note = None
        # The model is hundreds of thousands of long-lived Python objects: take them out of
        # the garbage collector's scans so that a collection never stalls a keypress. A model
        # opened before goes back to the collector first, and everything does when the app
        # ends (on_unmount): the freeze lasts as long as the model is on screen.
        gc.unfreeze()
        gc.freeze()
        self.switch_to(ExplorerScreen(message.session))

    def worker_failed(self, worker: Worker[object], sentence: str) -> None:
        if worker.group == "load":  # the error screen, one sentence
            error = worker.error
            if isinstance(error, LoadError):
                self._on_load_failed(self.LoadFailed(self.source or "the model", error))
                return
            # A bug or an odd model.
            what = f"{type(error).__name__}: {first_line(error)}" if error else "an error"
            self._on_load_failed(
                self.LoadFailed(
                    self.source or "the model",
                    LoadError(
                        f"opening {self.source} failed with {what}",
                        "run `kfreeze layers` on it with KFREEZE_DEBUG=1 to see the traceback",
                        kind="internal",
                    ),
                )
            )

    def report_failure(self, worker: Worker[object], sentence: str) -> None:
        """A background task failed: say so, and reopen a model whose cache was stale."""
        from kfreeze_tui.core.session import StaleCacheError

        error = worker.error
        if worker.group == "load":
            return  # the error screen says it already
        self.notify(sentence, title="That did not work", severity="error", timeout=10, markup=False)
        if isinstance(error, StaleCacheError) and self.session is not None:
            self.pending_note = "the cached layer table was out of date: refreshed and reopened"
            self.open_model(self.session.source, self.options)

    def on_unmount(self) -> None:
        from kfreeze_tui.core.runtime import gpus

        # A hanging nvidia-smi must not hold the exit: the thread that waits for it is
        # joined when the app ends.
        gpus.stop_queries()
        gc.unfreeze()

    @on(LoadFailed)
    def _on_load_failed(self, message: LoadFailed) -> None:
        from kfreeze_tui.core.runtime.process import captured_log

        self.preloaded = None
        self.switch_to(ErrorScreen(message.source, message.error, captured_log()))

    def action_open_picker(self) -> None:
        """Show the picker (catalog and model files under the current folder)."""
        note = (
            "" if self.options.weights.lower() == "imagenet" else f"weights: {self.options.weights}"
        )
        self.switch_to(PickerScreen(self.root, note))

    # -- help, palette, quit ---------------------------------------------------------------

    def binding_groups(self) -> list[tuple[str, list[Binding]]]:
        """Every binding of the explorer and the tree, for the help screen and the palette."""

        def explicit(bindings: Iterable[BindingType]) -> list[Binding]:
            return [b for b in bindings if isinstance(b, Binding)]

        return [
            (
                "Freezing",
                [b for b in explicit(ExplorerScreen.BINDINGS) if b.action in PLAN_ACTIONS],
            ),
            ("Moving", explicit(LayerTable.BINDINGS)),
            (SIDE_PANE_GROUP, side_pane_bindings()),
            (
                "Other",
                [b for b in explicit(ExplorerScreen.BINDINGS) if b.action not in PLAN_ACTIONS]
                + [Binding("ctrl+p", "command_palette", "Command palette: every action by name")],
            ),
        ]

    def get_key_display(self, binding: Binding) -> str:
        """Keys as a user reads them, in the footer, the help and the palette alike:
        ``PgDn``, ``Esc``, ``Enter``, ``Ctrl+P`` (Textual's own hook for this)."""
        if binding.key_display:
            return binding.key_display
        key = binding.key
        if key in KEY_DISPLAY:
            return KEY_DISPLAY[key]
        if key.startswith("ctrl+") and len(key) == 6:
            return f"Ctrl+{key[-1].upper()}"
        return super().get_key_display(binding)

    def key_label(self, binding: Binding) -> str:
        """The keys of ``binding`` as the user has them: ``], n``."""
        return display_keys(binding, self.keymap, self.get_key_display)

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(self.binding_groups(), self.key_label))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        explorer = screen if isinstance(screen, ExplorerScreen) else None
        if explorer is None:
            return
        for title, bindings in self.binding_groups():
            if title == SIDE_PANE_GROUP:  # keys of a focused field, not actions to run
                continue
            for binding in bindings:
                if binding.action in ("command_palette",):
                    continue
                target = explorer.table if binding in LayerTable.BINDINGS else explorer
                yield SystemCommand(
                    f"{binding.description} ({self.key_label(binding)})",
                    f"{title}: {binding.description.lower()}",
                    _runner(target, binding.action),
                )

    async def action_request_quit(self) -> None:
        """Quit, asking first when the plan has changes that were not exported."""
        screen = self.screen
        if isinstance(screen, ExplorerScreen) and screen.dirty:

            def answered(yes: bool | None) -> None:
                if yes:
                    self.exit()

            self.push_screen(
                ConfirmScreen(
                    "Quit without exporting?",
                    "The freeze plan has changes that were not exported.",
                ),
                answered,
            )
            return
        self.exit()


KEY_DISPLAY = {
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "escape": "Esc",
    "tab": "Tab",
    "shift+tab": "Shift+Tab",
    "enter": "Enter",
    "home": "Home",
    "end": "End",
    "up": "↑",
    "down": "↓",
    "left": "←",
    "right": "→",
}

SIDE_PANE_GROUP = "Side pane"


def side_pane_bindings() -> list[Binding]:
    """The keys of the side pane's fields: moving between them, changing a choice, leaving."""
    from kfreeze_tui.widgets.head_pane import CycleField, HeadPane

    return [b for b in (*HeadPane.BINDINGS, *CycleField.BINDINGS) if isinstance(b, Binding)]


PLAN_ACTIONS = {"boundary", "exception", "lora", "bn_policy", "freeze_all", "unfreeze_all", "copy"}


def _runner(target: object, action: str) -> object:
    async def run() -> None:
        await target.run_action(action)  # type: ignore[attr-defined]

    return run


_TRACEBACK_LAST_LINE = re.compile(r"^(\w[\w.]*): (.+)$")


def run_app(app: KFreezeApp, *, headless: bool = False) -> int:
    """Run the app; an unexpected error ends it with one sentence, not a traceback.

    Textual prints what ends an app (a crash's traceback, with locals) through its public
    ``error_console``. kfreeze points that console at a buffer: a traceback goes to a file
    whose path the sentence gives (``KFREEZE_DEBUG=1`` prints it instead), anything else is
    printed as it is.

    Args:
        app: the app from :func:`make_app`.
        headless: run without a terminal (tests).

    Returns:
        The app's return code.
    """
    from rich.console import Console

    buffer = io.StringIO()
    app.error_console = Console(file=buffer, width=120, color_system=None, markup=False)
    app.run(headless=headless)
    printed = buffer.getvalue()
    if "Traceback" in printed and not os.environ.get("KFREEZE_DEBUG"):
        handle, name = tempfile.mkstemp(prefix="kfreeze-crash-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(printed)
        app.crash_log = Path(name)
        matches = [_TRACEBACK_LAST_LINE.match(line.strip()) for line in printed.splitlines()]
        found = [m for m in matches if m and not m.group(1).startswith(("File", "http"))]
        what = f"{found[-1].group(1)}: {found[-1].group(2)}" if found else "error"
        print(
            f"kfreeze: error: unexpected {what} (this is a bug in kfreeze; the traceback is "
            f"in {name}).",
            file=sys.stderr,
        )
    elif printed:
        sys.stderr.write(printed)
    return app.return_code or 0


def make_app(
    source: str | None = None,
    options: LoadOptions | None = None,
    *,
    loaded: LoadedModel | None = None,
    root: Path | None = None,
    keymap: Keymap | None = None,
    use_cache: bool = True,
) -> KFreezeApp:
    """The one factory for the app: used by the CLI, the tests and the screenshot script.

    Args:
        source: a catalog name or a model file; None opens the picker.
        options: load options.
        loaded: an already loaded model (tests and scripts), opened instead of ``source``.
        root: the folder the picker searches for model files (default: the current one).
        keymap: the user's keys by binding id, already checked (see :mod:`kfreeze_tui.keymap`).
        use_cache: open models through the layer-table cache.

    Returns:
        The app, not yet running.
    """
    return KFreezeApp(source, options, loaded=loaded, root=root, keymap=keymap, use_cache=use_cache)
