"""The status bar: live parameter counts, the boundary, the BatchNormalization policy, what
the export writes, and what a training step costs (and whether it fits the GPU)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.widget import Widget

from kfreeze_tui.core.plan.features import feature_cache
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.phases import Phase
from kfreeze_tui.core.runtime.gpus import Gpu
from kfreeze_tui.core.train.cost import DtypePolicy, TrainingSetup, brief, cost_model, human_bytes

#: The keys the status bar names, as shipped (the explorer passes the user's own).
DEFAULT_KEYS: Mapping[str, str] = {"export": "e", "bn_policy": "b"}


def status_text(
    view: PlanView,
    plan: FreezePlan,
    training: TrainingSetup | None = None,
    gpus: Sequence[Gpu] = (),
    *,
    phases: Sequence[Phase] = (),
    width: int | None = None,
    settings_at: str = "side pane",
    keys: Mapping[str, str] = DEFAULT_KEYS,
    head: HeadSpec | None = None,
) -> Text:
    """The status bar's text for a plan (pure, so the tests and the app share it).

    Args:
        view: the walked model's plan view.
        plan: the current plan.
        training: the batch size, optimizer and dtype the cost is for (None: no cost).
        gpus: the machine's GPUs, to say whether the plan fits.
        phases: the training phases; with phases the export builds phase 1, which the
            third line says.
        width: the columns the cost line has; it takes a shorter form rather than being
            cut (None: the longest form).
        keys: the user's keys of the actions the text names, by binding id (``export``,
            ``bn_policy``).
        settings_at: where the batch size and optimizer are set (``side pane``, or ``p``
            when the side pane is folded away).
        head: the new head (what a head-only plan caches; None: the default head).

    Returns:
        Three lines: the counts; the boundary and the cut it makes; what the export writes
        (with phases), the BatchNormalization policy and the exceptions; with ``training``,
        a fourth: what a step costs (and whether it fits the GPU).
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    _append_counts(text, view, plan, width)
    _append_boundary(text, view, plan, head, width)
    text.append("\n")
    text.append("  ·  ".join(_notes(view, plan, phases, keys)))
    if training is not None:
        text.append("\n")
        text.append_text(cost_line(view, plan, training, gpus, width, settings_at))
    return text


def _append_counts(text: Text, view: PlanView, plan: FreezePlan, width: int | None) -> None:
    """``trainable 2,257,984 || all 3,511,424 || 64.30 %  ·  frozen 1,253,440``, and with
    LoRA its layers, rank and adapters; in ``width`` columns, tighter rather than wrapped
    (narrower separators, then without the frozen count, which is all minus trainable)."""
    totals = view.totals(plan)
    lora = plan.lora
    lora_rest = ""
    if lora is not None:
        layers = len(view.lora_positions(lora))
        lora_rest = f" on {layers} layer{'s' if layers != 1 else ''} (+{view.adapters(plan):,})"
    forms = [("  ·  ", True), (" · ", True), (" · ", False)]
    for sep, frozen in forms:
        length = len(totals.headline)
        length += len(f"{sep}frozen {totals.non_trainable:,}") if frozen else 0
        length += len(f"{sep}LoRA r{lora.rank}{lora_rest}") if lora is not None else 0
        if width is None or length <= width:
            break
    text.append(totals.headline, style="bold")
    if frozen:
        text.append(f"{sep}frozen ")
        text.append(f"{totals.non_trainable:,}", style="bold cyan")
    if lora is not None:
        text.append(sep)
        text.append(f"LoRA r{lora.rank}", style="bold magenta")
        text.append(lora_rest)
    text.append("\n")


