"""Key sequences that put the explorer in a known state, shared by the snapshot tests and the
README's screenshot script, so that the two always show the same thing.

Each scenario takes a running app's Pilot and returns once the screen shows its state.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from kfreeze_tui.screens.error import ErrorScreen
from kfreeze_tui.screens.explorer import ExplorerScreen
from kfreeze_tui.screens.picker import PickerScreen


async def until(pilot: Pilot, predicate: Callable[[], object], timeout: float = 60) -> None:
    """Wait (pumping the app) until ``predicate()`` holds."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise TimeoutError(f"timed out; screen is {type(pilot.app.screen).__name__}")


async def explorer(pilot: Pilot) -> ExplorerScreen:
    """The explorer, once the model is open."""
    await until(pilot, lambda: isinstance(pilot.app.screen, ExplorerScreen))
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ExplorerScreen)
    return screen


async def boundary_at_143(pilot: Pilot) -> None:
    """ResNet50: five stage jumps to conv5_block1_1_conv, and f."""
    await explorer(pilot)
    await pilot.press(*["right_square_bracket"] * 5, "f")
    await pilot.pause()


async def split_cut(pilot: Pilot) -> None:
    """ResNet50: the boundary inside the residual unit conv5_block1 (a warning shows)."""
    await boundary_at_143(pilot)
    await pilot.press("j", "j", "j", "f")  # conv5_block1_2_conv
    await pilot.pause()


async def filtered(pilot: Pilot) -> None:
    """The filter on the BatchNormalization layers of stage 5."""
    await boundary_at_143(pilot)
    await pilot.press("slash", *"conv5.*_bn$")
    await pilot.pause()


async def detail(pilot: Pilot) -> None:
    """The detail of conv5_block1_1_bn, its config read from Keras."""
    await boundary_at_143(pilot)
    await pilot.press("j", "enter")
    await until(pilot, lambda: getattr(pilot.app.screen, "config_shown", False), timeout=120)


async def head_pane(pilot: Pilot) -> None:
    """A head with a hidden layer of 256 and 5 classes."""
    await boundary_at_143(pilot)
    screen = pilot.app.screen
    screen.query_one("#head-hidden").focus()
    await pilot.press(*"256")
    screen.query_one("#head-classes").value = ""  # type: ignore[attr-defined]
    screen.query_one("#head-classes").focus()
    await pilot.press(*"5")
    await pilot.pause()


async def to_stage_4(pilot: Pilot) -> None:
    """Four stage jumps: the rows of a model's middle, to show the columns."""
    await explorer(pilot)
    for _ in range(4):
        await pilot.press("right_square_bracket")
    await pilot.pause()


async def picker(pilot: Pilot) -> None:
    """The picker, with its list filled."""
    await until(pilot, lambda: isinstance(pilot.app.screen, PickerScreen))
    await pilot.pause(0.5)


async def error(pilot: Pilot) -> None:
    """The error screen."""
    await until(pilot, lambda: isinstance(pilot.app.screen, ErrorScreen))


async def repairs(pilot: Pilot) -> None:
    """A file from an older Keras, and R: the repairs made to open it."""
    from kfreeze_tui.screens.repairs import RepairsScreen

    await explorer(pilot)
    await pilot.press("R")
    await until(pilot, lambda: isinstance(pilot.app.screen, RepairsScreen))


async def phases(pilot: Pilot) -> None:
    """Three phases: the head alone, from stage 5, from stage 4 (the cursor on stage 4)."""
    await boundary_at_143(pilot)
    await pilot.press("A", "a", "left_square_bracket", "a")
    await pilot.pause()


async def phases_dialog(pilot: Pilot) -> None:
    """The three phases of :func:`phases`, and E: their epochs and learning rates."""
    from kfreeze_tui.screens.phases import PhasesScreen

    await phases(pilot)
    await pilot.press("E")
    await until(pilot, lambda: isinstance(pilot.app.screen, PhasesScreen))


async def lora_bert(pilot: Pilot) -> None:
    """A BERT backbone: everything frozen (F), LoRA on the whole first transformer layer
    (L; the attention preset adds the query and value layers of the others), the cursor on
    the next layer's query."""
    await explorer(pilot)
    await pilot.press("F", "right_square_bracket", "L")
    await pilot.press("right_curly_bracket", "j", "j")
    pilot.app.clear_notifications()  # the toast would cover the status bar's headline
    await pilot.pause()
