"""Plan files edited by hand: every key the writer writes is read back, and every misspelt
key or table, wrong type and out-of-range value is one sentence with its line and the
nearest valid name (no Keras: the file is checked before any model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfreeze_tui.core.errors import PlanError
from kfreeze_tui.core.model.loading import LoadOptions
from kfreeze_tui.core.plan.freeze import BNPolicy
from kfreeze_tui.core.plan.head import DenseSpec, HeadSpec
from kfreeze_tui.core.plan.phases import CompileSpec
from kfreeze_tui.core.plan.planfile import LayerRef, PhaseRef, PlanDocument, read, to_toml
from kfreeze_tui.core.tomlfile import key_lines

FULL = PlanDocument(
    source="resnet50",
    load=LoadOptions(
        weights="none",
        input_shape=(160, 160, 3),
        include_top=False,
        custom_objects=Path("layers.py"),
        unsafe=True,
    ),
    boundary=LayerRef("conv5_block1_1_conv", (143,)),
    exceptions=(LayerRef("conv1_conv", (2,)),),
    bn_policy=BNPolicy.TRAINABLE,
    head=HeadSpec(
        feature_layer="conv5_block3_out",
        pooling="max",
        hidden=(DenseSpec(64, "gelu"),),
        dropout=0.3,
        classes=7,
        activation="sigmoid",
        float32_head=False,
    ),
    compile=CompileSpec(enabled=False, learning_rate=3e-4, labels="onehot"),
    phases=(
        PhaseRef(None, 2, lr=1e-3),
        PhaseRef(LayerRef("conv5_block1_1_conv", (143,)), 3, lr_range=(1e-6, 1e-5)),
        PhaseRef(LayerRef("conv4_block1_1_conv", (81,)), 1, bn_policy=BNPolicy.FROZEN),
    ),
)


@pytest.fixture(scope="module")
def text() -> str:
    return to_toml(FULL)


def write(folder: Path, text: str) -> Path:
    path = folder / "plan.toml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(PlanError) as caught:
        read(path)
    message = caught.value.message
    assert "\n" not in message and "?." not in message
    return message


def test_every_key_the_writer_writes_reads_back(tmp_path: Path, text: str) -> None:
    assert read(write(tmp_path, text)) == FULL
    everything_frozen = PlanDocument(
        source="model.keras",
        load=LoadOptions(),
        boundary=None,
        exceptions=(),
        bn_policy=BNPolicy.FROZEN,
        head=HeadSpec(pooling="avg"),
        compile=CompileSpec(),
    )
    assert read(write(tmp_path, to_toml(everything_frozen))) == everything_frozen


def line_of(text: str, fragment: str) -> int:
    """The line of the edited text (from 1), found without kfreeze's scanner."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


# (what the writer wrote, what a person typed instead, the message after "line N: ")
EDITS = [
    ("classes = 7", "clases = 7", 'unknown key "clases" in [head]: did you mean "classes"?'),
    ("dropout = 0.3", "dropuot = 0.3", 'unknown key "dropuot" in [head]: did you mean "dropout"?'),
    ("[head]", "[haed]", "unknown table [haed]: did you mean [head]?"),
    (
        'weights = "none"',
        'wieghts = "none"',
        'unknown key "wieghts" in [source]: did you mean "weights"?',
    ),
    (
        "classes = 7",
        'classes = "ten"',
        '[head] classes must be an integer >= 1, not the string "ten"',
    ),
    ("classes = 7", "classes = 0", "[head] classes must be an integer >= 1, not 0"),
    ("classes = 7", "classes = 7.5", "[head] classes must be an integer >= 1, not 7.5"),
    (
        "dropout = 0.3",
        "dropout = 1.0",
        "[head] dropout must be a number from 0 up to (not including) 1, not 1.0",
    ),
    (
        'bn_policy = "trainable"',
        'bn_policy = "trainabel"',
        '[freeze] bn_policy must be one of "frozen", "trainable", not the string "trainabel": '
        'did you mean "trainable"?',
    ),
    (
        'activation = "sigmoid"',
        'activation = "sigmod"',
        '[head] activation must be one of "softmax", "sigmoid", "linear", not the string '
        '"sigmod": did you mean "sigmoid"?',
    ),
    (
        "float32_head = false",
        'float32_head = "no"',
        '[head] float32_head must be true or false, not the string "no"',
    ),
    (
        "learning_rate = 0.0003",
        "learning_rate = -1",
        "[compile] learning_rate must be a number > 0, not -1",
    ),
    (
        'labels = "onehot"',
        'lables = "onehot"',
        'unknown key "lables" in [compile]: did you mean "labels"?',
    ),
    (
        "input_shape = [160, 160, 3]",
        "input_shape = [160, 160]",
        "[source] input_shape must be three integers >= 1 (height, width, channels), as "
        "[224, 224, 3], not [160, 160]",
    ),
    (
        "boundary_path = [143]",
        "boundary_path = [-1]",
        "[freeze] boundary_path must be a list of integers >= 0",
    ),
    (
        "units = 64",
        "unit = 64",
        '[head] hidden, entry 1: unknown key "unit": did you mean "units"?',
    ),
    (
        'name = "conv1_conv"',
        'nmae = "conv1_conv"',
        '[freeze] exceptions, entry 1: unknown key "nmae": did you mean "name"?',
    ),
    ("version = 1", "verison = 1", 'unknown key "verison": did you mean "version"?'),
    ("version = 1", "version = 2", "version must be 1 (the plan format this kfreeze reads), not 2"),
    ("[[phase]]", "[[phsae]]", "unknown table [[phsae]]: did you mean [[phase]]?"),
    ("epochs = 3", "epochs = 0", "[[phase]] 2 epochs must be an integer >= 1, not 0"),
    ("epochs = 3", "epoch = 3", 'unknown key "epoch" in [[phase]] 2: did you mean "epochs"?'),
    (
        "lr_range = [1e-06, 1e-05]",
        "lr_range = [1e-05, 1e-06]",
        "[[phase]] 2 lr_range must be [low, high]: two numbers > 0 with low <= high",
    ),
    ("lr = 0.001", "lr = 0", "[[phase]] 1 lr must be a number > 0, not 0"),
    (
        "classes = 7",
        "classes = 7\nlearning_rate = 0.1",
        'unknown key "learning_rate" in [head]: learning_rate belongs in [compile]',
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), EDITS, ids=[e[1] for e in EDITS])
def test_a_hand_edit_is_one_sentence_with_its_line(
    tmp_path: Path, text: str, old: str, new: str, message: str
) -> None:
    assert old in text
    edited = text.replace(old, new, 1)
    path = write(tmp_path, edited)
    found = error_of(path)
    assert found.startswith(f"{path} line {line_of(edited, new.splitlines()[-1])}: {message}")


