"""Stages and blocks: how the rows of a container's layer list are grouped.

Pure functions over plain values (names, shapes, inbound counts), so they are cheap and can
be tested without Keras.

* A **stage** starts at a layer whose output is spatially smaller than every output before
  it in the same container (padding, which grows the map, starts none). ResNet50 at 224:
  stages start at indices 2 (112x112), 6 (56), 39 (28), 81 (14) and 143 (7).
* A **block** is a name prefix such as ``conv5_block1`` or ``block6a``. Layers whose names
  carry no block (Keras's automatic ``conv2d_12`` names) are grouped into runs that end at a
  merge layer (Add, Concatenate ...), named after it, which is how Inception's ``mixed``
  blocks come out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

Shape = tuple[int | None, ...]

_BLOCK_PATTERNS = (
    re.compile(r"^(.*block_?\d+[a-z]?)(?:_|$)"),
    re.compile(r"^(.*stage_?\d+)(?:_|$)"),
    re.compile(r"^(expanded_conv(?:_\d+)?)(?:_|$)"),
)
_NUMBERED_TOKEN = re.compile(r"^([a-z]+\d+)(?:_|$)")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])")


def spatial_size(shape: Shape | None) -> int | None:
    """Product of the spatial dims of a channels-last output, None if not spatial or unknown.

    Args:
        shape: an output shape including the batch dimension.

    Returns:
        ``H * W`` for ``(N, H, W, C)``, ``T`` for ``(N, T, C)``, None for ``(N, C)``.
    """
    if shape is None or len(shape) < 3:
        return None
    dims = shape[1:-1]
    if any(d is None for d in dims):
        return None
    return math.prod(d for d in dims if d is not None)


def stages(shapes: Sequence[Shape | None]) -> list[int]:
    """The stage number of each layer of one container, in ``.layers`` order.

    Args:
        shapes: the first output shape of each layer.

    Returns:
        One stage number per layer, starting at 0.
    """
    result: list[int] = []
    stage = 0
    smallest: int | None = None
    for shape in shapes:
        size = spatial_size(shape)
        if size is not None:
            if smallest is not None and size < smallest:
                stage += 1
            smallest = size if smallest is None else min(smallest, size)
        result.append(stage)
    return result


def snake_case(class_name: str) -> str:
    """Keras's automatic layer-name prefix for a class: ``Conv2D`` -> ``conv2d``."""
    return _CAMEL.sub("_", class_name).lower()


def name_block(name: str, class_name: str) -> str | None:
    """The block a layer's name puts it in, or None when the name carries none.

    Args:
        name: the layer's name.
        class_name: its class, to tell ``conv2d_5`` (automatic) from ``conv1_pad``.

    Returns:
        A block name such as ``conv5_block1``, ``block6a`` or ``conv1``.
    """
    lowered = name.lower()
    for pattern in _BLOCK_PATTERNS:
        match = pattern.match(lowered)
        if match:
            return name[: len(match.group(1))]
    match = _NUMBERED_TOKEN.match(lowered)
    if match:
        token = match.group(1)
        automatic = snake_case(class_name)
        if token != automatic and token != automatic.split("_")[0]:
            return name[: len(token)]
    return None


def blocks(
    names: Sequence[str],
    class_names: Sequence[str],
    inbound_counts: Sequence[int],
    stage_of: Sequence[int],
) -> list[str]:
    """The block of each layer of one container.

    Args:
        names: layer names in ``.layers`` order.
        class_names: their classes.
        inbound_counts: how many layers feed each (2 or more: a merge layer).
        stage_of: their stages (a run without a block never spans two stages).

    Returns:
        One block name per layer.
    """
    result: list[str] = [""] * len(names)
    known: list[str] = []
    pending: list[int] = []

    def close(block: str | None) -> None:
        if not pending:
            return
        label = block or names[pending[0]]
        for i in pending:
            result[i] = label
        pending.clear()

    for i, (name, class_name) in enumerate(zip(names, class_names, strict=True)):
        block = name_block(name, class_name)
        if block is None:
            tokens = set(name.lower().split("_"))
            block = next((b for b in reversed(known) if b.lower() in tokens), None)
        if pending and stage_of[pending[-1]] != stage_of[i]:
            close(None)
        if block is None:
            pending.append(i)
            if inbound_counts[i] >= 2:
                close(name)
            continue
        if pending:
            if inbound_counts[i] >= 2:
                pending.append(i)
                close(block)
                continue
            close(None)
        result[i] = block
        if not known or known[-1] != block:
            known.append(block)
    close(None)
    return result