def _append_boundary(
    text: Text,
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec | None = None,
    width: int | None = None,
) -> None:
    """The boundary layer, the cut it makes (or that there is none) and whether the frozen
    part's output can be cached as features (the side pane says why not), in ``width``
    columns: the verdict takes a shorter form, or is left out, rather than wrapping."""
    line = Text()
    _boundary_line(line, view, plan)
    if line.plain.startswith("Boundary: none, every layer trains"):
        text.append_text(line)
        return
    cache = feature_cache(view, plan, head)
    style = "green" if cache.cacheable else "dim"
    for form in (cache.brief(), cache.brief(short=True)):
        if width is None or line.cell_len + 5 + len(form) <= width:
            line.append("  ·  ")
            line.append(form, style=style)
            break
    text.append_text(line)


def _boundary_line(text: Text, view: PlanView, plan: FreezePlan) -> None:
    layer = view.boundary_layer(plan)
    if layer is None:
        text.append("Boundary: none, every layer frozen")
    elif view.boundary_position(plan) == 0:
        frozen_bns = plan.bn_policy is BNPolicy.FROZEN and view.batch_norms_after_boundary(plan)
        text.append(
            "Boundary: none, every layer trains"
            + (" but BatchNormalization (kept frozen)" if frozen_bns else "")
        )
    else:
        text.append("Boundary ", style="bold")
        text.append(f"{layer.path_text} {layer.name}")
        cut = view.cut(plan)
        text.append("  ·  ")
        text.append(cut.brief(), style="green" if cut.clean else "yellow")


def _notes(
    view: PlanView, plan: FreezePlan, phases: Sequence[Phase], keys: Mapping[str, str]
) -> list[str]:
    """What the export writes (with phases), the BatchNormalization policy, the exceptions."""
    bns = view.batch_norms_after_boundary(plan)
    notes = []
    if phases:
        notes.append(
            f"{keys['export']} writes phase 1 of {len(phases)} ({phase_place(view, phases[0])})"
        )
    if bns:
        verb = "kept frozen" if plan.bn_policy is BNPolicy.FROZEN else "trained"
        notes.append(f"{bns} BatchNorm after it: {verb} ({keys['bn_policy']})")
    if plan.exceptions:
        notes.append(f"{len(plan.exceptions)} exception(s)")
    return notes


def phase_place(view: PlanView, phase: Phase) -> str:
    """``head only`` or ``from 143 conv5_block1_1_conv``: where a phase's training starts."""
    if phase.boundary is None:
        return "head only"
    layer = view.info.layer(phase.boundary)
    return f"from {layer.path_text} {layer.name}"


@dataclass(frozen=True)
class _CostParts:
    """The pieces of the cost line, each in a long and a short form."""

    step: tuple[str, str]
    optimizer: str
    verdict: tuple[str, str, str]
    fits: bool
    hint: str


def cost_line(
    view: PlanView,
    plan: FreezePlan,
    training: TrainingSetup,
    gpus: Sequence[Gpu] = (),
    width: int | None = None,
    settings_at: str = "side pane",
) -> Text:
    """What a training step of the plan costs, and whether it fits the first GPU.

    The line has forms from the longest to the shortest; the longest that fits ``width``
    is shown, so the GPU's verdict is never cut (at 80 columns: ``step 0.46x · 512 MiB at
    batch 32 (Adam) · fits GPU 0 (batch ≤ 1,234)``).
    """
    estimate = cost_model(view).estimate(plan, training)
    memory = human_bytes(estimate.memory.total)
    verdict = ("", "", "")
    fits = True
    for gpu in gpus[:1]:
        largest = estimate.largest_batch(gpu.free_bytes)
        fits = largest >= training.batch
        said = f" · {'fits' if fits else 'does NOT fit'} GPU {gpu.index}"
        verdict = (
            f"{said} ({human_bytes(gpu.free_bytes)} free; batch up to {largest:,})",
            f"{said} (batch ≤ {largest:,})",
            said,
        )
    parts = _CostParts(
        step=(
            brief(estimate, training),
            f"step {estimate.relative_step:.2f}x · {memory} at batch {training.batch}",
        ),
        optimizer=f" ({training.optimizer.label})"
        if training.dtype is DtypePolicy.FLOAT32
        else f" ({training.optimizer.label}, {training.dtype.value})",
        verdict=verdict,
        fits=fits,
        hint=f"  ·  batch, optimizer: {settings_at}",
    )
    # (step form, with optimizer, verdict form, with hint), longest first.
    forms = [
        (0, True, 0, True),
        (0, True, 0, False),
        (1, True, 0, True),
        (1, True, 0, False),
        (1, True, 1, False),
        (1, False, 1, False),
        (1, False, 2, False),
    ]
    for step, optimizer, said, hint in forms:
        line = _cost_text(parts, step, optimizer, said, hint)
        if width is None or line.cell_len <= width:
            return line
    return line


