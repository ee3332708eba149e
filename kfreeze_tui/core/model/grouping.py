"""Stages and blocks: how the rows of a container's layer list are grouped.

Pure functions over plain values (names, classes, shapes and the graph as inbound
positions), so they are cheap and can be tested without Keras.

* A **block** is the span of one unit of the architecture: a residual, inception or MBConv
  unit, a NASNet cell. The graph finds the spans first: between two points where a single
  tensor is live (everything before could be cached as one feature map) lies one unit.
  Names then label them (``conv5_block1``, ``block6a``, ``mixed3``, ``cell_reduce_4``) and
  split the spans the graph cannot (NASNet's cells always keep two tensors live). Layers
  with Keras's automatic names (``conv2d_12``, ``re_lu_3``) join the unit around them.
  Every tensor counts as live on its own: each call of a shared layer, each output of a
  layer with several. Named parts that run side by side (``br0`` .. ``br199``) are one
  unit, named after their join; each model input is a block of its own.
* A **stage** begins where the *main path* is downsampled to about half or less (a strided
  convolution or a pooling). Side branches (squeeze-and-excite, gating: tensors that only
  reach the rest of the network through a broadcasting merge) never start one. The stage
  starts at the first layer (padding aside) of the block that downsamples, or of the next
  block when the downsampling is that block's last layer (VGG's ``blockN_pool``).
  ResNet50 at 224: stages start at indices 2 (112x112), 6 (56), 39 (28), 81 (14), 143 (7).
* Where names carry the architecture's own stage numbering (``convN_blockM``, ``blockNx``,
  ``stage_N``) and it agrees with the graph, stages are named by it (``conv5``, ``block6``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

Shape = tuple[int | None, ...]
#: A tensor a layer reads: the position of the layer that makes it (its first output), or
#: ``(position, k)`` for that layer's k-th other tensor (a later call, a later output).
Source = int | tuple[int, int]

#: A downsampling shrinks each spatial side to at most this fraction (149 -> 147 is none).
DOWNSAMPLE_RATIO = 0.6

PADDING_CLASSES = frozenset({"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"})
NORMALIZATION_CLASSES = frozenset(
    {
        "BatchNormalization",
        "SyncBatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
    }
)
#: Layers that prepare the input: a stage never starts on one.
PREPROCESSING_CLASSES = frozenset(
    {"InputLayer", "Rescaling", "Normalization", "Resizing", "CenterCrop"}
)

#: A transformer's repeated layers, as keras-hub names them: ``transformer_layer_0`` (BERT),
#: ``decoder_block_0`` (Gemma), ``transformer_block_1`` (ViT).
_TRANSFORMER_BLOCK = re.compile(
    r"^((?:.*_)?(?:transformer|decoder|encoder)_(?:layer|block)_\d+)(?:_|$)"
)
#: A layer holding a transformer's encoder whole (ViT's ``vit_encoder``).
_ENCODER = re.compile(r"(?:^|_)(?:encoder|decoder|transformer)$")

_BLOCK_PATTERNS = (
    _TRANSFORMER_BLOCK,
    # InceptionResNetV2's repeated units: block35_1, block17_20, block8_10.
    re.compile(r"^(block\d+_\d+)(?:_|$)"),
    re.compile(r"^(.*block_?\d+[a-z]?)(?:_|$)"),
    re.compile(r"^(.*stage_?\d+)(?:_|$)"),
    re.compile(r"^(expanded_conv(?:_\d+)?)(?:_|$)"),
    re.compile(r"^(mixed_?\d+[a-z]?)(?:_|$)"),
    # conv_7b, mixed_6a: a word, a number and a letter.
    re.compile(r"^([a-z]+_\d+[a-z])(?:_|$)"),
    re.compile(r"^(.*?stem)(?:_|$)"),
)
#: NASNet's cells end every name with the cell's id: ``normal_conv_1_12``, ``..._reduce_4``.
_CELL = re.compile(r"(?:^|_)(?:normal|reduction|adjust)_\w*?_((?:stem_|reduce_)?\d+)$")
#: MobileNet (v1): ``conv_dw_3``, ``conv_pw_3_bn``, ``conv_pad_4`` belong to unit 3 or 4.
_MOBILENET_UNIT = re.compile(r"^conv_(?:dw|pw|pad)_(\d+)(?:_|$)")
#: InceptionV3 names the inner concatenations of its modules mixed9 and mixed10
#: ``mixed9_<i>``: module ``9 + i``.
_INCEPTION_INNER = re.compile(r"^mixed(\d+)_(\d+)$")
_NUMBERED_TOKEN = re.compile(r"^([a-z]+\d+)(?:_|$)")
_CAMEL_WORD = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL_LOWER = re.compile(r"([a-z])([A-Z])")

#: The architectures' own stage numbering, tried in order: ``conv3_block1`` (ResNet,
#: DenseNet), ``block4a`` (EfficientNet), ``stage_2`` (ConvNeXt), ``block4_conv1`` (VGG).
_STAGE_NUMBERING = (
    re.compile(r"^(conv)(\d+)_"),
    re.compile(r"^(block)(\d+)[a-z]_"),
    re.compile(r"(?:^|_)(stage_?)(\d+)(?:_|$)"),
    re.compile(r"^(block)(\d+)_"),
)
#: A numbering that puts more numbers than this into one stage is not a stage numbering.
_MAX_NUMBERS_PER_STAGE = 2


def spatial_dims(shape: Shape | None) -> tuple[int, ...] | None:
    """The spatial dims of a channels-last output, None if not spatial or unknown."""
    if shape is None or len(shape) < 3:
        return None
    dims = shape[1:-1]
    if any(d is None for d in dims):
        return None
    return tuple(int(d) for d in dims if d is not None)


def spatial_size(shape: Shape | None) -> int | None:
    """Product of the spatial dims of a channels-last output, None if not spatial or unknown.

    Args:
        shape: an output shape including the batch dimension.

    Returns:
        ``H * W`` for ``(N, H, W, C)``, ``T`` for ``(N, T, C)``, None for ``(N, C)``.
    """
    dims = spatial_dims(shape)
    return None if dims is None else math.prod(dims)


def snake_case(class_name: str) -> str:
    """Keras's automatic layer-name prefix for a class: ``Conv2D`` -> ``conv2d``,
    ``ReLU`` -> ``re_lu`` (the same two substitutions as Keras's ``to_snake_case``)."""
    return _CAMEL_LOWER.sub(r"\1_\2", _CAMEL_WORD.sub(r"\1_\2", class_name)).lower()


def is_automatic_name(name: str, class_name: str) -> bool:
    """Whether ``name`` is one Keras made up (``conv2d_12``), not the architecture's."""
    return re.fullmatch(re.escape(snake_case(class_name)) + r"(?:_\d+)?", name.lower()) is not None


def name_block(name: str, class_name: str) -> str | None:
    """The block a layer's name puts it in, or None when the name carries none.

    Args:
        name: the layer's name.
        class_name: its class, to tell ``conv2d_5`` (automatic) from ``conv1_pad``.

    Returns:
        A block name such as ``conv5_block1``, ``block6a``, ``cell_3`` or ``conv1``.
    """
    lowered = name.lower()
    cell = _CELL.search(lowered)
    if cell:
        return f"cell_{cell.group(1)}"
    inner = _INCEPTION_INNER.match(lowered)
    if inner:
        return f"mixed{int(inner.group(1)) + int(inner.group(2))}"
    unit = _MOBILENET_UNIT.match(lowered)
    if unit:
        return f"block_{unit.group(1)}"
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


# -- the graph ---------------------------------------------------------------------------


def position_of(source: Source) -> int:
    """The position of the layer that makes a tensor."""
    return source if isinstance(source, int) else source[0]


def last_uses(inbound: Sequence[Sequence[Source]]) -> dict[Source, int]:
    """For each tensor read after the layer that makes it, the position of its last reader."""
    last: dict[Source, int] = {}
    for position, sources in enumerate(inbound):
        for source in sources:
            if 0 <= position_of(source) < position:
                last[source] = max(last.get(source, -1), position)
    return last


def live_after(inbound: Sequence[Sequence[Source]]) -> list[int]:
    """How many tensors are live between position ``i`` and ``i + 1``, for each ``i``.

    A tensor is live there when a layer at or before ``i`` made it and a later one reads it.
    Each tensor counts: a shared layer's two calls make two, a layer with two outputs two.
    """
    n = len(inbound)
    delta = [0] * (n + 1)
    for source, end in last_uses(inbound).items():
        delta[position_of(source)] += 1
        delta[end] -= 1
    live: list[int] = []
    running = 0
    for i in range(n):
        running += delta[i]
        live.append(running)
    return live


def segments(inbound: Sequence[Sequence[Source]]) -> list[tuple[int, int]]:
    """Spans ``[start, end]`` between the points where at most one tensor is live."""
    result: list[tuple[int, int]] = []
    start = 0
    for i, count in enumerate(live_after(inbound)):
        if count <= 1:
            result.append((start, i))
            start = i + 1
    if start < len(inbound):
        result.append((start, len(inbound) - 1))
    return result


def main_path(shapes: Sequence[Shape | None], inbound: Sequence[Sequence[int]]) -> list[bool]:
    """Whether each layer is on the main path, not a side branch.

    A layer is on a side branch when every way from it to the model's outputs goes through a
    merge where another input is spatially larger: squeeze-and-excite's 1x1 tensors scale a
    larger map and never carry the map forward themselves. (Inputs, not the merge's output,
    are compared: a layer's inbound looks through plain operations such as ``x + y``.)
    """
    n = len(shapes)
    consumers: list[list[int]] = [[] for _ in range(n)]
    for position, sources in enumerate(inbound):
        for source in sources:
            if 0 <= source < position:
                consumers[source].append(position)
    main = [False] * n
    for i in range(n - 1, -1, -1):
        if not consumers[i]:
            main[i] = True
            continue
        mine = spatial_size(shapes[i]) or 0
        for consumer in consumers[i]:
            if not main[consumer]:
                continue
            widest = max((spatial_size(shapes[s]) or 0) for s in inbound[consumer])
            if mine >= widest:
                main[i] = True
                break
    return main


# -- blocks ------------------------------------------------------------------------------


def _unit_kind(class_name: str, has_weights: bool) -> str:
    """How a layer without a block name joins its neighbours.

    ``"start"``: it begins a unit of its own (a convolution, a dense layer, a pooling);
    ``"next"``: it belongs with what follows (padding); ``"previous"``: with what precedes
    (normalization, activation, reshaping).
    """
    if class_name in PADDING_CLASSES:
        return "next"
    if class_name in NORMALIZATION_CLASSES:
        return "previous"
    if has_weights or ("Pooling" in class_name and "Global" not in class_name):
        return "start"
    return "previous"


def blocks(
    names: Sequence[str],
    class_names: Sequence[str],
    inbound: Sequence[Sequence[Source]],
    has_weights: Sequence[bool],
) -> list[str]:
    """The block of each layer of one container.

    Every model input is a block of its own: a second input is not part of the unit that
    happens to come before it in ``.layers``, nor of the unit that reads it. A unit whose
    named parts run side by side (branches ``br0`` .. ``br199`` joined by a concatenation)
    is one block, named after its last layer, the join.

    Args:
        names: layer names in ``.layers`` order.
        class_names: their classes.
        inbound: for each layer, the tensors it reads (see :data:`Source`; plain positions
            when every layer is called once and makes one tensor).
        has_weights: whether each layer holds weights.

    Returns:
        One block name per layer.
    """
    n = len(names)
    is_input = [cls == "InputLayer" for cls in class_names]
    named = _named_blocks(names, class_names, is_input)
    # None: not decided yet; "<" joins the block before it, ">" the block after it.
    result: list[str | None] = [None] * n
    for start, end in segments(inbound):
        span = range(start, end + 1)
        labels = [named[i] for i in span if named[i]]
        if end > start and labels:
            _label_by_names(result, names, named, inbound, start, end, labels)
        elif end > start:
            weighty = any(
                has_weights[i] and class_names[i] not in NORMALIZATION_CLASSES for i in span
            )
            # A span that takes in a model input begins a unit, as the model's first does.
            fresh = start == 0 or any(is_input[i] for i in span)
            label = names[end] if weighty or fresh else "<"
            for i in span:
                result[i] = label
        else:
            label = named[start]
            if label is None:
                kind = _unit_kind(class_names[start], has_weights[start])
                label = {"start": names[start], "next": ">", "previous": "<"}[kind]
            result[start] = label
    for i in range(n):
        if is_input[i]:
            result[i] = names[i]
    return _resolve_joins(result, names)


def _named_blocks(
    names: Sequence[str], class_names: Sequence[str], is_input: Sequence[bool]
) -> list[str | None]:
    """The block each layer's name says it is part of (None where it says none): its own
    name's, or that of a block before it which its name mentions."""
    named: list[str | None] = [
        None if is_input[i] else name_block(nm, cls)
        for i, (nm, cls) in enumerate(zip(names, class_names, strict=True))
    ]
    known: list[str] = []
    for i, block in enumerate(named):
        if block is None and not is_input[i]:
            # ``bn_Conv1`` and ``Conv1_relu`` mention the block ``Conv1`` before them.
            tokens = set(names[i].lower().split("_"))
            named[i] = next((b for b in reversed(known) if b.lower() in tokens), None)
        elif block is not None and (not known or known[-1] != block):
            known.append(block)
    return named


def _label_by_names(
    result: list[str | None],
    names: Sequence[str],
    named: Sequence[str | None],
    inbound: Sequence[Sequence[Source]],
    start: int,
    end: int,
    labels: list[str | None],
) -> None:
    """Label one graph span by the block names inside it.

    With one name, the span is that block. With several that follow one another (NASNet's
    cells, which the graph cannot separate: each reads the one before), each block ends at
    its last named layer and owns the layers up to it. With several side by side (parallel
    branches, where one does not read the other), the span is one unit, named after its
    last layer: where the branches join.
    """
    distinct = list(dict.fromkeys(labels))
    if len(distinct) == 1:
        for i in range(start, end + 1):
            result[i] = distinct[0]
        return
    ends = {label: i for i in range(start, end + 1) if (label := named[i])}
    order = [label for label, _ in sorted(ends.items(), key=lambda item: item[1])]
    if not _in_sequence(order, named, inbound, start, end):
        joined = named[end] or names[end]
        for i in range(start, end + 1):
            result[i] = joined
        return
    k = 0
    for i in range(start, end + 1):
        while k < len(order) - 1 and ends[order[k]] < i:
            k += 1
        result[i] = order[k]


def _in_sequence(
    order: Sequence[str],
    named: Sequence[str | None],
    inbound: Sequence[Sequence[Source]],
    start: int,
    end: int,
) -> bool:
    """Whether each named block of a span reads, directly or not, from the one before it."""
    reach: list[int] = []  # for each layer of the span, its ancestors in the span (bits)
    members: dict[str, int] = {}
    for i in range(start, end + 1):
        mask = 0
        for source in inbound[i]:
            p = position_of(source)
            if start <= p < i:
                mask |= reach[p - start] | (1 << (p - start))
        reach.append(mask)
        label = named[i]
        if label:
            members[label] = members.get(label, 0) | (1 << (i - start))
    for before, label in itertools.pairwise(order):
        readers = (reach[i - start] for i in range(start, end + 1) if named[i] == label)
        if not any(mask & members[before] for mask in readers):
            return False
    return True


def _resolve_joins(result: list[str | None], names: Sequence[str]) -> list[str]:
    n = len(result)
    resolved: list[str] = [""] * n
    following: str | None = None
    for i in range(n - 1, -1, -1):
        if result[i] not in (None, ">", "<"):
            following = result[i]
        if result[i] == ">":
            result[i] = following or "<"
    previous: str | None = None
    for i in range(n):
        label = result[i]
        if label in (None, "<"):
            label = previous or names[i]
        resolved[i] = label  # type: ignore[assignment]
        previous = label
    return resolved


# -- stages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stages:
    """The stages of one container.

    Attributes:
        of: the stage number of each layer, starting at 0.
        starts: the position where each stage after the first starts.
        names: a name for each stage: the architecture's own (``conv3``, ``block4-5``) or
            ``stage N``.
    """

    of: tuple[int, ...]
    starts: tuple[int, ...]
    names: tuple[str, ...]


def _is_downsampled(dims: tuple[int, ...], reference: tuple[int, ...]) -> bool:
    if len(dims) != len(reference):
        return False
    ratio = (math.prod(dims) / math.prod(reference)) ** (1 / len(dims))
    return ratio <= DOWNSAMPLE_RATIO


def downsamplings(shapes: Sequence[Shape | None], inbound: Sequence[Sequence[int]]) -> list[int]:
    """Positions of the main-path layers that shrink the feature map to about half or less."""
    main = main_path(shapes, inbound)
    events: list[int] = []
    reference: tuple[int, ...] | None = None
    for i, shape in enumerate(shapes):
        dims = spatial_dims(shape)
        if dims is None or not main[i] or not all(dims):
            continue
        if reference is None or len(dims) != len(reference):
            reference = dims
            continue
        if _is_downsampled(dims, reference):
            events.append(i)
            reference = dims
        elif math.prod(dims) < math.prod(reference):
            reference = dims  # a valid convolution's trim (149 -> 147) moves the reference
    return events


def stages(
    names: Sequence[str],
    class_names: Sequence[str],
    shapes: Sequence[Shape | None],
    inbound: Sequence[Sequence[int]],
    block_of: Sequence[str],
) -> Stages:
    """The stages of one container.

    Args:
        names: layer names in ``.layers`` order.
        class_names: their classes.
        shapes: the first output shape of each layer.
        inbound: for each layer, the positions of the layers that feed it.
        block_of: the block of each layer (see :func:`blocks`).

    Returns:
        Each layer's stage, the stage starts and the stage names.
    """
    n = len(names)
    run_start = [0] * n
    run_end = [0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and block_of[j + 1] == block_of[i]:
            j += 1
        for k in range(i, j + 1):
            run_start[k], run_end[k] = i, j
        i = j + 1

    def first_real(start: int, end: int) -> int:
        for k in range(start, end + 1):
            if class_names[k] not in PADDING_CLASSES | PREPROCESSING_CLASSES:
                return k
        return start

    starts: list[int] = []
    for event in downsamplings(shapes, inbound):
        lo, hi = run_start[event], run_end[event]
        start = first_real(lo, hi)
        if event > start and event == hi:
            if hi + 1 >= n:
                continue
            start = first_real(hi + 1, run_end[hi + 1])
        if start > 0 and (not starts or start > starts[-1]):
            starts.append(start)

    if not starts:
        transformer = _transformer_stages(names, class_names)
        if transformer is not None:
            return transformer
    of: list[int] = []
    stage = 0
    for position in range(n):
        while stage < len(starts) and starts[stage] <= position:
            stage += 1
        of.append(stage)
    real = [
        (nm, s) for nm, c, s in zip(names, class_names, of, strict=True) if c not in PADDING_CLASSES
    ]
    return Stages(tuple(of), tuple(starts), tuple(_stage_names(real, len(starts) + 1)))


def _stage_names(named_stages: Sequence[tuple[str, int]], count: int) -> list[str]:
    """Each stage's name: the architecture's numbering where it agrees with the graph.

    Args:
        named_stages: (layer name, stage) of the layers that count (padding left out: the
            stage starts after ``conv1_pad``, which still carries conv1's number).
        count: the number of stages.
    """
    generic = [f"stage {s}" for s in range(count)]
    for pattern in _STAGE_NUMBERING:
        numbers: list[dict[int, str]] = [{} for _ in range(count)]
        stage_of_number: dict[int, set[int]] = {}
        for name, stage in named_stages:
            match = pattern.search(name.lower())
            if match:
                number = int(match.group(2))
                numbers[stage][number] = match.group(1)
                stage_of_number.setdefault(number, set()).add(stage)
        if not stage_of_number:
            continue
        if (
            any(len(s) > 1 for s in stage_of_number.values())
            or any(len(found) > _MAX_NUMBERS_PER_STAGE for found in numbers)
            or 2 * sum(1 for found in numbers if found) < count
        ):
            return generic
        named = list(generic)
        for stage, found in enumerate(numbers):
            if found:
                prefix = next(iter(found.values()))
                low, high = min(found), max(found)
                named[stage] = f"{prefix}{low}" + (f"-{high}" if high != low else "")
        return named
    return generic


def _transformer_stages(names: Sequence[str], class_names: Sequence[str]) -> Stages | None:
    """A transformer's stages: ``embeddings`` (what comes before the first transformer block),
    ``encoder`` (the blocks, or the one layer holding them all) and, after them, ``pooling``
    (BERT's ``pooled_dense``) or ``output`` (Gemma's final normalization). None when no
    layer is named as a transformer block or an encoder (every keras.applications model).
    """
    parts = [
        i
        for i, name in enumerate(names)
        if _TRANSFORMER_BLOCK.match(name.lower()) or _ENCODER.search(name.lower())
    ]
    if not parts:
        return None
    first, last = parts[0], parts[-1]
    starts: list[int] = []
    stage_names: list[str] = []
    if any(c not in PREPROCESSING_CLASSES for c in class_names[:first]):
        stage_names.append("embeddings")
        starts.append(first)
    stage_names.append("encoder")
    after = [i for i in range(last + 1, len(names)) if class_names[i] != "InputLayer"]
    if after:
        starts.append(after[0])
        pooled = any("pool" in names[i].lower() for i in after)
        stage_names.append("pooling" if pooled else "output")
    of: list[int] = []
    stage = 0
    for position in range(len(names)):
        while stage < len(starts) and starts[stage] <= position:
            stage += 1
        of.append(stage)
    return Stages(tuple(of), tuple(starts), tuple(stage_names))
