"""The house rules a newcomer relies on: imports flow one way and go round in no circle.

Read from the source (every ``import``, including those inside functions), so a lazy import
that reaches upward counts too. The packages depend ``search -> trainables -> budgets``;
inside ``search`` the rooms are ranked below, and a module may import only from its own
rank or lower ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"prunetune.search": "search", "prunetune.trainables": "trainables", "prunetune.budgets": "budgets"}

# Lowest first: what each room of search/ may build on is everything ranked at or below it.
SEARCH_RANKS = {
    "ray_compat": 0,
    "config": 0,
    "space": 0,
    "searchers": 1,
    "setup": 1,
    "store": 2,
    "tracking": 3,
    "run": 4,
    "artifacts": 5,
    "reproduce": 6,
    "commands": 7,
    "cli": 8,
}
PACKAGE_RANKS = {"budgets": 0, "trainables": 1, "search": 2}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "prunetune." + ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS.values():
        for path in (ROOT / folder).rglob("*.py"):
            modules[module_name(path)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, resolved to the longest known module name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def room(module: str) -> tuple[str, str | None]:
    """(package, room in search) of a module name."""
    parts = module.split(".")
    return parts[1], (parts[2] if parts[1] == "search" and len(parts) > 2 else None)


def test_nothing_imports_upward():
    upward = []
    for module, targets in graph().items():
        package, here = room(module)
        for target in targets:
            other, there = room(target)
            if PACKAGE_RANKS[other] > PACKAGE_RANKS[package]:
                upward.append(f"{module} -> {target}")
            elif package == other == "search" and here and there and SEARCH_RANKS[there] > SEARCH_RANKS[here]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_room_of_search_is_ranked_and_search_stays_small():
    top = sorted(p.stem for p in (ROOT / "search").glob("*.py") if p.stem != "__init__")
    packages = sorted(p.parent.name for p in (ROOT / "search").glob("*/__init__.py"))
    assert set(top + packages) == set(SEARCH_RANKS), "rank every module and subpackage of search/ in SEARCH_RANKS"
    assert len(top) <= 10, f"search/ has {len(top)} top-level modules: {', '.join(top)}"


def test_every_package_names_its_public_api():
    missing = [
        str(init.relative_to(ROOT))
        for folder in FOLDERS.values()
        for init in (ROOT / folder).rglob("__init__.py")
        if "__all__" not in init.read_text()
    ]
    assert not missing, f"no __all__ in {', '.join(missing)}"


def test_tests_mirror_the_rooms_of_search():
    """A test of ``search/<room>/`` lives in ``tests/search/<room>/``: every test folder under
    tests/search names a room, and no room's tests sit loose in tests/search."""
    tests = ROOT / "tests" / "search"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    packages = {p.parent.name for p in (ROOT / "search").glob("*/__init__.py")}
    assert folders <= packages, f"test folders that name no room of search/: {sorted(folders - packages)}"
    top = {p.stem for p in (ROOT / "search").glob("*.py")}
    loose = sorted(p.name for p in tests.glob("test_*.py") if p.stem.removeprefix("test_") not in top)
    assert not loose, f"move these into the tests/search/<room>/ of the module they test: {loose}"
