"""Baselines, early stopping and confirmation as a user runs them: CLI -> Ray Tune -> frontier.

One search of the uniform baseline under Tune's ASHA with its profile confirmed on two seeds,
and one random search under ASHA whose driver is killed mid-search and resumed: the resumed
search ends with its confirmations; the frontier keeps the search trials at their validation
accuracy and records the confirmed test accuracies beside it (frontier.json's ``confirmed``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def _cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _reports(trial: Path) -> list[dict]:
    path = trial / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def test_uniform_under_asha_is_confirmed_on_the_test_split_with_two_seeds(tiny_config, tmp_path):
    tiny_config.update(
        searcher="uniform",
        budgets=[{"cost": "macs", "max": 0.5, "relative": True}],
        finetune={**tiny_config["finetune"], "steps": 6},
        scheduler={"name": "asha", "grace_steps": 2},
        confirm={"top": 1, "steps": 8, "seeds": 2},
        tracking={"enabled": False},
    )
    path = tmp_path / "uniform.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    out = _cli("search", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "then the top 1 confirmed at 8 steps x 2 seed(s) on the test split" in out.stdout
    experiment = Path(tiny_config["storage_path"]) / "tiny"
    trials = {t.name: _reports(t) for t in experiment.glob("trial_*")}
    search = [r for r in trials.values() if r and "confirms" not in r[-1]]
    confirms = [r for r in trials.values() if r and "confirms" in r[-1]]
    assert len(search) == 1 and len(confirms) == 2  # one uniform profile, confirmed twice
    assert [m["rung_steps"] for m in search[0]] == [2, 4, 6]  # it reported at every rung
    assert all(r[-1]["finetune_steps"] == 8 and "rung_steps" not in r[-1] for r in confirms)
    blob = json.loads((experiment / "frontier.json").read_text())
    [point] = blob["confirmed"]
    [searched] = blob["frontier"]  # the search trial, at its validation accuracy
    assert searched["accuracy"] == pytest.approx(search[0][-1]["accuracy"]) and not searched["confirmed"]
    assert blob["best"]["kind"] == "confirmed test accuracy" and blob["best"]["trial_id"] == point["trial_id"]
    tests = sorted(r[-1]["test/accuracy"] for r in confirms)
    assert point["confirmed"] and point["seeds"] == 2
    assert point["accuracy"] == pytest.approx(sum(tests) / 2)
    assert point["search_accuracy"] == pytest.approx(search[0][-1]["accuracy"])
    assert len(set(point["profile"].values())) == 1 and point["relative"]["macs"] <= 0.5


def test_a_killed_search_with_asha_and_confirm_resumes_to_its_confirmations(tiny_config, tmp_path):
    tiny_config.update(
        searcher={"name": "random", "seed": 1},
        trials=8,
        concurrency=2,
        budgets=[{"cost": "macs", "max": 0.6, "relative": True}],
        finetune={**tiny_config["finetune"], "steps": 8},
        scheduler={"name": "asha", "grace_steps": 2, "reduction_factor": 2},
        confirm={"top": 2, "steps": 6},
        tracking={"enabled": False},
    )
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(tiny_config))  # the session's base: the driver is killed during trials
    experiment = Path(tiny_config["storage_path"]) / "tiny"
    driver = subprocess.Popen(
        [sys.executable, "-m", "prunetune", "search", str(path)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 300
        while sum(1 for t in experiment.glob("trial_*") if _reports(t)) < 2:
            assert driver.poll() is None, "the search ended before it could be interrupted"
            assert time.monotonic() < deadline, "no trial reported within 300 s"
            time.sleep(0.5)
        time.sleep(1.5)  # past Tune's 1 s experiment snapshot
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray processes, as a crash would
        driver.wait()
    resumed = _cli("resume", str(experiment), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = [r for r in (_reports(t) for t in experiment.glob("trial_*")) if r]
    search = [r for r in trials if "confirms" not in r[-1]]
    confirms = [r for r in trials if "confirms" in r[-1]]
    assert len(confirms) == 2 and {r[-1]["confirms"] for r in confirms} <= {r[-1]["trial_id"] for r in search}
    assert len(search) >= 8
    assert any(r[-1]["finetune_steps"] < 8 for r in search), "ASHA stopped no trial early"
    blob = json.loads((experiment / "frontier.json").read_text())
    assert blob["frontier"] and not any(p["confirmed"] for p in blob["frontier"])
    assert len(blob["confirmed"]) == 2 and all(p["test_accuracy"] is not None for p in blob["confirmed"])


def test_a_search_confirms_the_uniform_profile_beside_its_best_and_says_which_won(tiny_config, tmp_path):
    tiny_config.update(
        searcher={"name": "random", "seed": 3},
        trials=4,
        budgets=[{"cost": "macs", "max": 0.6, "relative": True}],
        confirm={"top": 1, "steps": 8, "uniform": True},
    )
    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    out = _cli("search", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "then the top 1 and the uniform profile confirmed at 8 steps" in out.stdout
    lines = out.stdout.splitlines()
    row = next(line for line in lines if line.startswith("uniform (test acc)"))
    verdict = next(line for line in lines if line.strip().startswith("uniform      test"))
    assert "best search profile at no more cost:" in verdict or "no confirmed search profile" in verdict
    experiment = Path(tiny_config["storage_path"]) / "tiny"
    blob = json.loads((experiment / "frontier.json").read_text())
    [uniform] = blob["uniform"]
    assert uniform["reference"] == "uniform" and uniform["confirmed"] and len(set(uniform["profile"].values())) == 1
    assert uniform["relative"]["macs"] <= 0.6 and f"{uniform['accuracy']:.4f}" in row
    assert all(point["reference"] is None for point in blob["frontier"])  # the frontier is the search's own
    assert '"name":"uniform"' in (experiment / "frontier.html").read_text().replace(" ", "")
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{Path(tiny_config['storage_path']) / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`prunetune.role` = 'reference'"
    )
    assert len(runs) == 1 and "test/accuracy" in runs[0].data.metrics
    [parent] = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`prunetune.role` = 'search'"
    )
    dense = next(line for line in lines if line.startswith("dense model: accuracy "))
    assert f"accuracy {parent.data.metrics['dense_accuracy']:.4f}" in dense  # the parent run records the reference
    # compare reads the confirmed test accuracies from MLflow, and leaves the reference out
    uri = f"sqlite:///{Path(tiny_config['storage_path']) / 'mlflow.db'}"
    out = _cli("compare", "tiny", "--tracking-uri", uri, "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [points] = json.loads((tmp_path / "cmp" / "compare.json").read_text())["frontiers"].values()
    confirmed = {p["trial_id"]: p["accuracy"] for p in blob["confirmed"]}
    assert points and {p["trial_id"] for p in points} <= set(confirmed)
    assert max(p["accuracy"] for p in points) == pytest.approx(max(confirmed.values()))
    assert uniform["trial_id"] not in {p["trial_id"] for p in points}
