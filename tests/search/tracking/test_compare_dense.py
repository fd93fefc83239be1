"""``prunetune compare`` reads every search against its dense model: the dense accuracy is a
row of the table, the csv and the json, and a point in the figures; it comes from the parent
run's ``dense_accuracy`` metric, else from the experiment folder the run names."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import torch

from prunetune.search import cli
from prunetune.search.tracking.compare import ComparedSearch, ComparedTrial, dense_accuracy_of, write_compare
from prunetune.search.tracking.tracker import PARENT_ID, TAG_ROLE, TAG_TRIAL_ID
from tests.search.run.test_user_cost_module import _experiment

TRIALS = (ComparedTrial("a", 0.60, 0.30, 0.5, 1), ComparedTrial("b", 0.80, 0.90, 0.5, 2))


def _run(metrics: dict | None = None, tags: dict | None = None):
    return SimpleNamespace(data=SimpleNamespace(metrics=metrics or {}, tags=tags or {}))


def test_every_report_has_the_dense_row(tmp_path):
    searches = [
        ComparedSearch("study/x", "r1", "study", TRIALS, dense_accuracy=0.9125),
        ComparedSearch("study/y", "r2", "study", TRIALS),
    ]
    files = write_compare(searches, "macs", tmp_path / "with")
    last = files["txt"].read_text().splitlines()[-1].split()
    assert last == ["dense", "0.9125", "unknown"]
    rows = [row for row in csv.DictReader(files["csv"].open()) if row["level"] == "dense"]
    assert [(r["search"], r["best_accuracy"]) for r in rows] == [("study/x", "0.9125"), ("study/y", "")]
    blob = json.loads(files["json"].read_text())
    assert [s["dense_accuracy"] for s in blob["searches"]] == [0.9125, None]
    page = files["html"].read_text().replace("\\u002f", "/")
    assert "study/x (validation accuracy): dense model" in page  # each curve says which accuracy it is
    assert files["txt"].read_text().splitlines()[1] == "  study/x: validation accuracy"
    without = write_compare([ComparedSearch("study/x", "r1", "study", TRIALS)], "macs", tmp_path / "without")
    with_one = write_compare([searches[0]], "macs", tmp_path / "with_one")
    assert with_one["png"].read_bytes() != without["png"].read_bytes()  # the dense point is drawn


def test_dense_accuracy_comes_from_the_run_then_the_experiment_folder(tmp_path):
    directory = _experiment(tmp_path)  # its manifest names base checkpoint tmp_path/none.pt
    torch.save({"meta": {"accuracy": 0.875}, "state_dict": {}}, tmp_path / "none.pt")
    assert dense_accuracy_of(_run({"dense_accuracy": 0.9})) == 0.9
    assert dense_accuracy_of(_run(tags={"prunetune.experiment_dir": str(directory)})) == 0.875
    assert dense_accuracy_of(_run(tags={"prunetune.experiment_dir": str(tmp_path / "elsewhere")})) is None
    (directory / "prunetune.json").write_text("{not json")
    assert dense_accuracy_of(_run(tags={"prunetune.experiment_dir": str(directory)})) is None


def test_the_compare_command_prints_the_dense_row(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    study = client.create_experiment("study", artifact_location=(tmp_path / "artifacts").as_uri())
    directory = _experiment(tmp_path)
    torch.save({"meta": {"accuracy": 0.875}}, tmp_path / "none.pt")
    parent = client.create_run(
        study, tags={TAG_ROLE: "search", "prunetune.experiment_dir": str(directory)}, run_name="exp"
    )
    for trial_id, accuracy, relative in (("t1", 0.7, 0.4), ("t2", 0.8, 0.8)):
        child = client.create_run(
            study, tags={PARENT_ID: parent.info.run_id, TAG_ROLE: "trial", TAG_TRIAL_ID: trial_id}
        )
        client.log_metric(child.info.run_id, "accuracy", accuracy)
        client.log_metric(child.info.run_id, "rel/macs", relative)
        client.set_terminated(child.info.run_id, "FINISHED")
    assert cli.main(["compare", "study", "--tracking-uri", uri, "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    assert table[-2].split()[:2] == ["100%", "0.8000"] and table[-1].split() == ["dense", "0.8750"]
