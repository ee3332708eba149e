"""The export dialog (returns a typed ExportRequest) and the export run with its result."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Static

from kfreeze_tui.core.runtime.leftovers import human_size
from kfreeze_tui.core.train.adapters import adapters_path
from kfreeze_tui.core.train.export import ExportRequest, ExportResult, existing_targets
from kfreeze_tui.screens.confirm import ConfirmScreen


def derived_paths(model_path: Path) -> tuple[Path, Path, Path]:
    """The plan, script and SavedModel paths that go with a model path."""
    stem = model_path.with_suffix("")
    return (
        stem.with_suffix(".toml"),
        stem.with_suffix(".py"),
        stem.with_name(stem.name + "_savedmodel"),
    )


class TickBox(Checkbox):
    """A checkbox whose box holds an X when checked and nothing when not: Textual's shows
    an X in both states, told apart by colour alone, which NO_COLOR takes away."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "X" if self.value else " "


class ExportScreen(ModalScreen[ExportRequest | None]):
    """Where to write, and what besides the model."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "export", "Export"),
    ]

    def __init__(
        self,
        default_path: Path,
        note: str = "",
        lora: bool = False,
        cache_refusal: str | None = "",
    ) -> None:
        """
        Args:
            default_path: the model file offered.
            note: what else the user should know about what is written (which phase).
            lora: the plan has LoRA: the adapters file is written beside the model file.
            cache_refusal: None: the plan's frozen part can be cached, and the dialog offers
                the script's cached features; otherwise why not (shown in one line).
        """
        super().__init__()
        self.default_path = default_path
        self.note = note
        self.lora = lora
        self.cache_refusal = cache_refusal

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box") as box:
            box.border_title = "Export"
            box.border_subtitle = "Enter: export · Esc: cancel"
            yield Static("Model file (.keras):")
            yield Input(str(self.default_path), id="export-path")
            yield TickBox("plan (.toml): kfreeze apply / kfreeze PLAN.toml", True, id="export-plan")
            yield TickBox(
                "Python script (.py): rebuilds it with Keras alone", True, id="export-script"
            )
            yield TickBox("inference SavedModel (model.export)", False, id="export-savedmodel")
            if self.cache_refusal is None:
                yield TickBox(
                    "cached features: the script's cache_features() and train(..., cache_dir=...)",
                    False,
                    id="export-cache",
                )
            elif self.cache_refusal:
                yield Static(Text(self.cache_refusal, style="dim"), id="export-cache-reason")
            if self.note:
                yield Static(Text(self.note, style="bold"), id="export-phases")
            yield Static(id="export-targets")
            yield Static("", id="export-problem")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()
        self._show_targets()

    def request(self, force: bool = False) -> ExportRequest:
        """The request the form describes."""
        text = self.query_one("#export-path", Input).value.strip() or str(self.default_path)
        model_path = Path(text).expanduser()
        if model_path.suffix != ".keras":
            model_path = model_path.with_name(model_path.name + ".keras")
        plan, script, savedmodel = derived_paths(model_path)
        return ExportRequest(
            model_path=model_path,
            plan_path=plan if self.query_one("#export-plan", Checkbox).value else None,
            script_path=script if self.query_one("#export-script", Checkbox).value else None,
            savedmodel_path=(
                savedmodel if self.query_one("#export-savedmodel", Checkbox).value else None
            ),
            force=force,
            adapters_path=adapters_path(model_path) if self.lora else None,
            cache_features=bool(
                self.cache_refusal is None
                and self.query_one("#export-cache", Checkbox).value
                and self.query_one("#export-script", Checkbox).value
            ),
        )

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _show_targets(self) -> None:
        request = self.request()
        existing = set(existing_targets(request))
        text = Text("Writes:\n", style="dim")
        for path in request.targets():
            text.append(f"  {path}")
            if path in existing:
                text.append("  (exists: will ask before replacing)", style="yellow")
            text.append("\n")
        self.query_one("#export-targets", Static).update(text)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_export()

    def action_export(self) -> None:
        request = self.request()
        problem = ""
        if not request.model_path.parent.is_dir():
            problem = f"The folder {request.model_path.parent} does not exist."
        if problem:
            self.query_one("#export-problem", Static).update(Text(problem, style="bold red"))
            return
        existing = existing_targets(request)
        if not existing:
            self.dismiss(request)
            return

        def answered(replace: bool | None) -> None:
            if replace:
                self.dismiss(self.request(force=True))

        names = ", ".join(path.name for path in existing)
        self.app.push_screen(
            ConfirmScreen(f"Replace {names}?", "They exist already and would be overwritten."),
            answered,
        )

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportRunScreen(ModalScreen[None]):
    """Progress of an export, then what it wrote and how it was verified."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[str] = []
        self.done = False

    def compose(self) -> ComposeResult:
        with Vertical(id="export-run") as box:
            box.border_title = "Exporting"
            yield Static("", id="export-steps")
            yield Static("", id="export-result")

    def step(self, text: str) -> None:
        """Show a step of the export."""
        self.steps.append(text)
        lines = [f"✓ {s}" for s in self.steps[:-1]] + [f"… {self.steps[-1]}"]
        self.query_one("#export-steps", Static).update(Text("\n".join(lines)))

    def finished(self, result: ExportResult) -> None:
        """Show the files written and the verification."""
        self.done = True
        self.query_one("#export-steps", Static).update(
            Text("\n".join(f"✓ {s}" for s in self.steps))
        )
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_column(justify="right")
        for written in result.files:
            table.add_row(Text(written.what), Text(str(written.path)), human_size(written.size))
        body = Text()
        verification = result.verification
        if verification is not None:
            body.append("\nVerified by loading it back: ", style="bold green")
            body.append(
                f"{verification.layers} layers, {verification.trainable_params:,} trainable, "
                f"{verification.non_trainable_params:,} non-trainable parameters.\n"
            )
            for check in verification.checks:
                body.append(f"  ✓ {check}\n")
        for text in result.notes:
            body.append(f"\n{text[:1].upper()}{text[1:]}.\n", style="bold")
        if result.removed:
            from kfreeze_tui.core.runtime.leftovers import describe

            line = describe(result.removed)
            body.append(f"\n{line[:1].upper()}{line[1:]}.\n")
        body.append("\nEnter or Esc to close.", style="dim")
        container = self.query_one("#export-result", Static)
        from rich.console import Group

        container.update(Group(table, body))
        self.query_one("#export-run").border_title = "Exported"

    def failed(self, message: str) -> None:
        """Show why the export failed (nothing half-written is left)."""
        self.done = True
        self.query_one("#export-result", Static).update(
            Text.assemble(
                ("Export failed: ", "bold red"),
                message,
                ("\nNo file was left half-written. Enter or Esc to close.", "dim"),
            )
        )
        self.query_one("#export-run").border_title = "Export failed"

    def action_close(self) -> None:
        if self.done:
            self.dismiss(None)
