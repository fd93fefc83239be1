"""MLflow tracking against a real ``mlflow server``: parent and child runs, frontier artifacts,
no duplicates after a resume or a repeated sync, backfill after an outage, compare, ui."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.mlflow_server import free_port, wait_healthy
from tests.search.conftest import STUDY, prunetune

pytestmark = pytest.mark.integration


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, search: str) -> tuple[list, list]:
    """(parent runs, child runs) of the search named ``search`` in the study."""
    c = client(uri)
    experiment = c.get_experiment_by_name(STUDY)
    parents = c.search_runs(
        [experiment.experiment_id], f"tags.`prunetune.role` = 'search' and tags.`prunetune.search` = '{search}'"
    )
    children = []
    for parent in parents:
        children += c.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parents, children


def test_search_logs_one_parent_run_with_a_child_per_trial(mlflow_server, tracked_search):
    parents, children = runs_of(mlflow_server, "s1")
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.run_name == "s1" and parent.info.status == "FINISHED"
    assert parent.data.params["searcher"] == "random" and parent.data.params["model"] == "resnet20"
    assert parent.data.params["budgets"] == "macs<=70%"
    assert len(parent.data.tags["mlflow.source.git.commit"]) in (40, len("unknown"))
    assert float(parent.data.tags["ray.cpus"]) == 2 and float(parent.data.tags["ray.nodes"]) == 1
    totals = parent.data.metrics
    assert totals["trials"] == 3 and totals["trials_errored"] == 0 and totals["trials_finished"] == 3
    assert totals["wall_s"] > 0 and totals["cpu_hours"] > 0 and totals["gpu_hours"] == 0
    for child in children:
        assert child.info.status == "FINISHED" and child.info.run_name.startswith("trial_")
        assert child.data.tags["prunetune.trial_id"] in child.info.run_name
        assert any(key.startswith("profile.") for key in child.data.params)
        metrics = child.data.metrics
        assert {"accuracy", "loss", "cost/macs", "rel/macs", "meets/macs", "cost/params", "feasible"} <= metrics.keys()
        assert metrics["finetune_steps"] == 3
        assert Path(child.data.tags["prunetune.checkpoint"], "model.pt").is_file()
    # The run ids are cached beside the manifest for resume.
    state = json.loads((tracked_search.directory / "tracking.json").read_text())
    assert state["parent_runs"][mlflow_server] == parent.info.run_id


def test_frontier_artifacts_are_on_the_parent_run(mlflow_server, tracked_search, tmp_path):
    (parent,), _ = runs_of(mlflow_server, "s1")
    c = client(mlflow_server)
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"frontier.csv", "frontier.json", "frontier.png", "frontier.html", "config.json"} <= names
    local = Path(c.download_artifacts(parent.info.run_id, "frontier.json", str(tmp_path)))
    logged = json.loads(local.read_text())
    on_disk = json.loads((tracked_search.directory / "frontier.json").read_text())
    assert [r["trial_id"] for r in logged["frontier"]] == [r["trial_id"] for r in on_disk["frontier"]]
    html = Path(c.download_artifacts(parent.info.run_id, "frontier.html", str(tmp_path))).read_text()
    # plotly.js is inline (megabytes), so the page works offline.
    assert len(html) > 1_000_000 and '<script src="http' not in html and "accuracy vs macs" in html
    config = json.loads(Path(c.download_artifacts(parent.info.run_id, "config.json", str(tmp_path))).read_text())
    assert config["name"] == "s1" and config["tracking"]["experiment"] == STUDY


def test_restored_callback_resume_and_sync_reattach_without_duplicates(mlflow_server, tracked_search):
    from prunetune.search.run.prepare import from_manifest
    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.tracking.callback import tracking_callback

    before_parent, before_children = runs_of(mlflow_server, "s1")
    # Tune pickles callbacks into its experiment state and unpickles them on Tuner.restore.
    callback = pickle.loads(pickle.dumps(tracking_callback(from_manifest(read_manifest(tracked_search.directory)))))
    callback.setup()  # re-opens the search's parent run from the writer process
    callback.close()
    parents, _ = runs_of(mlflow_server, "s1")
    assert [p.info.run_id for p in parents] == [p.info.run_id for p in before_parent]
    assert parents[0].info.status == "RUNNING"
    resumed = prunetune("resume", str(tracked_search.directory))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    synced = prunetune("sync", str(tracked_search.directory))
    assert synced.returncode == 0, synced.stderr
    parents, children = runs_of(mlflow_server, "s1")
    assert [p.info.run_id for p in parents] == [p.info.run_id for p in before_parent]
    assert sorted(c.info.run_id for c in children) == sorted(c.info.run_id for c in before_children)
    assert parents[0].info.status == "FINISHED"


def test_outage_search_completes_and_sync_backfills_once(mlflow_server, outage_search):
    assert "prunetune sync" in outage_search.output.stderr  # the one warning names the fix
    assert (outage_search.directory / "frontier.csv").is_file()
    for attempt in range(2):
        out = prunetune("sync", str(outage_search.directory), "--tracking-uri", mlflow_server)
        assert out.returncode == 0, out.stderr
        assert "synced 3 trials" in out.stdout
        parents, children = runs_of(mlflow_server, "s2")
        assert len(parents) == 1 and len(children) == 3, f"after sync {attempt + 1}"
    assert all(c.info.status == "FINISHED" and "accuracy" in c.data.metrics for c in children)
    assert parents[0].data.metrics["trials"] == 3
    names = {a.path for a in client(mlflow_server).list_artifacts(parents[0].info.run_id)}
    assert {"frontier.csv", "frontier.json", "frontier.png", "frontier.html"} <= names


def test_sync_to_an_unreachable_server_is_one_line(outage_search):
    out = prunetune("sync", str(outage_search.directory), "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2 and "cannot write to MLflow" in out.stderr.strip().splitlines()[-1]


def test_compare_overlays_both_searches_of_a_study(mlflow_server, tracked_search, outage_search, tmp_path):
    synced = prunetune("sync", str(outage_search.directory), "--tracking-uri", mlflow_server)
    assert synced.returncode == 0, synced.stderr
    out = prunetune("compare", STUDY, "--tracking-uri", mlflow_server, "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    labels = sorted(s["label"] for s in result["searches"])
    assert labels == [f"{STUDY}/s1", f"{STUDY}/s2"] and result["cost"] == "macs"
    assert all(result["frontiers"][label] for label in labels)
    full = [row for row in result["levels"][labels[0]] if row["level"] == 1.0][0]
    assert full["accuracy"] is not None and 1 <= full["trials_spent"] <= 3
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert all(label.replace("/", "\\u002f") in html for label in labels)  # plotly escapes "/"
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    c = client(mlflow_server)
    experiment = c.get_experiment_by_name(STUDY)
    compares = c.search_runs([experiment.experiment_id], "tags.`prunetune.role` = 'compare'")
    assert compares and "compare.png" in {a.path for a in c.list_artifacts(compares[0].info.run_id)}
    assert "100%" in out.stdout and "s1" in out.stdout


def test_compare_unknown_study_is_one_line(mlflow_server):
    out = prunetune("compare", "no-such-study", "--tracking-uri", mlflow_server)
    assert out.returncode == 2 and "neither a study nor a run id" in out.stderr


def test_ui_serves_an_embedded_store_with_its_artifacts(outage_search, tmp_path):
    store = tmp_path / "store"
    synced = prunetune("sync", str(outage_search.directory), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert synced.returncode == 0, synced.stderr
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as sink:
        ui = subprocess.Popen(
            [sys.executable, "-m", "prunetune", "ui", str(store), "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, ui, log)
        query = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={STUDY}"
        with urllib.request.urlopen(query, timeout=10) as response:
            experiment = json.load(response)["experiment"]
        body = json.dumps(
            {"experiment_ids": [experiment["experiment_id"]], "filter": "tags.`prunetune.role` = 'search'"}
        )
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/runs/search", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            run_id = json.load(response)["runs"][0]["info"]["run_id"]
        with urllib.request.urlopen(f"{url}/get-artifact?path=frontier.json&run_uuid={run_id}", timeout=10) as response:
            assert json.load(response)["cost"] == "macs"
    finally:
        os.kill(ui.pid, signal.SIGINT)  # prunetune ui stops its server on Ctrl-C
        ui.wait(timeout=60)
    assert f"MLflow UI: {url}" in log.read_text()


def test_ui_without_a_store_is_one_line(tmp_path):
    out = prunetune("ui", str(tmp_path))
    assert out.returncode == 2 and "no MLflow store" in out.stderr