def test_missing_and_conflicting_keys(tmp_path: Path, text: str) -> None:
    no_version = write(tmp_path, text.replace("version = 1\n", ""))
    assert "version is missing: a kfreeze plan starts with version = 1" in error_of(no_version)
    no_model = text.replace('model = "resnet50"\n', "")
    assert error_of(write(tmp_path, no_model)).endswith(
        f"line {line_of(no_model, '[source]')}: [source] has no model (an architecture name or "
        "a model file)"
    )
    no_boundary = text.replace('boundary = "conv5_block1_1_conv"\nboundary_path = [143]\n', "", 1)
    assert "[freeze] has no boundary (the first layer that trains) and no freeze_all = true" in (
        error_of(write(tmp_path, no_boundary))
    )
    both = text.replace("lr = 0.001", "lr = 0.001\nlr_range = [1e-4, 1e-3]")
    assert "[[phase]] 1 has both lr and lr_range: keep one" in error_of(write(tmp_path, both))
    no_epochs = text.replace("epochs = 2\n", "")
    first_phase = line_of(no_epochs, "[[phase]]")
    assert f"line {first_phase}: [[phase]] 1 has no epochs" in error_of(write(tmp_path, no_epochs))


def test_the_first_problem_is_told_and_the_rest_counted(tmp_path: Path, text: str) -> None:
    edited = text.replace("classes = 7", "clases = 7").replace("dropout = 0.3", "dropuot = 0.3")
    message = error_of(write(tmp_path, edited))
    # dropout comes before classes in the file: it is the first problem.
    assert f'line {line_of(edited, "dropuot")}: unknown key "dropuot"' in message
    assert message.endswith('did you mean "dropout"? (1 more problem after it)')


def test_not_a_plan(tmp_path: Path) -> None:
    assert "does not exist" in error_of(tmp_path / "missing.toml")
    garbage = write(tmp_path, "this is = = not toml")
    assert "is not valid TOML" in error_of(garbage)
    pyproject = write(tmp_path, '[project]\nname = "x"\n')
    assert error_of(pyproject) == (
        f"{pyproject} is not a kfreeze plan: it has no version = 1 and none of [source], "
        "[freeze], [head], [compile] (kfreeze export --plan writes one)"
    )


