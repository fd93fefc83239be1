"""The project as a user installs it: one wheel, one top-level package, a working CLI.

The fast tests read pyproject.toml and import the CLI in a fresh interpreter. The integration
tests build a wheel from a copy of this checkout, install it (``--no-deps``) into a fresh
virtual environment that reuses this environment's third-party packages but not its editable
prunetune, and run ``prunetune search`` from a folder outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The installed namespace: prunetune.<name> is the repository's top-level folder <name>/.
FOLDERS = {
    "prunetune": REPO / "prunetune",
    "prunetune.search": REPO / "search",
    "prunetune.trainables": REPO / "trainables",
    "prunetune.budgets": REPO / "budgets",
}
HEAVY = ("torch", "ray", "mlflow")
# Not part of a build: what .gitignore leaves out, plus git's own folder.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "results",
    "build",
    "dist",
    ".pytest_cache",
    ".gl",
    ".whl",
    "mlflow.db",
    "test-artifacts",
)


def source_packages() -> dict[str, Path]:
    """Every package of the source tree (a folder with ``__init__.py``), by its installed name."""
    packages = {}
    for root_name, root in FOLDERS.items():
        for init in sorted(root.rglob("__init__.py")):
            relative = init.parent.relative_to(root).parts
            if "__pycache__" not in relative:
                packages[".".join((root_name, *relative))] = init.parent
    return packages


def test_pyproject_lists_every_subpackage_and_maps_the_three_folders():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    missing = sorted(set(source_packages()) - set(setuptools["packages"]))
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert {name: REPO / folder for name, folder in setuptools["package-dir"].items()} == FOLDERS


LOADED_HEAVY = """
import runpy, sys
{action}
print("loaded:", *sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy!r})))
"""
HELP = """
sys.argv = ["prunetune", "--help"]
try:
    runpy.run_module("prunetune", run_name="__main__")
except SystemExit as exit:
    assert exit.code == 0, exit.code
"""


@pytest.mark.parametrize("action", [HELP, "import prunetune.search.searchers"], ids=["help", "import-searchers"])
def test_help_and_searchers_load_no_torch_ray_or_mlflow(action, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", LOADED_HEAVY.format(action=action, heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "loaded:"  # names torch, ray or mlflow if any was imported


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built (no isolation, this environment's setuptools) from a copy
    so the shared checkout gets no build/ or egg-info folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(tmp / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (built,) = (tmp / "dist").glob("prunetune-*.whl")
    return built


@dataclass(frozen=True)
class Venv:
    root: Path
    site_packages: Path
    new_entries: frozenset[str]  # what installing the wheel added to site-packages

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus what would point a process at the checkout or a tracking server."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV"}}
    return {**env, **extra}


def fresh_python(venv_root: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv_root / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=120,
    )


# Started by a .pth line in the fresh venv: with PRUNETUNE_TEST_IMPORTS set, every Python
# process writes the files of the prunetune modules it imported when it exits.
RECORD_IMPORTS = """
import atexit, json, os, sys

def _record():
    modules = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if n.split(".")[0] == "prunetune"}
    path = os.path.join(os.environ["PRUNETUNE_TEST_IMPORTS"], f"{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump({"argv": sys.argv, "modules": modules}, f)

if os.environ.get("PRUNETUNE_TEST_IMPORTS"):
    atexit.register(_record)
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Venv:
    """A fresh venv with the wheel installed and this environment's packages on its path."""
    tmp = tmp_path_factory.mktemp("venv")
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(fresh_python(root, "import sysconfig; print(sysconfig.get_paths()['purelib'])", tmp).stdout.strip())
    # A path line in a .pth only extends sys.path: the editable install's own .pth files in
    # that folder (its import finder) are not run, so prunetune stays out of reach.
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    deps = "\n".join(ours) + "\n"
    (site / "this-env-packages.pth").write_text(deps)
    probe = fresh_python(root, "import yaml, importlib.util as u; assert u.find_spec('torch'); import prunetune", tmp)
    assert "No module named 'prunetune'" in probe.stderr, (
        "prunetune must be importable only through this environment's editable install (make install): "
        + probe.stdout
        + probe.stderr
    )

    # pip must not see this environment's prunetune metadata while installing (it would
    # uninstall the editable one), so the path line is off during the install.
    (site / "this-env-packages.pth").unlink()
    before = {p.name for p in site.iterdir()}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(root / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    new = frozenset({p.name for p in site.iterdir()} - before - {"__pycache__"})
    (site / "this-env-packages.pth").write_text(deps)
    (site / "_prunetune_test_imports.py").write_text(RECORD_IMPORTS)
    (site / "_prunetune_test_imports.pth").write_text("import _prunetune_test_imports\n")
    return Venv(root, site, new)


def top_level(names: list[str]) -> set[str]:
    return {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}


@pytest.mark.integration
def test_wheel_installs_one_top_level_package_prunetune(wheel, venv):
    with zipfile.ZipFile(wheel) as archive:
        assert top_level(archive.namelist()) == {"prunetune"}
    assert {name for name in venv.new_entries if not name.endswith(".dist-info")} == {"prunetune"}
    assert not {"search", "trainables", "budgets"} & {p.name for p in venv.site_packages.iterdir()}


@pytest.mark.integration
def test_wheel_holds_every_subpackage_and_module(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {}
    for package, folder in source_packages().items():
        for module in folder.glob("*.py"):
            expected[f"{package.replace('.', '/')}/{module.name}"] = package
    missing = sorted({expected[name] for name in set(expected) - names})
    assert not missing, f"packages missing from the wheel (pyproject's [tool.setuptools] packages): {missing}"


@pytest.mark.integration
def test_installed_cli_searches_from_outside_the_checkout(venv, tmp_path):
    work, records = tmp_path / "elsewhere", tmp_path / "imports"
    work.mkdir()
    records.mkdir()
    env = clean_env(PRUNETUNE_TEST_IMPORTS=str(records))
    help_out = subprocess.run(
        [str(venv.python), "-m", "prunetune", "--help"], capture_output=True, text=True, cwd=work, env=env, timeout=120
    )
    assert help_out.returncode == 0 and "search" in help_out.stdout and "inspect" in help_out.stdout, help_out.stderr

    overrides = [
        "trials=2",
        "base.steps=5",
        "finetune.steps=2",
        "confirm.steps=2",
        f"storage_path={tmp_path / 'results'}",
    ]
    args = [str(venv.root / "bin" / "prunetune"), "search", str(REPO / "configs" / "demo.yaml")]
    out = subprocess.run(
        [*args, *(a for o in overrides for a in ("--set", o))],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Frontier: accuracy vs macs" in out.stdout and "of 2 finished trials" in out.stdout, out.stdout
    assert "Confirmed on the test split: " in out.stdout, out.stdout  # the demo confirms its best profiles
    assert (tmp_path / "results" / "demo" / "frontier.csv").is_file()

    dumps = [json.loads(path.read_text()) for path in records.glob("*.json")]
    searches = [d for d in dumps if d["argv"][1:2] == ["search"]]
    # (the tracking writer, spawned by the search, carries the same argv: any of them may come first)
    assert any("prunetune.search.commands.search" in d["modules"] for d in searches), [d["argv"] for d in dumps]
    for dump in dumps:  # the CLI, `python -m prunetune` and any Ray worker that exited cleanly
        outside = {n: f for n, f in dump["modules"].items() if f and not Path(f).is_relative_to(venv.site_packages)}
        assert not outside, (dump["argv"], outside)
