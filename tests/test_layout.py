"""The house rules a newcomer relies on: imports flow one way and go round in no circle.

Read from the source (every ``import``, including those inside functions), so a lazy import
that reaches upward counts too. The packages depend ``search -> trainables -> budgets``;
inside ``search`` the rooms are ranked below, and a module may import only from its own
rank or lower ones.
"""

from __future__ import annotations

import ast
import sys
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
            if (
                PACKAGE_RANKS[other] > PACKAGE_RANKS[package]
                or package == other == "search"
                and here
                and there
                and SEARCH_RANKS[there] > SEARCH_RANKS[here]
            ):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target) :] + [target]))
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


# --- the trial report: its keys are spelled in prunetune/budgets/report.py and nowhere else ----
SCHEMA = ROOT / "budgets" / "report.py"


def _report_keys() -> tuple[tuple[str, ...], set[str], set[str]]:
    """(families, distinctive keys, common-word keys) of the schema, read from its constants."""
    namespace: dict = {}
    exec(compile(SCHEMA.read_text(), str(SCHEMA), "exec"), namespace)  # noqa: S102 - our own module
    families = tuple(namespace["FAMILIES"])
    keys = {v for k, v in namespace.items() if k.isupper() and isinstance(v, str) and v not in families}
    common = {
        "accuracy",
        "loss",
        "done",
        "level",
        "reference",
        "feasible",
    }  # plain words too: flagged where read as keys
    return families, keys - common, keys & common


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _read_as_key(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """Whether the string constant ``node`` is used to read or write a mapping by key:
    ``m["k"]``, ``m.get("k")``/``pop``/``setdefault``, ``"k" in m``."""
    parent = parents.get(id(node))
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if (
        isinstance(parent, ast.Call)
        and parent.args
        and parent.args[0] is node
        and isinstance(parent.func, ast.Attribute)
    ):
        return parent.func.attr in {"get", "pop", "setdefault"}
    if isinstance(parent, ast.Compare) and parent.left is node:
        return any(isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops)
    return False


PRAGMA = "# not a report key"  # on a line where a plain word such as "reference" keys another mapping


def report_key_literals(path: Path) -> list[str]:
    families, distinctive, common = _report_keys()
    source = path.read_text()
    marked = {i for i, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith(PRAGMA)}
    tree = ast.parse(source)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            head = str(node.values[0].value)
            if head.startswith(families):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: f-string {head!r}...")
            continue
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in skip:
            continue
        if isinstance(parents.get(id(node)), ast.JoinedStr):
            continue  # the head of an f-string is checked above; later parts are not keys
        text = node.value
        plain_word_key = text in common and _read_as_key(node, parents) and node.lineno not in marked
        if text.startswith(families) or text in distinctive or plain_word_key:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    return found


def test_only_the_schema_spells_a_report_key():
    """A report key (``"feasible"``, ``"rel/macs"``, ``metrics["accuracy"]``...) written as a
    literal outside budgets/report.py is a second copy of the schema: use its constants."""
    found = []
    for path in sorted(project_modules().values()):
        if path != SCHEMA:
            found += report_key_literals(path)
    assert not found, "report keys spelled outside prunetune/budgets/report.py:\n" + "\n".join(found)


def test_the_report_key_check_catches_each_way_of_spelling_a_key(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    module = tmp_path / "m.py"
    module.write_text(
        "def f(metrics, cost):\n"
        '    """Reads ``feasible`` and rel/macs (a docstring may name keys)."""\n'
        '    a = metrics["accuracy"]\n'
        '    b = metrics.get(f"rel/{cost}")\n'
        '    c = "feasible" in metrics\n'
        '    d = {"finetune_steps": 3}\n'
        '    h = "feasible"  # a legend label\n'
        '    e = ("accuracy", "title")  # a plain word, not read as a key\n'
        '    g = state["reference"]  # not a report key\n'
    )
    found = [line.split(": ", 1)[1] for line in report_key_literals(module)]
    assert found == ["'accuracy'", "f-string 'rel/'...", "'feasible'", "'finetune_steps'"]
