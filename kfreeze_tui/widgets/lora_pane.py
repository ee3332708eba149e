"""The LoRA section of the side pane: on or off, the rank, the targets, and what LoRA reaches.

The fields are edited with the keyboard alone, as the head pane's are: ``LoRA`` and
``targets`` cycle with left/right, the rank and the regex are typed. A field that does not
parse keeps the last good value and the pane says why in one sentence, as the head pane
does. Every change posts :class:`LoraPane.Changed`; the explorer turns it into the plan's
:class:`~kfreeze_tui.core.plan.lora.LoraSpec` (``L`` on a row toggles single layers).
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.plan import lora as lora_rules
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.lora import PRESETS, LoraSpec
from kfreeze_tui.core.wording import sentence
from kfreeze_tui.widgets.head_pane import CycleField
from kfreeze_tui.widgets.layer_table import NO_LORA
from kfreeze_tui.widgets.status_bar import TextPane

#: The targets field's choices: the presets, or the regex typed in the next field.
TARGET_CHOICES = (*PRESETS, "regex")


def _row(label: str, field: Widget, classes: str = "") -> Horizontal:
    return Horizontal(
        Label(label, classes="head-label"), field, classes=f"head-row {classes}".strip()
    )


def lora_shapes(kernel: tuple[int | None, ...], rank: int) -> tuple[str, str]:
    """The shapes of LoRA's A and B for a kernel, as text: ``(32, 2, 8)`` and ``(8, 16)``
    (Keras: A is ``kernel.shape[:-1] + (rank,)``, B ``(rank, kernel.shape[-1])``)."""

    def shape(dims: tuple[int | None, ...]) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"

    return shape((*kernel[:-1], rank)), shape((rank, kernel[-1]))


def lora_summary(view: PlanView, plan: FreezePlan) -> Text:
    """What LoRA reaches in the model and, with LoRA in the plan, what it adds.

    Args:
        view: the walked model's plan view.
        plan: the current plan.

    Returns:
        The coverage (share of parameters LoRA can reach), the layers with weights that
        cannot take LoRA, and with LoRA on: its layers, adapters, and the layers its targets
        name that are skipped.
    """
    text = Text()
    cover = view.coverage()
    text.append(
        f"LoRA can reach {cover.fraction:.1%} of the parameters "
        f"({cover.reachable:,} of {cover.total:,})\n"
    )
    cannot = sum(1 for row in view.leaves if row.trainable_size and not row.lora_supported)
    text.append(f"{cannot} layer{'s' if cannot != 1 else ''} with weights cannot take it")
    text.append(f" ({NO_LORA} in the tree)\n", style="dim")
    lora = plan.lora
    if lora is not None:
        layers = len(view.lora_positions(lora))
        text.append(f"on {layers} layer{'s' if layers != 1 else ''}", style="bold")
        text.append(f", rank {lora.rank}, adapters +{view.adapters(plan):,} params\n")
        try:
            skipped = len(lora_rules.unsupported(view.leaves, lora))
        except PlanError:
            skipped = 0
        if skipped:
            text.append(
                f"{skipped} layer{'s' if skipped != 1 else ''} the targets name cannot take "
                "LoRA: skipped\n",
                style="yellow",
            )
    text.append("L on a row or group: LoRA on/off there", style="dim")
    return text


class LoraPane(Vertical, can_focus=False):
    """The LoRA fields and what LoRA reaches in the model."""

    class Changed(Message):
        """LoRA was switched, or its rank or targets changed.

        Attributes:
            enabled: LoRA is on.
            rank: the rank (the last good one).
            targets: a preset or a regex (the last good one).
        """

        def __init__(self, enabled: bool, rank: int, targets: str) -> None:
            super().__init__()
            self.enabled = enabled
            self.rank = rank
            self.targets = targets

    def __init__(self, lora: LoraSpec | None, *, id: str) -> None:
        super().__init__(id=id)
        spec = lora or LoraSpec()
        self.enabled = lora is not None
        self.rank = spec.rank
        self.targets = spec.targets
        self._problems: dict[str, str] = {}
        self._view: PlanView | None = None
        self._plan: FreezePlan | None = None

    def on_mount(self) -> None:
        self.set_class(not self.enabled, "-off")

    def compose(self) -> ComposeResult:
        regex = "" if self.targets in PRESETS else self.targets
        choice = self.targets if self.targets in PRESETS else "regex"
        yield _row("LoRA", CycleField(("off", "on"), "on" if self.enabled else "off", id="lora-on"))
        yield _row("rank", Input(str(self.rank), id="lora-rank", compact=True), "lora-detail")
        targets = CycleField(TARGET_CHOICES, choice, id="lora-targets")
        targets.tooltip = Text(
            "attention: keras-hub's query and value layers; linear: Dense and EinsumDense; "
            "all: every layer that can take LoRA; regex: the next field"
        )
        yield _row("targets", targets, "lora-detail")
        yield _row(
            "regex",
            Input(
                regex, placeholder="over layer names, e.g. .*_dense", id="lora-regex", compact=True
            ),
            "lora-detail",
        )
        yield TextPane(id="lora-info")

    @property
    def problems(self) -> list[str]:
        """The fields' problems, one sentence each."""
        return list(self._problems.values())

    @on(CycleField.Changed)
    def _cycle_changed(self, event: CycleField.Changed) -> None:
        if event.field.id not in ("lora-on", "lora-targets"):
            return
        event.stop()
        if event.field.id == "lora-on":
            self.enabled = event.value == "on"
        else:
            self._set_targets(event.value, self.query_one("#lora-regex", Input).value.strip())
        self._changed()

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if event.input.id not in ("lora-rank", "lora-regex"):
            return
        event.stop()
        text = event.value.strip()
        if event.input.id == "lora-rank":
            try:
                self.rank = lora_rules.check_rank(int(text))
                self._problems.pop("rank", None)
            except (ValueError, PlanError):
                self._problems["rank"] = (
                    f"The LoRA rank must be a whole number of at least 1, not {text!r}."
                )
            event.input.set_class("rank" in self._problems, "-bad-value")
        else:
            choice = self.query_one("#lora-targets", CycleField).value
            if choice != "regex" and text:  # typing a regex picks it
                field = self.query_one("#lora-targets", CycleField)
                field.set_reactive(CycleField.value, "regex")
                field.refresh()
                choice = "regex"
            self._set_targets(choice, text)
        self._changed()

    def _set_targets(self, choice: str, regex: str) -> None:
        """Take the targets if they are usable; else keep the last good ones and say why."""
        field = self.query_one("#lora-regex", Input)
        self._problems.pop("targets", None)
        if choice != "regex":
            self.targets = choice
        elif not regex:
            self._problems["targets"] = (
                "Type a regular expression over layer names in the regex field, e.g. .*query.*"
            )
        else:
            try:
                lora_rules.target_pattern(regex)
            except PlanError as exc:
                self._problems["targets"] = sentence(str(exc))
            else:
                if self._view is not None and not any(
                    lora_rules.named_by(row, regex, lora_rules.target_pattern(regex))
                    for row in self._view.leaves
                ):
                    self._problems["targets"] = (
                        f"The regex {regex!r} matches no layer with weights: LoRA keeps "
                        f"the targets {self.targets}."
                    )
                else:
                    self.targets = regex
        field.set_class(choice == "regex" and "targets" in self._problems, "-bad-value")

    def _changed(self) -> None:
        self.post_message(self.Changed(self.enabled, self.rank, self.targets))

    def show(self, view: PlanView, plan: FreezePlan) -> None:
        """Show the plan's LoRA (``L`` may have switched it) and what it reaches."""
        self._view = view
        self._plan = plan
        enabled = plan.lora is not None
        self.set_class(not enabled, "-off")  # off: one line, the rest shows when on
        if enabled != self.enabled:
            self.enabled = enabled
            field = self.query_one("#lora-on", CycleField)
            field.set_reactive(CycleField.value, "on" if enabled else "off")
            field.refresh()
        text = Text()
        for problem in self.problems:
            text.append(f"✗ {problem}\n", style="bold red")
        if plan.lora is not None and not self._problems:
            try:
                lora_rules.check_targets(view.leaves, plan.lora, view.info.name)
            except PlanError as exc:
                text.append(f"✗ {sentence(str(exc))}\n", style="bold yellow")
        text.append_text(lora_summary(view, plan))
        self.query_one("#lora-info", TextPane).set_text(text)
