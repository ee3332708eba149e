"""The head pane: edits the HeadSpec and compile settings, and previews the result live.

Fields are edited with the keyboard alone: Tab moves between them, a choice field cycles
with left/right (or space), number fields are typed. Every change posts
:class:`HeadPane.Changed`; the preview (head layers, new totals, problems) is redrawn from
the core's pure functions, never by calling Keras.

The pane says what the head attaches to and what it replaces; on a model with several
outputs it has one field per output, ``head``, ``keep`` or ``drop``, and says which outputs
the new model drops.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Label

from kfreeze_tui.core.model.layers import format_shape
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import (
    HEAD_KINDS,
    HeadSpec,
    attachment,
    head_layers,
    new_totals,
    parse_hidden,
    placement,
    resolved_pooling,
    validate,
)
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.train.cost import Optimizer, TrainingSetup
from kfreeze_tui.widgets.status_bar import TextPane


class CycleField(Widget, can_focus=True):
    """A choice among a few values: left/right or space cycle through them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "left", "cycle(-1)", "Previous choice (◂ ▸ fields)", show=False, id="previous_choice"
        ),
        Binding(
            "right,space",
            "cycle(1)",
            "Next choice (◂ ▸ fields; on an output of the model: head, keep, drop)",
            show=False,
            id="next_choice",
        ),
    ]

    value: reactive[str] = reactive("")
    """The chosen value."""

    class Changed(Message):
        """The value changed."""

        def __init__(self, field: CycleField, value: str) -> None:
            super().__init__()
            self.field = field
            self.value = value

    def __init__(self, options: tuple[str, ...], value: str, *, id: str) -> None:
        super().__init__(id=id)
        self.options = options
        self.set_reactive(CycleField.value, value)

    def render(self) -> Text:
        return Text.assemble("◂ ", (self.value, "bold"), " ▸")

    def action_cycle(self, step: int) -> None:
        index = self.options.index(self.value) if self.value in self.options else 0
        self.value = self.options[(index + step) % len(self.options)]

    def watch_value(self, value: str) -> None:
        self.post_message(self.Changed(self, value))


def _row(label: str, field: Widget) -> Horizontal:
    return Horizontal(Label(label, classes="head-label"), field, classes="head-row")


#: What an output of the model becomes in the new model.
OUTPUT_ROLES = ("drop", "keep", "head")


class OutputField(CycleField):
    """What one output of the model becomes: the new head's place, kept, or dropped."""

    def __init__(self, output: str, value: str, *, id: str) -> None:
        super().__init__(OUTPUT_ROLES, value, id=id)
        self.output = output
        """The output's (layer's) name."""