def test_key_lines_ignores_what_only_looks_like_keys() -> None:
    text = "\n".join(
        [
            "version = 1",  # 1
            "[source]",  # 2
            'model = "a [b] = c"  # [fake]',  # 3
            "[freeze]",  # 4
            "exceptions = [",  # 5
            '  { name = "x", path = [1] },',  # 6
            '  { nmae = "y", path = [2] },',  # 7
            "]",  # 8
            'note = """',  # 9
            "[not_a_table]",  # 10
            'boundary = "inside a string"',  # 11
            '"""',  # 12
            "head.classes = 3",  # 13
            "[[phase]]",  # 14
            "epochs = 1",  # 15
            "[[phase]]",  # 16
            "'quoted key' = 2",  # 17
        ]
    )
    lines = key_lines(text)
    assert lines.line(("source", "model")) == 3
    assert lines.line(("freeze", "exceptions")) == 5
    assert lines.line(("freeze", "exceptions", 1, "nmae")) == 7
    assert lines.line(("freeze", "note")) == 9
    assert lines.line(("not_a_table",)) is None
    assert ("freeze", "boundary") not in lines.lines  # inside the multi-line string
    assert lines.line(("freeze", "head", "classes")) == 13
    assert lines.line(("phase", 0, "epochs")) == 15
    assert lines.line(("phase", 1, "quoted key")) == 17


def test_apply_refuses_a_bad_plan_before_loading_and_writes_nothing(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfreeze_tui.cli import run

    path = write(tmp_path, text.replace("classes = 7", 'classes = "ten"'))
    out = tmp_path / "out.keras"
    code = run(["apply", str(path), "-o", str(out), "--plan", str(tmp_path / "again.toml")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == (
        f"kfreeze: error: {path} line {line_of(text, 'classes')}: [head] classes must be an "
        'integer >= 1, not the string "ten".\n'
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]
    # A misspelt key is refused the same way (it used to be ignored: exit 0, another model).
    write(tmp_path, text.replace("classes = 7", "clases = 7"))
    assert run(["apply", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.endswith('unknown key "clases" in [head]: did you mean "classes"?\n')
    assert not out.exists()


@pytest.mark.parametrize(
    ("number", "message"), [(4, "phases 1 to 3, not 4"), (0, "phases 1 to 3, not 0")]
)
def test_apply_refuses_a_phase_the_plan_does_not_have(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], number: int, message: str
) -> None:
    from kfreeze_tui.cli import run

    path = write(tmp_path, text)
    out = tmp_path / "out.keras"
    assert run(["apply", str(path), "--phase", str(number), "-o", str(out)]) == 2
    assert f"the plan has {message}." in capsys.readouterr().err
    assert not out.exists()


def test_wording_ends_a_sentence_once() -> None:
    from kfreeze_tui.core.errors import LoadError
    from kfreeze_tui.core.wording import did_you_mean, sentence

    assert sentence('did you mean "classes"?') == 'did you mean "classes"?'
    assert sentence("refused.") == sentence("refused") == "refused."
    assert LoadError("no layer named x; did you mean y?").sentence.endswith("y?")
    assert did_you_mean("Conv1_Conv", ["conv1_conv", "conv1_bn"]) == 'did you mean "conv1_conv"?'
    assert did_you_mean("haed", ["head", "source"], brackets="[]") == "did you mean [head]?"
    assert did_you_mean("zzz", ["head"]) == ""


def test_a_misspelt_phase_boundary_gets_the_nearest_layer(
    tmp_path: Path, small_model_file: Path
) -> None:
    from kfreeze_tui.core.errors import LoadError
    from kfreeze_tui.core.session import open_plan

    text = "\n".join(
        [
            "version = 1",
            "[source]",
            f'model = "{small_model_file}"',
            "[freeze]",
            'boundary = "block2_conv"',
            "[[phase]]",
            'boundary = "block2_cnv"',
            "epochs = 1",
        ]
    )
    path = write(tmp_path, text)
    with pytest.raises(LoadError) as caught:
        open_plan(path, use_cache=False)
    assert caught.value.sentence == (
        f"the plan plan.toml does not fit {small_model_file}: the plan's phase 1 boundary "
        'block2_cnv is not a layer of this model; did you mean "block2_conv"?'
    )


def test_a_plan_load_error_names_the_plan_key_not_an_option(tmp_path: Path) -> None:
    from kfreeze_tui.core.errors import LoadError
    from kfreeze_tui.core.session import open_plan

    weights = tmp_path / "missing.weights.h5"
    text = "\n".join(
        [
            "version = 1",
            "[source]",
            'model = "mobilenetv3small"',
            f'weights = "{weights}"',
            "[freeze]",
            "freeze_all = true",
        ]
    )
    with pytest.raises(LoadError) as caught:
        open_plan(write(tmp_path, text), use_cache=False)
    assert caught.value.sentence == (
        f"the weights file {weights} does not exist: set weights under [source] in plan.toml "
        'to "imagenet", "none" or the path of a weights file.'
    )
    from kfreeze_tui.core.session import _plan_hint

    offline = LoadError("could not download", "pass --weights none for random weights", "download")
    hint = _plan_hint(offline, Path("p.toml"))
    assert hint is not None and hint.startswith('set weights = "none" under [source] in p.toml')
