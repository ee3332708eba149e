"""Layer names as users type them, including the names older Keras gave ResNet's layers.

Keras 2.1's ``ResNet50`` (and the Caffe ports of ResNet101/152 that tutorials still copy)
named layers after the original paper's scheme: ``res5a_branch2a`` is the first convolution
of the residual branch of block *a* of stage 5, ``bn4f_branch2c`` the batch normalization of
the third convolution of block *f* of stage 4, ``res2a_branch1`` the shortcut's convolution.
Today's Keras names the same layers ``conv5_block1_1_conv``, ``conv4_block6_3_bn`` and
``conv2_block1_0_conv``. The map below is derived from the two schemes, not listed by hand:
block letters count from *a* = 1 (Caffe's ResNet101/152 write ``res4b22`` for block 23),
``branch1`` is part 0 (the shortcut), ``branch2a/b/c`` are parts 1/2/3, ``res``/``bn``/``scale``
are ``conv``/``bn``/``bn``.
"""

from __future__ import annotations

import re

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo

_BRANCH = re.compile(r"^(res|bn|scale)([2-9])([a-z])(\d*)_branch(1|2[abc])$")
_UNIT = re.compile(r"^res([2-9])([a-z])(\d*)(_relu)?$")
_PARTS = {"1": 0, "2a": 1, "2b": 2, "2c": 3}
_KINDS = {"res": "conv", "bn": "bn", "scale": "bn"}
_STEM = {
    "conv1": "conv1_conv",
    "bn_conv1": "conv1_bn",
    "scale_conv1": "conv1_bn",
    "conv1_relu": "conv1_relu",
    "fc1000": "predictions",
}


def _block_number(letter: str, digits: str) -> int | None:
    if digits:  # Caffe's res4b1 .. res4b22: b<N> is block N + 1
        return int(digits) + 1 if letter == "b" else None
    return ord(letter) - ord("a") + 1


def keras2_resnet_name(name: str) -> str | None:
    """Today's Keras name of a layer given by its Keras 2 / Caffe ResNet name, or None.

    Args:
        name: a name such as ``res5a_branch2a``, ``bn4f_branch2c``, ``res3b_relu``.

    Returns:
        The modern name (``conv5_block1_1_conv``), or None when ``name`` is not an old one.
    """
    lowered = name.lower()
    if lowered in _STEM:
        return _STEM[lowered]
    match = _BRANCH.match(lowered)
    if match:
        kind, stage, letter, digits, branch = match.groups()
        block = _block_number(letter, digits)
        if block is None:
            return None
        return f"conv{stage}_block{block}_{_PARTS[branch]}_{_KINDS[kind]}"
    match = _UNIT.match(lowered)
    if match:
        stage, letter, digits, relu = match.groups()
        block = _block_number(letter, digits)
        if block is None:
            return None
        return f"conv{stage}_block{block}_{'out' if relu else 'add'}"
    return None


def find_layer(
    info: ModelInfo, name: str, *, top_level: bool = False
) -> tuple[LayerInfo | None, str | None]:
    """The layer called ``name``, accepting the key of an output a model returns in a dict
    (``pooled_output``) and the Keras 2 names of ResNet's layers.

    Args:
        info: the walked model.
        name: the name the user gave.
        top_level: only look at the root model's own layers.

    Returns:
        The layer (None if there is none) and, when a name was translated, a note saying
        so: ``res5a_branch2a is the Keras 2 name of conv5_block1_1_conv (index 143)``.
    """
    rows = info.top_level if top_level else info.layers
    exact = next((row for row in rows if row.name == name), None)
    if exact is not None:
        return exact, None
    maker = dict(info.output_keys).get(name)
    if maker is not None:
        row = next((row for row in rows if row.name == maker), None)
        if row is not None:
            return row, f"{name} is the model's output made by {maker} (index {row.path_text})"
    modern = keras2_resnet_name(name)
    if modern is None:
        return None, None
    row = next((row for row in rows if row.name == modern), None)
    if row is None:
        return None, None
    return row, f"{name} is the Keras 2 name of {modern} (index {row.path_text})"


def output_layer_name(info: ModelInfo, name: str) -> str:
    """The layer behind an output's key (``pooled_output`` -> ``pooled_dense`` on a
    keras-hub backbone), or ``name`` itself when it is no output key."""
    return dict(info.output_keys).get(name, name)


def modern_name(info: ModelInfo, name: str) -> str:
    """``name``, or the modern name it stands for on this model (for filters)."""
    row, note = find_layer(info, name)
    return row.name if row is not None and note else name


def _nested_ref(info: ModelInfo, text: str) -> LayerInfo | None:
    """The layer at ``mha/query``: each name after the first is one of the layer before's
    direct layers (sublayer names repeat in a transformer: ``query`` in every block)."""
    first, *rest = text.split("/")
    row, _ = find_layer(info, first)
    for name in rest:
        if row is None:
            return None
        row = next((child for child in info.children(row.path) if child.name == name), None)
    return row


def parse_layer_ref(info: ModelInfo, text: str, notes: list[str] | None = None) -> tuple[int, ...]:
    """A layer given as a name, an index (``143``), a path (``0.143``) or names joined by
    ``/`` down the tree (``transformer_layer_1/self_attention_layer/query``).

    Keras 2 names of ResNet's layers (``res5a_branch2a``) are accepted; a note saying
    which layer they stand for is appended to ``notes``.

    Raises:
        PlanError: when no layer matches, with the closest names.
    """
    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.wording import did_you_mean, with_suggestion

    stripped = text.strip()
    if stripped and all(part.isdigit() for part in stripped.split(".")):
        path = tuple(int(part) for part in stripped.split("."))
        try:
            return info.layer(path).path
        except KeyError:
            raise PlanError(
                f"the model has no layer at index {stripped} (it has {len(info.top_level)} "
                "layers at the top level)"
            ) from None
    if "/" in stripped and find_layer(info, stripped)[0] is None:
        nested = _nested_ref(info, stripped)
        if nested is not None:
            return nested.path
    row, note = find_layer(info, stripped)
    if note and notes is not None:
        notes.append(note)
    if row is None:
        raise PlanError(
            with_suggestion(
                f"the model has no layer named {stripped!r}",
                did_you_mean(stripped, [r.name for r in info.layers], n=3, quote=""),
                "; ",
            )
        )
    return row.path