class HeadPane(VerticalScroll, can_focus=False):
    """The head form and its live preview.

    The pane itself takes no focus (Tab from the tree lands on its first field, where the
    cursor shows); its keys are listed by the help screen.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "tab",
            "app.focus_next",
            "Next field (from the tree: the side pane's first)",
            show=False,
            id="next_field",
        ),
        Binding(
            "shift+tab", "app.focus_previous", "Previous field", show=False, id="previous_field"
        ),
        Binding("escape", "screen.leave_pane", "Back to the tree", show=False, id="leave_pane"),
    ]

    class Changed(Message):
        """The head or the compile settings changed."""

        def __init__(
            self, head: HeadSpec, compile_spec: CompileSpec, training: TrainingSetup
        ) -> None:
            super().__init__()
            self.head = head
            self.compile_spec = compile_spec
            self.training = training

    def __init__(
        self,
        head: HeadSpec,
        compile_spec: CompileSpec,
        training: TrainingSetup | None = None,
        *,
        outputs: tuple[str, ...] = (),
        default_output: str | None = None,
        id: str,
    ) -> None:
        """Args:
        outputs: the model's outputs, in order (a field each when there are several).
        default_output: the output the head replaces when ``head.replace`` is None.
        """
        super().__init__(id=id)
        self.head = head
        self.compile_spec = compile_spec
        self.training = training or TrainingSetup()
        self.outputs = outputs
        self.default_output = default_output
        self._input_problems: dict[str, str] = {}

    def _role(self, output: str) -> str:
        replaced = self.head.replace or self.default_output
        if output == replaced:
            return "head"
        return "keep" if output in self.head.keep else "drop"

    def compose(self) -> ComposeResult:
        head = self.head
        yield TextPane(id="head-feature")
        if len(self.outputs) > 1:
            for i, output in enumerate(self.outputs):
                field = OutputField(output, self._role(output), id=f"head-output-{i}")
                field.tooltip = Text(f"output {output}: the new head replaces it, or keep, or drop")
                yield Horizontal(
                    field,
                    Label(Text(output), classes="head-output-name"),
                    classes="head-output-row",
                )
        yield _row(
            "pooling",
            CycleField(
                ("auto", "avg", "max", "flatten", "none"), head.pooling or "auto", id="head-pooling"
            ),
        )
        kind = CycleField(HEAD_KINDS, head.kind, id="head-kind")
        kind.tooltip = Text("classifier: a new head; none: the model as it is, for your own head")
        yield _row("head", kind)
        hidden = ",".join(
            f"{d.units}" + (f":{d.activation}" if d.activation != "relu" else "")
            for d in head.hidden
        )
        yield _row(
            "hidden", Input(hidden, placeholder="e.g. 256,128", id="head-hidden", compact=True)
        )
        yield _row("dropout", Input(f"{head.dropout:g}", id="head-dropout", compact=True))
        yield _row("classes", Input(str(head.classes), id="head-classes", compact=True))
        yield _row(
            "output",
            CycleField(("softmax", "sigmoid", "linear"), head.activation, id="head-activation"),
        )
        yield _row(
            "compile",
            CycleField(
                ("yes", "no"), "yes" if self.compile_spec.enabled else "no", id="head-compile"
            ),
        )
        yield _row(
            "learn rate", Input(f"{self.compile_spec.learning_rate:g}", id="head-lr", compact=True)
        )
        yield _row(
            "labels", CycleField(("sparse", "onehot"), self.compile_spec.labels, id="head-labels")
        )
        yield _row("batch", Input(str(self.training.batch), id="head-batch", compact=True))
        yield _row(
            "optimizer",
            CycleField(
                tuple(o.value for o in Optimizer),
                self.training.optimizer.value,
                id="head-optimizer",
            ),
        )
        yield TextPane(id="head-preview")

    def set_feature_layer(self, name: str | None) -> None:
        """Attach the head to another layer (None: the default)."""
        self.head = self.head.with_feature_layer(name)
        self._changed()

    def _output_changed(self, output: str, role: str) -> None:
        """One output's field changed: exactly one output is the head's at any time."""
        replaced = self.head.replace or self.default_output
        keep = [name for name in self.head.keep if name != output]
        if role == "keep":
            keep.append(output)
        if role == "head":
            replaced = output
        elif output == replaced:  # the head moves on to the next output
            index = self.outputs.index(output)
            replaced = self.outputs[(index + 1) % len(self.outputs)]
            keep = [name for name in keep if name != replaced]
        if replaced != (self.head.replace or self.default_output):
            # Another output replaced: the head goes where that output's classifier was.
            self.head = replace(self.head, feature_layer=None)
        order = {name: i for i, name in enumerate(self.outputs)}
        keep.sort(key=lambda name: order.get(name, len(order)))
        self.head = replace(self.head, replace=replaced, keep=tuple(keep))
        for field in self.query(OutputField).results(OutputField):
            field.set_reactive(CycleField.value, self._role(field.output))
            field.refresh()

    @on(CycleField.Changed)
    def _cycle_changed(self, event: CycleField.Changed) -> None:
        event.stop()
        value = event.value
        field = event.field.id
        if isinstance(event.field, OutputField):
            self._output_changed(event.field.output, value)
        elif field == "head-pooling":
            self.head = replace(self.head, pooling=None if value == "auto" else value)
        elif field == "head-kind":
            self.head = replace(self.head, kind=value)
        elif field == "head-activation":
            self.head = replace(self.head, activation=value)
        elif field == "head-compile":
            self.compile_spec = replace(self.compile_spec, enabled=value == "yes")
        elif field == "head-labels":
            self.compile_spec = replace(self.compile_spec, labels=value)
        elif field == "head-optimizer":
            self.training = replace(self.training, optimizer=Optimizer(value))
        self._changed()

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if not (event.input.id or "").startswith("head-"):
            return
        event.stop()
        field, text = event.input.id, event.value.strip()
        problem = ""
        try:
            if field == "head-hidden":
                hidden = parse_hidden(text)
                if hidden is None:
                    problem = "Hidden layers are units separated by commas, e.g. 256,128."
                else:
                    self.head = replace(self.head, hidden=hidden)
            elif field == "head-dropout":
                self.head = replace(self.head, dropout=float(text or 0))
            elif field == "head-classes":
                self.head = replace(self.head, classes=int(text))
            elif field == "head-batch":
                batch = int(text)
                if batch < 1:
                    problem = "The batch size must be a positive whole number."
                else:
                    self.training = replace(self.training, batch=batch)
            elif field == "head-lr":
                rate = float(text)
                if rate <= 0:
                    problem = "The learning rate must be positive."
                else:
                    self.compile_spec = replace(self.compile_spec, learning_rate=rate)
        except ValueError:
            label = {
                "head-dropout": "Dropout",
                "head-classes": "Classes",
                "head-batch": "The batch size",
                "head-lr": "The learning rate",
            }[field or ""]
            problem = f"{label} must be a number, not {text!r}."
        if problem:
            self._input_problems[field or ""] = problem
        else:
            self._input_problems.pop(field or "", None)
        event.input.set_class(bool(problem), "-bad-value")
        self._changed()

    @property
    def input_problems(self) -> list[str]:
        """Fields whose text does not parse (the spec keeps its last good value)."""
        return list(self._input_problems.values())

    def _changed(self) -> None:
        self.post_message(self.Changed(self.head, self.compile_spec, self.training))

    def show_preview(self, view: PlanView, plan: FreezePlan) -> None:
        """Redraw the feature line and the preview for the current plan."""
        info = view.info
        if self.head.is_none:
            self._show_no_head(view, plan)
            return
        found = attachment(info, self.head)
        feature = Text()
        feature.append("New head", style="bold")
        feature.append(" on ")
        if found is None:
            feature.append(str(self.head.feature_layer or self.head.replace), style="bold red")
        else:
            feature.append(found.where, style="bold")
            feature.append(f" {format_shape(found.shape)}")
            if self.head.feature_layer is None:
                feature.append(" (default)", style="dim")
        where = placement(info, self.head)
        for line in where.lines()[1:] if where is not None else ():
            warn = line.startswith("drops")
            feature.append(f"\n{line}", style="bold yellow" if warn else "")
        feature.append("\nc on a row: attach there", style="dim")
        if len(self.outputs) > 1:
            feature.append("; ◂ ▸ on an output: head, keep or drop", style="dim")
        self.query_one("#head-feature", TextPane).set_text(feature)
        preview = Text()
        problems = self.input_problems + validate(info, self.head)
        if problems:
            for problem in problems:
                preview.append(f"✗ {problem}\n", style="bold red")
        else:
            pooling = resolved_pooling(info, self.head)
            preview.append(f"head ({pooling} pooling):\n", style="dim")
            for head_layer in head_layers(info, self.head):
                preview.append(
                    f" {head_layer.class_name} {format_shape(head_layer.output_shape)} "
                    f"{head_layer.params:,}\n"
                )
            totals = new_totals(view, plan, self.head)
            if totals is not None:
                preview.append("new model:\n", style="dim")
                preview.append(f" trainable {totals.trainable:,}\n", style="green")
                preview.append(f" frozen    {totals.non_trainable:,}\n", style="cyan")
                preview.append(f" total     {totals.total:,}\n")
        self.query_one("#head-preview", TextPane).set_text(preview)

    def _show_no_head(self, view: PlanView, plan: FreezePlan) -> None:
        """No head: the model is exported as it is, for the user's own task model."""
        feature = Text()
        feature.append("No head", style="bold")
        feature.append(": the model as it is, its outputs unchanged (for your own task model)")
        self.query_one("#head-feature", TextPane).set_text(feature)
        preview = Text()
        for problem in self.input_problems:
            preview.append(f"✗ {problem}\n", style="bold red")
        totals = view.totals(plan)
        preview.append("new model:\n", style="dim")
        preview.append(f" trainable {totals.trainable:,}\n", style="green")
        preview.append(f" frozen    {totals.non_trainable:,}\n", style="cyan")
        preview.append(f" total     {totals.total:,}\n")
        self.query_one("#head-preview", TextPane).set_text(preview)

    @property
    def valid(self) -> bool:
        """No field has a problem."""
        return not self._input_problems
