"""The house's rules: the layers in pyproject.toml's import-linter contracts, no import
circles (lazy imports inside functions count), and rooms of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

from importlinter.application.use_cases import lint_imports
from importlinter.configuration import configure

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "kfreeze_tui"
#: At most this many modules in one folder (``__init__`` not counted).
ROOM_SIZE = 12


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "kfreeze_tui":  # the root only re-exports
                found.add(name)
    return found


def test_the_import_linter_contracts_are_kept(capsys) -> None:
    configure()
    kept = lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, report
    assert "never imports Textual" in report and "3 kept, 0 broken" in report, report


def test_no_module_imports_itself_round_a_circle() -> None:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    assert "kfreeze_tui.core.model.loading" in graph["kfreeze_tui.core.session"]
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_every_folder_holds_a_readable_number_of_modules() -> None:
    folders = [PACKAGE, *(path for path in PACKAGE.rglob("*") if path.is_dir())]
    sizes = {
        str(folder.relative_to(ROOT)): len(
            [path for path in folder.glob("*.py") if path.stem != "__init__"]
        )
        for folder in folders
        if (folder / "__init__.py").exists()
    }
    assert sizes["kfreeze_tui/core/model"] >= 5
    crowded = {folder: size for folder, size in sizes.items() if size > ROOM_SIZE}
    assert not crowded, f"folders over {ROOM_SIZE} modules: {crowded}"
