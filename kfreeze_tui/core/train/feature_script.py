"""The exported script's cached features (``kfreeze export --cache-features``).

When nothing before the cut trains (BatchNormalization in inference mode) and nothing random
runs there, the frozen part is a pure function of the input: the script's ``cache_features``
runs it once over a dataset and writes its output in shards, and ``train(..., cache_dir=...)``
trains the part after the cut (``top_model``, which shares the model's layers) on them. The
phases that unfreeze below the cut train the whole model as before.

The lines here are a section of their own; :func:`cached_train` makes the smallest edit to the
script's ``train``: a ``cache_dir`` argument, and its ``model.fit(`` becomes
``fit_for(phase, cache_dir)(``, which is ``model.fit`` whenever the cache does not apply.
"""

from __future__ import annotations

import json

from kfreeze_tui.core.plan.features import FeatureCache
from kfreeze_tui.core.plan.freeze import FreezePlan, PlanView
from kfreeze_tui.core.plan.head import HeadSpec, attachment
from kfreeze_tui.core.plan.phases import Phase

#: Batches per shard file: a resumed run redoes at most this many.
SHARD_BATCHES = 32

#: The largest cache the script reads into memory to train on (larger ones stream from disk).
IN_MEMORY_BYTES = 512 * 2**20


def feature_tensors(
    view: PlanView, plan: FreezePlan, head: HeadSpec, verdict: FeatureCache
) -> tuple[list[str], bool]:
    """The layers whose outputs (or, for a head fed by a plain operation, input) the script
    caches, and whether it is their input: the crossing tensors, or with the whole base
    frozen, where the head attaches."""
    if plan.boundary is None:
        found = attachment(view.info, head)
        assert found is not None
        return [found.layer.name], found.of_input
    readers = nested_outputs_read(view, verdict)
    if readers is not None:
        return readers, True
    return list(verdict.tensors), False


def nested_outputs_read(view: PlanView, verdict: FeatureCache) -> list[str] | None:
    """For a cut right after nested models (Keras's transfer-learning guide calls its base
    inside the model): the model's layers that read each of their outputs, or None when a
    crossing tensor is not such an output or no layer reads it alone.

    A nested model's ``.output`` is the tensor of its own graph, not of the model calling
    it (``keras.Model(model.inputs, base.output)`` is not connected), so the script takes
    ``get_layer(reader).input``: the tensor as the model has it.
    """
    top = [row for row in view.info.layers if len(row.path) == 1]
    containers = {row.name for row in top if row.is_container}
    if not verdict.tensors or not set(verdict.tensors) <= containers:
        return None
    readers = []
    for label in verdict.tensors:
        reader = next(
            (row.name for row in top if row.sources == (label,) and len(row.calls) == 1), None
        )
        if reader is None:
            return None
        readers.append(reader)
    return readers


def cached_phases(view: PlanView, plan: FreezePlan, phases: tuple[Phase, ...]) -> list[bool]:
    """Per phase: it keeps everything before phase 1's cut frozen (its boundary at or after
    phase 1's), so it trains on the cached features."""
    first = view.boundary_position(phases[0].plan(plan) if phases else plan)
    return [view.boundary_position(phase.plan(plan)) >= first for phase in phases]


