"""End to end through the CLI: a tiny search's profiles exported to the library, applied to
another data set, and `prunetune experiment criteria|transfer` at tiny scale.

One module-scoped search and one shared results folder. ``experiment transfer`` trains its own
small shapes base (60 training images, ``--other-set``), apart from the one ``apply`` trains.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY
from tests.search.conftest import prunetune

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    """A folder with ``digits.yaml`` (base: the session's tiny checkpoint), ``shapes.yaml``
    (no checkpoint: trained on first use) and one finished 3-trial search on digits."""
    tmp = tmp_path_factory.mktemp("profiles")
    common = {**TINY, "trials": 2, "finetune": {**TINY["finetune"], "steps": 2}, "storage_path": str(tmp / "results")}
    digits = {
        **common,
        "name": "src",
        "base": {**TINY["base"], "checkpoint": str(tiny_base)},
        "budgets": [{"cost": "macs", "max": 0.8, "relative": True}],
    }
    (tmp / "digits.yaml").write_text(yaml.safe_dump(digits))
    # A short base recipe (the transfer test's shapes base uses the same one).
    (tmp / "shapes.yaml").write_text(
        yaml.safe_dump({**common, "name": "dst", "data": {"name": "shapes"}, "base": {**TINY["base"], "steps": 20}})
    )
    out = prunetune("search", str(tmp / "digits.yaml"), cwd=tmp)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return tmp


def test_export_then_apply_on_another_data_set(workspace):
    out = prunetune(
        "export-profiles", str(workspace / "results" / "src"), "--top", "2", "--out", str(workspace / "lib")
    )
    assert out.returncode == 0, out.stderr[-2000:]
    files = sorted((workspace / "lib").glob("*.json"))
    assert len(files) == 2
    blob = json.loads(files[0].read_text())
    assert blob["format"] == "prunetune-profile" and blob["dataset"]["name"] == "digits" and blob["search"] == "src"
    assert blob["relative"]["macs"] <= 0.8 and blob["budgets"] == ["macs<=80%"]

    out = prunetune("apply", "--profile", *map(str, files), "--config", str(workspace / "shapes.yaml"), cwd=workspace)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    applied = json.loads((workspace / "results" / "dst-apply" / "applied.json").read_text())
    assert applied["data"]["name"] == "shapes"
    assert {row["name"] for row in applied["applied"]} == {f.stem for f in files}
    for row in applied["applied"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["costs"]["macs"] > 0 and row["source"] == "resnet20 on digits"
    assert "| acc on shapes |" in out.stdout and files[0].stem in out.stdout
    assert "╭" not in out.stdout + out.stderr and len(out.stdout.splitlines()) < 30  # the live line, no Tune tables
    # Tracked like a search: one parent run with a child run per profile, the report attached.
    with sqlite3.connect(workspace / "results" / "mlflow.db") as db:
        runs = db.execute(
            "select r.name from runs r join experiments e using(experiment_id) where e.name = 'dst-apply'"
        ).fetchall()
    assert len(runs) == 3


def test_apply_to_another_architecture_names_the_mismatch(workspace):
    out = prunetune(
        "export-profiles",
        str(workspace / "results" / "src"),
        "--top",
        "1",
        "--frontier",
        "--out",
        str(workspace / "one"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (profile,) = (workspace / "one").glob("*.json")
    out = prunetune(
        "apply",
        "--profile",
        str(profile),
        "--config",
        str(workspace / "shapes.yaml"),
        "--set",
        "model.name=resnet32",
        "--set",
        "name=deeper",
        cwd=workspace,
    )
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"prunetune: error: profile '{profile.stem}'")
    assert "does not fit resnet32" in error[0] and "missing group(s) layer1.3.conv1" in error[0]


def test_criteria_experiment_reports_accuracy_per_criterion(workspace):
    out = prunetune(
        "experiment",
        "criteria",
        str(workspace / "digits.yaml"),
        "--criteria",
        "l1,random",
        "--seeds",
        "2",
        "--profiles",
        "1",
        cwd=workspace,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    directory = workspace / "results" / "src-criteria"
    report = json.loads((directory / "report.json").read_text())
    for criterion in ("l1", "random"):
        mean, spread = report["summary"][criterion]["accuracy"]
        assert 0.0 <= mean <= 1.0 and spread >= 0.0
    markdown = (directory / "report.md").read_text()
    assert "| random |" in markdown and "±" in markdown and "Verdict" in markdown
    assert (directory / "criteria.png").stat().st_size > 1000
    # MLflow names each trial's run after what it varies, so the runs read as the experiment's grid.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{workspace / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("src-criteria")
    names = {run.info.run_name.split(" (trial_")[0] for run in client.search_runs([experiment.experiment_id])}
    assert {
        "criterion l1, seed 0",
        "criterion l1, seed 1",
        "criterion random, seed 0",
        "criterion random, seed 1",
    } <= names


def test_transfer_experiment_reports_rank_correlation(workspace):
    out = prunetune(
        "experiment",
        "transfer",
        str(workspace / "digits.yaml"),
        "--other",
        "shapes",
        "--other-set",
        "options.n_train=60",
        "--profiles",
        "2",
        "--top",
        "2",
        "--set",
        "space.levels=[0.5,1.0]",
        "--set",
        "budgets=[]",
        "--set",
        "base.steps=20",
        cwd=workspace,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    directory = workspace / "results" / "src-transfer"
    report = json.loads((directory / "report.json").read_text())
    stats = report["stats"]
    assert report["datasets"] == ["digits", "shapes"] and stats["profiles"] == 4  # 2 sampled + uniform 0.5 and 1.0
    assert report["other_data"]["options"] == {"n_train": 60}
    assert -1.0 <= stats["spearman"] <= 1.0 and len(stats["placement"]["digits->shapes"]) == 2
    assert {u["name"] for u in stats["uniform"]} == {"uniform-0.5", "uniform-1"}
    assert "Spearman rank correlation" in out.stdout
    # digits' and shapes' validation images (the tiny config's) as the trials counted them
    assert set(stats["evaluated"]) == {"digits", "shapes"} and 0.0 <= stats["ceiling"] <= 1.0
    assert "evaluation noise: digits: +-" in out.stdout
    markdown = (directory / "report.md").read_text()
    assert "digits vs shapes (n_train=60)." in markdown  # the second set as it was trained
    assert "Spearman rank correlation of accuracy, digits vs shapes" in markdown
    assert (directory / "transfer.png").stat().st_size > 1000