def _cost_text(parts: _CostParts, step: int, optimizer: bool, said: int, hint: bool) -> Text:
    text = Text()
    text.append(parts.step[step], style="bold")
    if optimizer:
        text.append(parts.optimizer)
    text.append(parts.verdict[said], style="green" if parts.fits else "bold red")
    if hint:
        text.append(parts.hint, style="dim")
    return text


class TextPane(Widget):
    """A fixed-size pane showing a Text; changing it repaints without a layout pass.

    ``Static.update`` asks for a new layout of the whole screen, which on every keypress
    costs more than everything else a keypress does; the panes here have a size set in the
    stylesheet, so a repaint is enough.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()
        self._fitted_lines = -1

    def set_text(self, text: Text, *, fit: bool = False) -> None:
        """Show ``text`` (one repaint, no layout).

        Args:
            text: what to show.
            fit: the pane's height is ``auto``: when the text wraps to more lines than
                any text before it, ask for a layout, so that its last lines are not cut off
                by the height of a shorter one. The pane only grows (up to its
                ``max-height``), so that moving the cursor costs a layout a few times per
                session, not on every key.
        """
        self._text = text
        if fit:
            width = self.content_size.width
            lines = len(text.wrap(self.app.console, width)) if width else 0
            if lines > self._fitted_lines:
                self._fitted_lines = lines
                self.refresh(layout=True)
                return
        self.refresh()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """As tall as the longest text shown so far (see :meth:`set_text`)."""
        return max(super().get_content_height(container, viewport, width), self._fitted_lines)

    @property
    def text(self) -> Text:
        """What the pane shows."""
        return self._text

    def render(self) -> Text:
        return self._text


_Shown = tuple[PlanView, FreezePlan, TrainingSetup | None, Sequence[Gpu]]


class StatusBar(TextPane):
    """Counts for the current plan, updated on every change, fitted to the bar's width."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: _Shown | None = None
        """What :meth:`show` was last given (refitted when the width changes)."""
        self._phases: Sequence[Phase] = ()
        self._settings_at = "side pane"
        self._keys: Mapping[str, str] = DEFAULT_KEYS
        self._head: HeadSpec | None = None

    def show(
        self,
        view: PlanView,
        plan: FreezePlan,
        training: TrainingSetup | None = None,
        gpus: Sequence[Gpu] = (),
        *,
        phases: Sequence[Phase] = (),
        settings_at: str = "side pane",
        keys: Mapping[str, str] = DEFAULT_KEYS,
        head: HeadSpec | None = None,
    ) -> None:
        """Render the counts and the cost of ``plan`` (see :func:`status_text`)."""
        self._shown = (view, plan, training, gpus)
        self._head = head
        self._phases = phases
        self._settings_at = settings_at
        self._keys = keys
        self._fit()

    def _fit(self) -> None:
        if self._shown is not None:
            view, plan, training, gpus = self._shown
            self.set_text(
                status_text(
                    view,
                    plan,
                    training,
                    gpus,
                    phases=self._phases,
                    width=self.size.width or None,
                    settings_at=self._settings_at,
                    keys=self._keys,
                    head=self._head,
                )
            )

    def on_resize(self, event: events.Resize) -> None:
        self._fit()
