"""What a plan costs to train: multiply-adds, step FLOPs and training memory, from the walk.

Pure arithmetic on the walked model (:class:`~kfreeze_tui.core.model.layers.ModelInfo`): no
TensorFlow, nothing at keypress time but a few lookups in prefix sums built once per model.

Per layer and call (per example):

- **multiply-adds** (MACs) of convolutions (plain, grouped, depthwise, separable, transposed),
  dense and einsum-dense layers and attention: the number of output positions times the
  kernel's size (a transposed convolution: input positions), which is the usual count behind
  published figures (ResNet50 about 3.9 G at 224x224);
- **recurrent layers** (LSTM, GRU, SimpleRNN, ConvLSTM, any cell with a ``recurrent_kernel``,
  each direction of a Bidirectional) per time step: the input kernel and the recurrent
  kernel applied once each, so ``4 (i u + u^2)`` for an LSTM (Hochreiter & Schmidhuber
  1997, in the form of Sak et al. 2014), ``3 (i u + u^2)`` for a GRU (Cho et al. 2014; the
  same with ``reset_after``, which only adds a recurrent bias) and ``i u + u^2`` for a
  SimpleRNN, times the steps of the call's input (``return_sequences`` changes nothing);
  ConvLSTM: both convolutions at every output position of a step. An Embedding is a lookup;
- **elementwise** operations: one per output element for normalization, activations,
  pooling, merges and the like (they matter for memory traffic more than for arithmetic);
  a recurrent cell: four per gate value and step (the bias, the sum of its two products, the
  activation and the state update);
- **output elements**: what the layer writes, kept for the backward pass when it is in the
  part of the model that backpropagates (a recurrent layer also keeps its gates at every
  step, for backpropagation through time).

A layer called several times (a Dense shared by two inputs, a siamese encoder) costs once per
call, each call with its own shapes; the layers of a nested model run once per call of the
model that holds them.

For a plan at batch B, with an optimizer and a dtype policy:

- weights: every parameter, 4 bytes (variables stay float32 under mixed precision);
- gradients: the trainable parameters, 4 bytes each;
- optimizer state: slots (Adam/AdamW 2, SGD with momentum 1, SGD 0) x the trainable
  parameters x 4 bytes;
- activations: from the first layer that trains to the end, each output x B x the compute
  dtype's bytes (4 in float32, 2 under mixed precision), plus the tensors that cross into that
  part; the frozen prefix keeps nothing once its output has been handed on;
- step FLOPs: forward = B x (2 x MACs + elementwise) over every layer; backward = for every
  layer from the first that trains to the end, the gradient with respect to its input (its
  forward cost again), plus for the layers that train, the gradient with respect to their
  weights (2 x MACs). ``relative_step`` divides by the same with everything trainable.

With LoRA (:mod:`kfreeze_tui.core.plan.lora`): the weights grow by the adapters (A and B);
gradients and optimizer slots count the adapters and the LoRA layers' biases, not their
kernels; activations are kept from the first layer that trains *or takes LoRA* on (the input
gradient must flow back to it); a LoRA layer's weight gradient costs its MACs scaled by adapter
over kernel size instead of its full MACs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from itertools import accumulate, pairwise
from typing import Any

from kfreeze_tui.core.model.layers import LayerInfo, ModelInfo, call_label
from kfreeze_tui.core.plan import lora as lora_rules
from kfreeze_tui.core.plan.features import feature_cache
from kfreeze_tui.core.plan.freeze import BNPolicy, FreezePlan, Path, PlanView
from kfreeze_tui.core.plan.head import HeadSpec
from kfreeze_tui.core.plan.lora import LoraSpec
from kfreeze_tui.core.wording import human_bytes

#: Bytes of a variable, gradient or optimizer slot (float32, also under mixed precision).
VARIABLE_BYTES = 4


class Optimizer(str, Enum):
    """Optimizers by how many slots per trainable parameter they keep."""

    ADAM = "adam"
    ADAMW = "adamw"
    SGDM = "sgdm"
    SGD = "sgd"

    @property
    def slots(self) -> int:
        return {"adam": 2, "adamw": 2, "sgdm": 1, "sgd": 0}[self.value]

    @property
    def label(self) -> str:
        return {"adam": "Adam", "adamw": "AdamW", "sgdm": "SGD+momentum", "sgd": "SGD"}[self.value]


class DtypePolicy(str, Enum):
    """Keras dtype policies, by the bytes of an activation."""

    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"

    @property
    def activation_bytes(self) -> int:
        return 4 if self is DtypePolicy.FLOAT32 else 2


def model_dtype(info: ModelInfo) -> tuple[DtypePolicy, str]:
    """The dtype policy to price a model with when none is asked for: the model's own.

    Returns:
        The policy and why it is used, as the output says it (``the model's policy``).
    """
    try:
        return DtypePolicy(info.dtype_policy), "the model's policy"
    except ValueError:
        return DtypePolicy.FLOAT32, f"the model's policy {info.dtype_policy} is priced as float32"


@dataclass(frozen=True)
class TrainingSetup:
    """What the estimate is for: batch size, optimizer, dtype policy."""

    batch: int = 32
    optimizer: Optimizer = Optimizer.ADAM
    dtype: DtypePolicy = DtypePolicy.FLOAT32


@dataclass(frozen=True)
class Memory:
    """Training memory in bytes, by what holds it."""

    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def to_json(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "total": self.total,
        }


@dataclass(frozen=True)
class Estimate:
    """What one plan costs per training step."""

    trainable_params: int
    memory: Memory
    forward_flops: int
    backward_flops: int
    relative_step: float
    fixed_bytes: int
    """Memory that does not grow with the batch (weights, gradients, optimizer state)."""
    bytes_per_example: int
    """Activation memory per example in the batch."""

    @property
    def step_flops(self) -> int:
        return self.forward_flops + self.backward_flops

    def largest_batch(self, free_bytes: int) -> int:
        """The largest batch whose estimate fits in ``free_bytes`` (0: not even one)."""
        room = free_bytes - self.fixed_bytes
        if room <= 0:
            return 0
        if self.bytes_per_example <= 0:
            return 1 << 20
        return room // self.bytes_per_example


@dataclass(frozen=True)
class LayerCost:
    """One layer's forward cost per example."""

    macs: int = 0
    elementwise: int = 0
    outputs: int = 0

    def __add__(self, other: LayerCost) -> LayerCost:
        return LayerCost(
            self.macs + other.macs,
            self.elementwise + other.elementwise,
            self.outputs + other.outputs,
        )

    def times(self, count: int) -> LayerCost:
        """The cost of running ``count`` times."""
        return LayerCost(self.macs * count, self.elementwise * count, self.outputs * count)


# -- per layer ----------------------------------------------------------------------------------

#: Layers that compute nothing per element worth counting (they only route tensors).
NO_COMPUTE = {
    "InputLayer",
    "Reshape",
    "Flatten",
    "Permute",
    "Dropout",
    "SpatialDropout2D",
    "ZeroPadding2D",
    "ZeroPadding1D",
    "ZeroPadding3D",
    "Cropping2D",
    "Identity",
    "GaussianNoise",
    "GaussianDropout",
    "ActivityRegularization",
}


def _elements(shape: tuple[int | None, ...] | None) -> int:
    """Elements per example of a shape whose first dimension is the batch."""
    if not shape:
        return 0
    return math.prod(d or 1 for d in shape[1:])


def _kernels(layer: LayerInfo) -> list[tuple[int, ...]]:
    """Shapes of the layer's kernels (not biases, not normalization statistics)."""
    return [
        tuple(d or 1 for d in w.shape)
        for w in layer.weights
        if w.name.rsplit("/", 1)[-1].endswith("kernel")
    ]


def layer_cost(
    layer: LayerInfo,
    input_shapes: list[tuple[int | None, ...]],
    output_shapes: tuple[tuple[int | None, ...], ...] | None = None,
) -> LayerCost:
    """The forward cost of one call of a (non-container) layer, per example.

    Args:
        layer: the walked layer.
        input_shapes: the shapes of the call's inputs (for transposed convolutions,
            attention and the time steps of recurrent layers).
        output_shapes: the shapes the call makes (None: the layer's first call's).
    """
    shapes = layer.output_shapes if output_shapes is None else output_shapes
    outputs = sum(_elements(shape) for shape in shapes)
    name = layer.class_name
    if name in NO_COMPUTE:
        return LayerCost(outputs=0 if name == "InputLayer" else outputs)
    if name == "Embedding":  # a lookup: nothing to multiply or add
        return LayerCost(outputs=outputs)
    out = shapes[0] if shapes else None
    cells = _recurrent_cells(layer)
    if cells and out:
        return _recurrent_cost(cells, input_shapes, out, outputs)
    kernels = _kernels(layer)
    macs = 0
    if kernels and out:
        if "Transpose" in name:
            source = input_shapes[0] if input_shapes else out
            positions = _elements(source) // max(1, source[-1] or 1)
            macs = positions * sum(math.prod(k) for k in kernels)
        elif "Conv" in name:
            positions = _elements(out) // max(1, out[-1] or 1)
            macs = positions * sum(math.prod(k) for k in kernels)
        elif name == "MultiHeadAttention":
            macs = _attention_macs(layer, kernels, out, input_shapes)
        else:  # Dense, EinsumDense and other kernels applied along the last axes
            macs = sum(_dense_macs(kernel, out) for kernel in kernels)
    return LayerCost(macs=macs, elementwise=outputs, outputs=outputs)


#: Elementwise operations per gate value and time step of a recurrent cell: adding the bias,
#: adding the input's and the state's products, the activation, the state update.
RECURRENT_ELEMENTWISE = 4


def _recurrent_cells(layer: LayerInfo) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The (kernel, recurrent kernel) shapes of each recurrent cell of a layer: one for an
    LSTM, GRU, SimpleRNN or ConvLSTM, one per direction for a Bidirectional."""
    shapes = {w.name: tuple(d or 1 for d in w.shape) for w in layer.weights}
    cells = []
    for name, shape in shapes.items():
        prefix, _, last = name.rpartition("/")
        if last == "recurrent_kernel" and len(shape) >= 2:
            kernel = shapes.get(f"{prefix}/kernel" if prefix else "kernel", ())
            cells.append((kernel, shape))
    return cells


def _recurrent_cost(
    cells: list[tuple[tuple[int, ...], tuple[int, ...]]],
    input_shapes: list[tuple[int | None, ...]],
    out: tuple[int | None, ...],
    outputs: int,
) -> LayerCost:
    """Each cell applies its kernel to a step's input and its recurrent kernel to the state,
    once per time step (at every output position of a step, for a convolutional cell)."""
    macs = elementwise = gates = 0
    for kernel, recurrent in cells:
        spatial = len(recurrent) - 2  # 0 for a dense cell, 2 for ConvLSTM2D
        if input_shapes and len(input_shapes[0]) > 1:
            steps = input_shapes[0][1] or 1
        else:  # no call recorded: the output's time axis, if it kept one
            steps = (out[1] or 1) if len(out) == spatial + 3 else 1
        positions = math.prod(d or 1 for d in out[len(out) - 1 - spatial : -1]) if spatial else 1
        per_step = positions * (math.prod(kernel) + math.prod(recurrent))
        macs += steps * per_step
        elementwise += steps * positions * RECURRENT_ELEMENTWISE * recurrent[-1]
        gates += steps * positions * recurrent[-1]
    return LayerCost(macs=macs, elementwise=elementwise, outputs=outputs + gates)


def leaf_costs(info: ModelInfo, leaves: tuple[LayerInfo, ...]) -> tuple[LayerCost, ...]:
    """The forward cost of each leaf, in leaf order.

    The layers inside a subclassed layer (a MultiHeadAttention's projections, a
    Bidirectional's two recurrent layers, a keras-hub block's layers) have no calls in a
    graph, so no shapes to price them by. The outermost such layer is priced whole, from its
    own calls, as a layer without sublayers is (attention's score products included), and
    its cost is put at its first leaf; its other leaves cost nothing more.
    """
    holders = {row.path: row for row in info.layers if row.is_container and row.subclassed}
    priced: set[tuple[int, ...]] = set()
    costs = []
    for leaf in leaves:
        holder = next(
            (leaf.path[:d] for d in range(1, len(leaf.path) + 1) if leaf.path[:d] in holders),
            None,
        )
        if holder is None:
            costs.append(leaf_cost(info, leaf))
        elif holder in priced:
            costs.append(LayerCost())
        else:
            priced.add(holder)
            costs.append(leaf_cost(info, holders[holder]))
    return tuple(costs)


def leaf_cost(info: ModelInfo, layer: LayerInfo) -> LayerCost:
    """The forward cost of a (non-container) layer per example, over every call of it and
    every call of the models that hold it (a siamese encoder's layers run twice)."""
    if layer.calls:
        cost = LayerCost()
        for call in layer.calls:
            cost += layer_cost(layer, list(call.input_shapes), call.output_shapes)
    else:  # a container without a graph: the layers that feed it, by name
        cost = layer_cost(layer, _input_shapes(info, layer))
    return cost.times(_repeats(info, layer.parent_path))


def _repeats(info: ModelInfo, container: Path) -> int:
    """How many times the layers directly inside ``container`` run per forward pass: the
    product of the calls of that container and of every container around it."""
    return math.prod(
        info.layer(container[:depth]).call_count for depth in range(1, len(container) + 1)
    )


def _dense_macs(kernel: tuple[int, ...], out: tuple[int | None, ...]) -> int:
    """A kernel applied at every position of the output: the kernel's trailing dimensions
    that the output ends with are what it produces; the rest of the output is positions."""
    dims = [d or 1 for d in out[1:]]
    matched = 0
    while (
        matched < min(len(kernel), len(dims))
        and kernel[len(kernel) - 1 - matched] == dims[len(dims) - 1 - matched]
    ):
        matched += 1
    produced = math.prod(dims[len(dims) - matched :]) if matched else 1
    positions = math.prod(dims) // max(1, produced)
    return positions * math.prod(kernel)


def _attention_macs(
    layer: LayerInfo,
    kernels: list[tuple[int, ...]],
    out: tuple[int | None, ...],
    input_shapes: list[tuple[int | None, ...]],
) -> int:
    """Projections (query, key, value, output) and the two attention products."""
    query_len = math.prod(d or 1 for d in out[1:-1]) or 1
    key_shape = input_shapes[1] if len(input_shapes) > 1 else out
    key_len = math.prod(d or 1 for d in key_shape[1:-1]) or 1
    names = [w.name.rsplit("/", 2)[-2] if "/" in w.name else "" for w in layer.weights]
    kernel_of = {
        n: tuple(d or 1 for d in w.shape)
        for n, w in zip(names, layer.weights, strict=True)
        if w.name.endswith("kernel")
    }
    macs = 0
    for part, length in (("query", query_len), ("key", key_len), ("value", key_len)):
        if part in kernel_of:
            macs += length * math.prod(kernel_of[part])
    if "attention_output" in kernel_of:
        macs += query_len * math.prod(kernel_of["attention_output"])
    query = kernel_of.get("query")
    value = kernel_of.get("value")
    if query and len(query) == 3:
        heads, key_dim = query[1], query[2]
        value_dim = value[2] if value and len(value) == 3 else key_dim
        macs += heads * query_len * key_len * (key_dim + value_dim)
    if not macs:
        macs = sum(query_len * math.prod(k) for k in kernels)
    return macs


# -- per model ----------------------------------------------------------------------------------


class CostModel:
    """A walked model's costs, with prefix sums to price any plan in O(exceptions).

    Args:
        view: the model's plan view (its leaves and positions).
    """

    def __init__(self, view: PlanView) -> None:
        self.view = view
        info = view.info
        self.costs: tuple[LayerCost, ...] = leaf_costs(info, view.leaves)
        macs = [c.macs for c in self.costs]
        elementwise = [c.elementwise for c in self.costs]
        outputs = [c.outputs for c in self.costs]
        bn = [leaf.is_batch_norm for leaf in view.leaves]
        weighted = [leaf.own_trainable_size > 0 for leaf in view.leaves]
        self._macs = [0, *accumulate(macs)]
        self._elementwise = [0, *accumulate(elementwise)]
        self._outputs = [0, *accumulate(outputs)]
        # MACs of the layers that would train at or after a boundary (the weight gradients).
        self._weighted_macs = [
            0,
            *accumulate(m if w else 0 for m, w in zip(macs, weighted, strict=True)),
        ]
        self._bn_macs = [
            0,
            *accumulate(m if w and b else 0 for m, w, b in zip(macs, weighted, bn, strict=True)),
        ]
        self._weighted = weighted
        # The first weighted leaf at or after each position: any, and not BatchNormalization.
        self._next_weighted = _next_true(weighted)
        self._next_weighted_not_bn = _next_true(
            [w and not b for w, b in zip(weighted, bn, strict=True)]
        )
        self._input_elements = sum(_elements(shape) for shape in info.input_shapes)
        # Elements of each tensor a cut may name, by the container it is made in: a layer's
        # output, ``encoder (call 2)`` for a later call's, ``two_headed (output 2)``; times
        # the calls of the models that hold it (inside a siamese encoder, each tensor is made
        # once per call, so the cut's ``enc_h (encoder call 2)`` adds nothing more).
        self._elements_of: dict[tuple[Path, str], int] = {}
        for row in info.layers:
            repeats = _repeats(info, row.parent_path)
            for number, call in enumerate(row.calls):
                for output, shape in enumerate(call.output_shapes):
                    label = call_label(row.name, number, output)
                    self._elements_of[(row.parent_path, label)] = repeats * _elements(shape)
            self._elements_of.setdefault(
                (row.parent_path, row.name),
                repeats * sum(_elements(shape) for shape in row.output_shapes),
            )
        self._full_step = self._step(0, self._weighted_macs[-1], 1)

    @property
    def forward_macs_per_example(self) -> int:
        """Multiply-adds of one forward pass over one example."""
        return self._macs[-1]

    # -- the plan's parts ----------------------------------------------------------------------

    def first_trainable(self, plan: FreezePlan) -> int:
        """Leaf position of the first layer with trainable weights (``len(leaves)``: none)."""
        view = self.view
        boundary = view.boundary_position(plan)
        following = (
            self._next_weighted_not_bn if plan.bn_policy is BNPolicy.FROZEN else self._next_weighted
        )
        candidates = []
        pos = following[boundary]
        # Layers toggled off by exceptions are skipped (there are few of them).
        while pos < len(view.leaves) and view.leaves[pos].path in plan.exceptions:
            pos = following[pos + 1]
        candidates.append(pos)
        for path in plan.exceptions:
            pos = view.leaf_position(path)
            if pos is not None and self._weighted[pos] and view.leaf_trainable(plan, path):
                candidates.append(pos)
        if plan.lora is not None:
            candidates.extend(view.lora_positions(plan.lora))
        return min(candidates, default=len(view.leaves))

    def _trainable_macs(self, plan: FreezePlan) -> int:
        view = self.view
        boundary = view.boundary_position(plan)
        macs = self._weighted_macs[-1] - self._weighted_macs[boundary]
        if plan.bn_policy is BNPolicy.FROZEN:
            macs -= self._bn_macs[-1] - self._bn_macs[boundary]
        for path in plan.exceptions:
            pos = view.leaf_position(path)
            if pos is None or not self._weighted[pos]:
                continue
            trains = view.leaf_trainable(replace(plan, lora=None), path)
            macs += self.costs[pos].macs if trains else -self.costs[pos].macs
        if plan.lora is not None:
            macs += self._lora_macs_change(plan)
        return max(0, macs)

    def _lora_macs_change(self, plan: FreezePlan) -> int:
        """What LoRA changes in the weight-gradient MACs: a LoRA layer computes the gradients
        of A and B, not of its kernel; they cost its MACs scaled by adapter over kernel size
        (a Dense layer's MACs are its kernel size per output position)."""
        assert plan.lora is not None
        view = self.view
        without = replace(plan, lora=None)
        change = 0
        for pos in view.lora_positions(plan.lora):
            leaf = view.leaves[pos]
            if not self._weighted[pos]:
                continue
            macs = self.costs[pos].macs
            if view.leaf_trainable(without, leaf.path):
                change -= macs
            kernel = lora_rules.kernel_size(leaf)
            if kernel:
                adapters = lora_rules.adapter_size(leaf, plan.lora.rank)
                change += macs * adapters // kernel
        return change

    def _kept_outputs(self, start: int) -> int:
        """Elements per example kept for the backward pass from leaf ``start`` on, with the
        tensors that cross into that part."""
        if start >= len(self.view.leaves):
            return 0
        kept = self._outputs[-1] - self._outputs[start]
        if start == 0:
            return kept + self._input_elements
        path = self.view.leaves[start].path
        for name in self.view.cuts.at(path).crossing:
            # The cut names tensors of the boundary's container and of those around it.
            for depth in range(len(path) - 1, -1, -1):
                elements = self._elements_of.get((path[:depth], name))
                if elements is not None:
                    kept += elements
                    break
        return kept

    def _step(self, start: int, trainable_macs: int, batch: int) -> tuple[int, int]:
        forward = 2 * self._macs[-1] + self._elementwise[-1]
        backward = 0
        if start < len(self.view.leaves):
            backward = 2 * (self._macs[-1] - self._macs[start])
            backward += self._elementwise[-1] - self._elementwise[start]
            backward += 2 * trainable_macs
        return forward * batch, backward * batch

    def feature_cache_flops(self, plan: FreezePlan) -> tuple[int, int, int]:
        """FLOPs per example of training from cached features (see :func:`price_feature_cache`).

        Returns:
            One feature pass (the forward pass of the leaves before the boundary), one epoch
            of the trainable part on cached features (its forward and backward pass from the
            boundary), one epoch of the whole model with the frozen part (a step at batch 1).
        """
        boundary = self.view.boundary_position(plan)
        feature_pass = 2 * self._macs[boundary] + self._elementwise[boundary]
        start = max(self.first_trainable(plan), boundary)
        forward, backward = self._step(start, self._trainable_macs(plan), 1)
        return feature_pass, forward + backward - feature_pass, forward + backward

    def estimate(self, plan: FreezePlan, setup: TrainingSetup) -> Estimate:
        """Memory and step FLOPs of training under ``plan``."""
        trainable = self.view.totals(plan).trainable
        start = self.first_trainable(plan)
        batch = max(1, setup.batch)
        per_example = self._kept_outputs(start) * setup.dtype.activation_bytes
        memory = Memory(
            weights=(self.view.info.total_params + self.view.adapters(plan)) * VARIABLE_BYTES,
            gradients=trainable * VARIABLE_BYTES,
            optimizer=trainable * VARIABLE_BYTES * setup.optimizer.slots,
            activations=per_example * batch,
        )
        forward, backward = self._step(start, self._trainable_macs(plan), batch)
        full = sum(self._full_step) * batch
        return Estimate(
            trainable_params=trainable,
            memory=memory,
            forward_flops=forward,
            backward_flops=backward,
            relative_step=(forward + backward) / full if full else 1.0,
            fixed_bytes=memory.weights + memory.gradients + memory.optimizer,
            bytes_per_example=per_example,
        )


def _next_true(flags: list[bool]) -> list[int]:
    """For each position, the first position at or after it whose flag is set (``len``:
    none); one more entry for the end."""
    result = [len(flags)] * (len(flags) + 1)
    for pos in range(len(flags) - 1, -1, -1):
        result[pos] = pos if flags[pos] else result[pos + 1]
    return result


def _input_shapes(info: ModelInfo, layer: LayerInfo) -> list[tuple[int | None, ...]]:
    """Output shapes of the layers that feed ``layer`` (in its own container)."""
    siblings = info.memo(("cost-siblings", layer.path[:-1]), lambda: _by_name(info, layer))
    shapes = []
    for name in layer.inbound:
        row = siblings.get(name)
        if row is not None and row.output_shape:
            shapes.append(row.output_shape)
    return shapes


def _by_name(info: ModelInfo, layer: LayerInfo) -> dict[str, LayerInfo]:
    parent = layer.path[:-1]
    return {row.name: row for row in info.layers if row.path[:-1] == parent}


def cost_model(view: PlanView) -> CostModel:
    """The cost model of a view, made once per model."""
    return view.info.memo("cost-model", lambda: CostModel(view))


def human_flops(flops: float) -> str:
    """``7.8 GFLOP``, ``310 MFLOP``."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.1f} {unit}"
    return f"{int(flops)} FLOP"


def brief(estimate: Estimate, setup: TrainingSetup) -> str:
    """``step 0.41x of full fine-tuning · 5.2 GiB at batch 32``."""
    return (
        f"step {estimate.relative_step:.2f}x of full fine-tuning · "
        f"{human_bytes(estimate.memory.total)} at batch {setup.batch}"
    )


def plan_rows(view: PlanView) -> list[tuple[str, Path | None]]:
    """The boundaries ``kfreeze cost`` prices: head only, every stage start, everything."""
    rows: list[tuple[str, Path | None]] = [("head only", None)]
    top = view.info.top_level
    for previous, row in pairwise(top):
        if row.stage != previous.stage:
            rows.append((row.name, row.path))
    first = view.first_path()
    rows.append(("everything trains", first))
    return rows


@dataclass(frozen=True)
class PricedPlan:
    """One row of a cost table: a plan, what the table calls it, and what it costs."""

    label: str
    plan: FreezePlan
    estimate: Estimate

    def to_json(self, info: ModelInfo) -> dict[str, Any]:
        """The row of the ``kfreeze cost --json`` document."""
        path = self.plan.boundary
        layer = info.layer(path) if path is not None else None
        estimate = self.estimate
        return {
            "label": self.label,
            "boundary_index": layer.index if layer is not None else None,
            "boundary_path": list(path) if path is not None else None,
            "boundary_name": layer.name if layer is not None else None,
            "trainable_params": estimate.trainable_params,
            "memory": estimate.memory.to_json(),
            "flops": {"forward": estimate.forward_flops, "backward": estimate.backward_flops},
            "relative_step": round(estimate.relative_step, 4),
        }


def price_feature_cache(
    view: PlanView,
    plan: FreezePlan,
    examples: int,
    epochs: int,
    head: HeadSpec | None = None,
) -> dict[str, Any]:
    """The ``feature_cache`` object of a ``kfreeze cost --json`` row: the verdict
    (:func:`~kfreeze_tui.core.plan.features.feature_cache`) and, when cacheable, what it saves.

    With the cache, training is one feature pass (the frozen part's forward pass over every
    example) plus ``epochs`` epochs of the trainable part on the features; without it,
    ``epochs`` epochs of the whole model with the frozen part (what a step is priced at).
    ``speedup_estimate`` is the ratio of the two in FLOPs (reading the features from disk is
    not counted); ``disk_bytes`` is ``bytes_per_example x examples``.
    """
    cache = feature_cache(view, plan, head)
    document = cache.to_json()
    document.update(examples=examples, epochs=epochs, disk_bytes=0, flops=None)
    document["speedup_estimate"] = None
    if not cache.cacheable:
        return document
    feature_pass, cached, full = cost_model(view).feature_cache_flops(plan)
    with_cache = examples * (feature_pass + epochs * cached)
    without = examples * epochs * full
    document["disk_bytes"] = cache.bytes_per_example * examples
    document["flops"] = {
        "feature_pass": examples * feature_pass,
        "cached_epoch": examples * cached,
        "full_epoch": examples * full,
    }
    document["speedup_estimate"] = round(without / with_cache, 2) if with_cache else None
    return document


def price_boundary(
    view: PlanView,
    boundary: Path | None,
    setup: TrainingSetup,
    policy: BNPolicy,
    lora: LoraSpec | None = None,
) -> PricedPlan:
    """What training from ``boundary`` costs (None: the head only), with LoRA if given."""
    plan = FreezePlan(boundary=boundary, bn_policy=policy, lora=lora)
    label = "head only" if boundary is None else view.info.layer(boundary).name
    return PricedPlan(label, plan, cost_model(view).estimate(plan, setup))


def price_stages(
    view: PlanView,
    setup: TrainingSetup,
    policy: BNPolicy,
    as_loaded: bool = False,
    lora: LoraSpec | None = None,
) -> list[PricedPlan]:
    """What training costs from every boundary :func:`plan_rows` names, except stage starts
    that train what "everything trains" trains (ResNet's stem); first, with ``as_loaded``,
    the model as it was loaded (a file, an export, a checkpoint: it trains as it was saved
    unless told otherwise).
    """
    costs = cost_model(view)
    kept: list[tuple[str, FreezePlan]] = []
    seen: set[tuple[int, int]] = set()
    for label, path in reversed(plan_rows(view)):
        plan = FreezePlan(boundary=path, bn_policy=policy, lora=lora)
        start = costs.first_trainable(plan)
        # With LoRA every row may start at the first LoRA layer and still train different
        # layers: the trainable count tells them apart.
        key = (start, view.totals(plan).trainable if lora is not None else 0)
        if key not in seen:
            seen.add(key)
            kept.append((label, plan))
    if as_loaded:
        kept.append(("as the file is", view.plan_as_loaded().with_lora(lora)))
    return [PricedPlan(label, plan, costs.estimate(plan, setup)) for label, plan in reversed(kept)]