def cache_lines(
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    verdict: FeatureCache,
    phases: tuple[Phase, ...],
    optimizer: str,
    loss: str,
    metrics: str,
) -> list[str]:
    """The section: FEATURE_TENSORS, feature_model, top_model, cache_features, CachedFeatures
    and fit_for.

    Args:
        plan: phase 1's plan (the cut the cache is made at).
        optimizer: the optimizer's source without phases (with phases: each phase's own).
        loss: ``loss=`` as source. metrics: ``metrics=`` as source.
    """
    names, of_input = feature_tensors(view, plan, head, verdict)
    end = "input" if of_input else "output"
    fingerprint = json.dumps(
        {
            "model": view.info.name,
            "boundary": None if plan.boundary is None else view.info.layer(plan.boundary).name,
            "exceptions": sorted(view.info.layer(p).name for p in plan.exceptions),
            "tensors": names,
        },
        sort_keys=True,
    )
    if phases:
        which = [
            "# Per phase: it keeps the cached part frozen (its boundary at or after phase 1's),",
            "# so it trains top_model on the cached features; the others train the whole model.",
            f"CACHED_PHASES = {cached_phases(view, plan, phases)!r}",
        ]
        uses = "CACHED_PHASES[PHASES.index(phase)]"
        optimizer = "optimizer_for(phase)"
    else:
        which = []
        uses = ""
    return [
        "",
        "# 6. Cached features. Everything before the cut is frozen (BatchNormalization in",
        "# inference mode) and nothing random runs there, so its output is a pure function of",
        "# the input: cache_features(ds, directory) computes it once, and",
        "# train(..., cache_dir=directory) trains the part after the cut on it. Disk: "
        f"{verdict.bytes_per_example:,} bytes",
        "# per example. The tensors that cross the cut, by the layers that "
        + ("read them (their .input):" if of_input else "make them:"),
        f"FEATURE_TENSORS = {json.dumps(names)}",
        f"FEATURE_PLAN = {fingerprint!r}",
        f"SHARD_BATCHES = {SHARD_BATCHES}",
        "# A cache of at most this many bytes is read into memory to train on (cached_dataset).",
        f"IN_MEMORY_BYTES = {IN_MEMORY_BYTES}  # {IN_MEMORY_BYTES // 2**20} MiB",
        *which,
        "",
        "",
        "def _features_of(model):",
        "    tensors = [model.get_layer(name)." + end + " for name in FEATURE_TENSORS]",
        "    return tensors[0] if len(tensors) == 1 else tensors",
        "",
        "",
        "def feature_model(model):",
        '    """The frozen part: the model\'s inputs to the features (it shares the model\'s',
        '    layers and weights)."""',
        "    inputs = model.input",
        "    if isinstance(inputs, list) and len(inputs) == 1:",
        "        inputs = inputs[0]",
        '    return keras.Model(inputs, _features_of(model), name="features")',
        "",
        "",
        "def top_model(model):",
        '    """The trainable part: the features to the model\'s outputs (it shares the model\'s',
        '    layers and weights: training it trains `model`)."""',
        '    return keras.Model(_features_of(model), model.output, name="top")',
        "",
        "",
        "def _fingerprint(frozen):",
        '    """The cut and the frozen weights\' values: a cache is for this model only."""',
        "    digest = hashlib.sha256(FEATURE_PLAN.encode())",
        "    for weight in frozen.weights:",
        "        digest.update(weight.path.encode())",
        "        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())",
        "    return digest.hexdigest()",
        "",
        "",
        "def _write_atomic(path, write):",
        '    """Write through a temporary file in the same folder, then rename it into place."""',
        '    temp = path.with_name(f".{path.name}.tmp")',
        '    with open(temp, "wb") as handle:',
        "        write(handle)",
        "    os.replace(temp, path)",
        "",
        "",
        "def _read_manifest(directory):",
        '    path = Path(directory) / "manifest.json"',
        "    return json.loads(path.read_text()) if path.exists() else None",
        "",
        "",
        "def _predictor(frozen):",
        '    """frozen.predict_on_batch; with TensorFlow and one input, the frozen part traced',
        "    once for every batch size (predict_on_batch traces again for a smaller last batch,",
        '    which costs as much as a few batches). Its tf.function is predict.function."""',
        '    if keras.backend.backend() != "tensorflow" or len(frozen.inputs) != 1:',
        "        return frozen.predict_on_batch",
        "    import tensorflow as tf",
        "",
        "    spec = frozen.inputs[0]",
        "    run = tf.function(",
        "        lambda x: frozen(x, training=False),",
        "        input_signature=[tf.TensorSpec(spec.shape, spec.dtype)],",
        "        autograph=False,",
        "    )",
        "",
        "    def predict(x):",
        "        if isinstance(x, (dict, list, tuple)):  # inputs by name: as Keras takes them",
        "            return frozen.predict_on_batch(x)",
        "        return run(tf.cast(x, spec.dtype))",
        "",
        "    predict.function = run",
        "    return predict",
        "",
        "",
        "def _arrays(value):",
        "    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in keras.tree.flatten(value)]",
        "",
        "",
        "def cache_features(ds, directory, verbose=True):",
        '    """Run the frozen part once, in inference mode, over ds (batches of (x, y) or',
        "    (x, y, sample_weight)) and write its output with the labels (and weights) to",
        "    DIRECTORY/shard-00000.npz, ... Resumable: a run that stopped goes on after the last",
        "    finished shard, so ds must give its batches in the same order every time (do not",
        "    shuffle it: load_images(folder, shuffle=False); train() shuffles the features).",
        "    A directory made for another model, plan or cut is refused. Returns the number of",
        '    examples cached."""',
        "    directory = Path(directory)",
        "    frozen = feature_model(model)",
        "    want = {",
        '        "fingerprint": _fingerprint(frozen),',
        '        "tensors": FEATURE_TENSORS,',
        '        "shapes": [list(t.shape[1:]) for t in frozen.outputs],',
        '        "dtype": str(frozen.outputs[0].dtype),',
        "    }",
        "    state = _read_manifest(directory)",
        "    if state is None:",
        '        state = {**want, "shard_batches": SHARD_BATCHES, "shards": [], "complete": False}',
        "    elif any(state.get(key) != value for key, value in want.items()):",
        "        raise ValueError(",
        '            f"{directory} holds features of another model, plan or cut: give another "',
        '            "directory, or delete it"',
        "        )",
        '    if state["complete"]:',
        '        return sum(shard["examples"] for shard in state["shards"])',
        "    if ds is None:",
        "        raise ValueError(",
        '            f"{directory} holds no complete feature cache: give cache_features the "',
        '            "dataset to cache"',
        "        )",
        "    directory.mkdir(parents=True, exist_ok=True)",
        '    manifest = directory / "manifest.json"',
        "",
        "    def save_manifest():",
        "        _write_atomic(manifest, lambda f: f.write(json.dumps(state, indent=1).encode()))",
        "",
        '    done = len(state["shards"]) * state["shard_batches"]',
        '    if hasattr(ds, "skip"):  # a tf.data dataset: skip without loading the batches',
        "        batches = iter(ds.skip(done))",
        "    else:",
        "        batches = itertools.islice(iter(ds), done, None)",
        '    examples = sum(shard["examples"] for shard in state["shards"])',
        "    pending = []",
        "",
        "    def flush():",
        "        name = f\"shard-{len(state['shards']):05d}.npz\"",
        "        arrays = {}",
        "        for key in pending[0]:",
        "            arrays[key] = np.concatenate([batch[key] for batch in pending])",
        '        count = len(arrays["labels_0"])',
        "        _write_atomic(directory / name, lambda f: np.savez(f, **arrays))",
        '        state["shards"].append({"file": name, "examples": count})',
        '        state.setdefault("batch_size", len(pending[0]["labels_0"]))',
        "        save_manifest()",
        "        pending.clear()",
        "",
        "    predict = _predictor(frozen)",
        "    for batch in batches:",
        "        x, y, *weights = batch",
        "        features = predict(x)",
        "        arrays = {}",
        "        for i, value in enumerate(_arrays(features)):",
        '            arrays[f"features_{i}"] = value',
        "        for i, value in enumerate(_arrays(y)):",
        '            arrays[f"labels_{i}"] = value',
        "        for i, value in enumerate(_arrays(weights)):",
        '            arrays[f"weights_{i}"] = value',
        "        pending.append(arrays)",
        '        examples += len(arrays["labels_0"])',
        "        if verbose:",
        '            print(f"\\rcaching features: {examples:,} examples", end="", flush=True)',
        '        if len(pending) == state["shard_batches"]:',
        "            flush()",
        "    if pending:",
        "        flush()",
        '    state["complete"] = True',
        "    save_manifest()",
        "    if verbose:",
        '        print(f"\\rcached features of {examples:,} examples in {directory}")',
        "    return examples",
        "",
        "",
        "def _key_order(key):",
        '    """features_2 before features_10: by kind, then by number."""',
        '    kind, number = key.rsplit("_", 1)',
        "    return kind, int(number)",
        "",
        "",
        "class CachedFeatures(keras.utils.PyDataset):",
        '    """Batches of cached (features, labels[, weights]), read shard by shard; shuffled',
        '    every epoch (the shards\' order, and the examples inside each shard)."""',
        "",
        "    def __init__(self, directory, batch_size=None, shuffle=True, seed=None):",
        "        super().__init__()",
        "        self.directory = Path(directory)",
        "        state = _read_manifest(directory)",
        '        if state is None or not state["complete"]:',
        "            raise ValueError(",
        '                f"{directory} holds no complete feature cache: run "',
        '                "cache_features(ds, directory) first"',
        "            )",
        '        self.shards = state["shards"]',
        '        self.batch_size = batch_size or state["batch_size"]',
        "        self.shuffle = shuffle",
        "        self.rng = np.random.default_rng(seed)",
        "        self.on_epoch_end()",
        "",
        "    def on_epoch_end(self):",
        "        count = len(self.shards)",
        "        order = self.rng.permutation(count) if self.shuffle else range(count)",
        "        self.index = [",
        "            (int(shard), start)",
        "            for shard in order",
        '            for start in range(0, self.shards[shard]["examples"], self.batch_size)',
        "        ]",
        "        self.loaded = None",
        "",
        "    def __len__(self):",
        "        return len(self.index)",
        "",
        "    def __getitem__(self, i):",
        "        shard, start = self.index[i]",
        "        if self.loaded is None or self.loaded[0] != shard:",
        '            with np.load(self.directory / self.shards[shard]["file"]) as data:',
        "                arrays = {key: data[key] for key in data.files}",
        "            if self.shuffle:",
        '                order = self.rng.permutation(self.shards[shard]["examples"])',
        "                arrays = {key: value[order] for key, value in arrays.items()}",
        "            self.loaded = (shard, arrays)",
        "        arrays = self.loaded[1]",
        "",
        "        def part(kind):",
        "            values = [",
        "                arrays[key][start : start + self.batch_size]",
        "                for key in sorted(arrays, key=_key_order)",
        '                if key.startswith(kind + "_")',
        "            ]",
        "            return values[0] if len(values) == 1 else tuple(values)",
        "",
        '        batch = (part("features"), part("labels"))',
        '        return (*batch, part("weights")) if "weights_0" in arrays else batch',
        "",
        "",
        "def cached_dataset(directory, batch_size=None, shuffle=True, in_memory=None):",
        '    """The cached (features, labels[, weights]) as batches, shuffled every epoch.',
        "",
        "    With TensorFlow, a tf.data dataset: a cache of at most IN_MEMORY_BYTES is read into",
        "    memory once and its examples shuffled as a whole; a larger one is read from the",
        "    shards every epoch (their order, and the examples within a shard's reach, shuffled).",
        "    in_memory=True or False chooses. With another backend, CachedFeatures.",
        '    """',
        "    reader = CachedFeatures(directory, batch_size, shuffle=False)  # checks the cache",
        '    if keras.backend.backend() != "tensorflow":',
        "        return CachedFeatures(directory, batch_size, shuffle)",
        "    import tensorflow as tf",
        "",
        '    files = [str(reader.directory / shard["file"]) for shard in reader.shards]',
        "    with np.load(files[0]) as first:",
        "        keys = sorted(first.files, key=_key_order)",
        '    examples = sum(shard["examples"] for shard in reader.shards)',
        "    batches = -(-examples // reader.batch_size)",
        "",
        "    def arrange(*arrays):",
        "        parts = {}",
        "        for key, array in zip(keys, arrays):",
        "            parts.setdefault(key.rsplit('_', 1)[0], []).append(array)",
        "        kinds = [parts[k] for k in ('features', 'labels', 'weights') if k in parts]",
        "        return tuple(v[0] if len(v) == 1 else tuple(v) for v in kinds)",
        "",
        "    if in_memory is None:",
        "        in_memory = sum(os.path.getsize(path) for path in files) <= IN_MEMORY_BYTES",
        "    if in_memory:",
        "        columns = {key: [] for key in keys}",
        "        for path in files:",
        "            with np.load(path) as data:",
        "                for key in keys:",
        "                    columns[key].append(data[key])",
        "        tensors = []",
        "        for key in keys:  # one column at a time in memory twice",
        "            tensors.append(tf.convert_to_tensor(np.concatenate(columns.pop(key))))",
        "        data = tf.data.Dataset.range(examples)",
        "        if shuffle:",
        "            data = data.shuffle(examples, reshuffle_each_iteration=True)",
        "        data = data.batch(reader.batch_size)",
        "",
        "        def gather(rows):",
        "            return arrange(*(tf.gather(tensor, rows) for tensor in tensors))",
        "",
        "        data = data.map(gather)",
        "        return data.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(1)",
        "",
        "    with np.load(files[0]) as first:",
        "        specs = [(first[key].dtype, first[key].shape[1:]) for key in keys]",
        "",
        "    def load(path):",
        "        with np.load(path.decode()) as data:",
        "            return [data[key] for key in keys]",
        "",
        "    def read(path):",
        "        arrays = tf.numpy_function(load, [path], [tf.as_dtype(d) for d, _ in specs])",
        "        for array, (_, shape) in zip(arrays, specs):",
        "            array.set_shape((None, *shape))",
        "        return tuple(arrays)",
        "",
        "    data = tf.data.Dataset.from_tensor_slices(files)",
        "    if shuffle:",
        "        data = data.shuffle(len(files), reshuffle_each_iteration=True)",
        "    data = data.map(read).unbatch()",
        "    if shuffle:",
        '        largest = max(shard["examples"] for shard in reader.shards)',
        "        data = data.shuffle(largest, reshuffle_each_iteration=True)",
        "    data = data.batch(reader.batch_size).map(arrange)",
        "    return data.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(1)",
        "",
        "",
        "def fit_for(phase, cache_dir):",
        '    """model.fit; or, given a cache directory, for a phase that keeps the cached part',
        "    frozen, a fit of top_model on the cached features (cached first from the dataset",
        "    given when the directory is not complete; validation data go to DIRECTORY/val).",
        "    `model` shares top_model's layers: it is the whole trained model after it. Callbacks",
        '    are given top_model there (a ModelCheckpoint saves the top part only)."""',
        f"    if cache_dir is None{f' or not {uses}' if uses else ''}:",
        "        return model.fit",
        "",
        "    def fit(train_ds, validation_data=None, shuffle=False, **options):",
        "        cache_features(train_ds, cache_dir)",
        "        val = None",
        "        if validation_data is not None:",
        '            cache_features(validation_data, Path(cache_dir) / "val")',
        '            val = cached_dataset(Path(cache_dir) / "val", shuffle=False)',
        "        top = top_model(model)",
        f"        top.compile(optimizer={optimizer}, loss={loss}, metrics={metrics})",
        "        data = cached_dataset(cache_dir)  # shuffles itself every epoch",
        "        return top.fit(data, validation_data=val, shuffle=False, **options)",
        "",
        "    return fit",
    ]


#: The standard library modules and numpy the section uses.
CACHE_IMPORTS = ["import hashlib", "import itertools", "import json", "import os"]


def cached_train(train: list[str]) -> list[str]:
    """The script's ``train`` with a ``cache_dir`` argument, its fit through ``fit_for``."""
    lines: list[str] = []
    phased = any("for phase in PHASES:" in line for line in train)
    for line in train:
        if line.startswith("def train(") and line.endswith('verbose="auto"):'):
            line = line.removesuffix("):") + ", cache_dir=None):"
            if len(line) > 99:
                head, _, rest = line.partition("(")
                lines += [f"{head}(", f"    {rest.removesuffix('):')},", "):"]
                continue
        elif line.strip().startswith("verbose: as model.fit takes it"):
            lines.append(line)
            indent = line[: len(line) - len(line.lstrip())]
            who = "phases that keep the cached part frozen train" if phased else "model trains"
            lines += [
                f"{indent}cache_dir: a directory of cached features (cache_features): the",
                f"{indent}    {who} top_model on them.",
            ]
            continue
        elif "model.fit(" in line:
            phase = "phase" if phased else "None"
            line = line.replace("model.fit(", f"fit_for({phase}, cache_dir)(")
        lines.append(line)
    return lines


def cached_main(main: list[str]) -> list[str]:
    """The script run as a program with ``--cache-dir DIR``: the training images read in a
    fixed order, their features cached there once (resumable) and trained on."""
    lines: list[str] = []
    for line in main:
        if line == "    args = parser.parse_args()":
            lines += [
                "    parser.add_argument(",
                '        "--cache-dir",',
                '        help="cache the frozen part\'s features of TRAIN here once (resumable) "',
                '        "and train on them",',
                "    )",
            ]
        elif line.strip() == "train(load_images(args.train), val_ds, epochs=args.epochs)":
            indent = line[: len(line) - len(line.lstrip())]
            lines += [
                f"{indent}# Cached: the images in a fixed order (a stopped run resumes).",
                f"{indent}images = load_images(args.train, shuffle=not args.cache_dir)",
                f"{indent}train(images, val_ds, epochs=args.epochs, cache_dir=args.cache_dir)",
            ]
            continue
        lines.append(line)
    return lines


def checked_verdict(
    view: PlanView,
    plan: FreezePlan,
    head: HeadSpec,
    phases: tuple[Phase, ...],
    strategy: str | None,
) -> FeatureCache:
    """Phase 1's verdict for ``--cache-features`` (``plan``: phase 1's).

    Raises:
        PlanError: the frozen part cannot be cached (the verdict's reason), or the export
            has no head, keeps outputs of the base or builds under a strategy.
    """
    from kfreeze_tui.core.errors import PlanError
    from kfreeze_tui.core.plan.features import feature_cache
    from kfreeze_tui.core.plan.head import kept_outputs

    verdict = feature_cache(view, plan, head)
    layers = {row.name for row in view.info.layers if len(row.path) == 1 and not row.is_container}
    unnamed = [label for label in verdict.tensors if label not in layers]
    if not verdict.cacheable:
        reason = verdict.reason
    elif plan.boundary is not None and len(plan.boundary) > 1:
        # Its crossing tensors are named in the nested model's graph, not the model's.
        outer = view.info.layer(plan.boundary[:1]).name
        reason = (
            f"the cut is inside the nested model {outer}, and the script caches only "
            f"tensors of the model itself (cut before or after {outer})"
        )
    elif plan.boundary is not None and unnamed and nested_outputs_read(view, verdict) is None:
        reason = (
            f"{unnamed[0]} crosses the cut, and the script finds only layers' outputs "
            "(or, for a nested model, what one layer reads of it) by name"
        )
    elif head.is_none:
        reason = "the export has no head, so the script has no training to cache for"
    elif kept_outputs(view.info, head):
        reason = "the model keeps outputs of the base, which the cache does not hold"
    elif strategy is not None:
        reason = "the script builds under a distribution strategy, which it does not combine with"
    else:
        return verdict
    raise PlanError(f"--cache-features cannot be used: {reason}")
