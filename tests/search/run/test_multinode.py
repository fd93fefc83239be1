"""Searches on a real multi-node Ray cluster on loopback: spread, a killed driver, a lost node.

One cluster (head + two one-CPU workers, see ``tests/cluster_fixtures.py``) serves the module.
The lost-node test runs last because it takes one worker node down for good.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prunetune.search.store.progress import kept_dir, snapshot_states
from tests.cluster_fixtures import env

pytestmark = pytest.mark.integration
CHUNK = 10  # fine-tune steps between trial checkpoints


def _config(tiny_config: dict, name: str, **changes) -> dict:
    config = {
        **tiny_config,
        "name": name,
        "shared_storage": True,  # every "node" runs on this machine and sees tmp_path
        "tracking": {"enabled": False},
        "finetune": {**tiny_config["finetune"], "steps": 40},
        "checkpoint_every": CHUNK,
        "max_failures": 2,
        "concurrency": 2,
    }
    return {**config, **changes}


def _write(config: dict, tmp_path: Path) -> str:
    path = tmp_path / f"{config['name']}-{config['shared_storage']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env()
    )


def _driver(*args: str, cwd: Path) -> subprocess.Popen:
    log = open(cwd / "driver.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "prunetune", *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env()
    )


def _reports(experiment: Path) -> dict[str, list[dict]]:
    """Every trial's reports so far (a line being written is left for the next look)."""
    out = {}
    for path in experiment.glob("trial_*/result.json"):
        reports = []
        for line in path.read_text().splitlines():
            try:
                reports.append(json.loads(line))
            except json.JSONDecodeError:
                break
        out[path.parent.name] = reports
    return out


def _done(experiment: Path) -> dict[str, int]:
    """Finished trials and their number of reports."""
    return {t: len(r) for t, r in _reports(experiment).items() if r and r[-1].get("done")}


def _wait_until(condition, driver: subprocess.Popen, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert driver.poll() is None, f"the search ended before {what}; see driver.log"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _checkpoints(trial_dir: Path) -> list[tuple[str, int]]:
    """A trial's checkpoints and when their weights were written."""
    return sorted((c.name, (c / "model.pt").stat().st_mtime_ns) for c in trial_dir.glob("checkpoint_*"))


def _terminated(experiment: Path) -> set[str]:
    """Trials the snapshot a resume restores (the kept whole copy) records as finished."""
    return {f"trial_{t}" for t, status in snapshot_states(experiment).items() if status == "TERMINATED"}


def _searcher_state(experiment: Path) -> dict:
    """The searcher's newest saved state (its last whole copy if a crash cut the file short)."""
    newest = sorted(experiment.glob("searcher-state-*.pkl"))[-1]  # session timestamps sort
    try:
        return pickle.loads(newest.read_bytes())
    except (EOFError, pickle.UnpicklingError):
        return pickle.loads((kept_dir(experiment) / newest.name).read_bytes())


def _saved_completions(experiment: Path) -> int:
    """Trials the searcher's saved state counts as completed (0 before its first save)."""
    try:
        return int(_searcher_state(experiment).get("completed", 0))
    except (IndexError, OSError, EOFError, pickle.UnpicklingError):
        return 0  # not saved yet, or mid-write with no kept copy yet


def test_a_search_on_the_cluster_runs_trials_on_both_workers(ray_cluster, tiny_config, tmp_path):
    config = _config(tiny_config, "spread", trials=4)
    refused = _cli(
        "search", _write({**config, "shared_storage": False}, tmp_path), "--address", ray_cluster.address, cwd=tmp_path
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "is a local folder but the cluster" in refused.stderr and "shared_storage: true" in refused.stderr

    # A user cost module that only the driver can import (its folder on the driver's PYTHONPATH,
    # as a project folder on the submitting machine): Ray ships it (py_modules) to the workers,
    # which import the shipped copy; it notes where it was loaded from. (Ray also hands the
    # driver's working directory to workers, which on one machine would find a module there.)
    project, seen, elsewhere = tmp_path / "project", tmp_path / "imported", tmp_path / "elsewhere"
    for folder in (project, seen, elsewhere):
        folder.mkdir()
    (project / "meters.py").write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(seen)!r}, str(os.getpid())).write_text(os.path.abspath(__file__))\n"
        "def stem_width(model, example_input):\n"
        "    return float(model.stem[0].out_channels)\n"
    )
    config["budgets"] = [{"cost": "meters:stem_width", "max": 1e9}]
    driver_env = {**env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(project), env().get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "search", _write(config, tmp_path), "--address", ray_cluster.address],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=elsewhere,
        env=driver_env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reports = _reports(Path(config["storage_path"]) / "spread")
    assert len(reports) == 4 and all(r[-1]["done"] for r in reports.values())
    assert all(0 < r[-1]["cost/stem_width"] <= 4 for r in reports.values()), reports
    used = {report["node_id"] for trial in reports.values() for report in trial}
    assert used == {worker.node_id for worker in ray_cluster.workers}
    assert all(ipaddress.ip_address(r["node_ip"]).is_loopback for trial in reports.values() for r in trial)
    loaded = {Path(p.read_text()) for p in seen.iterdir()}
    assert project / "meters.py" in loaded  # the driver checked the budget with its own copy
    shipped = loaded - {project / "meters.py"}
    assert shipped and all("runtime_resources" in str(p) for p in shipped), loaded


# Enough trials that the search is still going when Tune's snapshot (taken at most every
# second, copied in the background) first shows two of them finished.
SEARCHERS = {
    "random": {"trials": 8},
    # Two episodes per policy update; a budget only trials can measure (latency) makes the
    # Lagrange multiplier move after every update (down: the generous budget is always met).
    "rl": {
        "trials": 8,
        "searcher": {"name": "rl", "seed": 0, "options": {"batch_episodes": 2, "num_epochs": 2}},
        "budgets": [{"cost": "latency", "max": 1e9, "options": {"repeats": 2, "warmup": 1}}],
    },
    # A seeded permutation of the feasible set: the restored position and generator must go
    # on where the killed driver stopped, never proposing a profile twice.
    "exhaustive": {
        "trials": 8,
        "searcher": {"name": "exhaustive", "seed": 0, "options": {"mode": "sampled"}},
        "space": {"levels": [0.5, 0.75, 1.0]},
    },
}


@pytest.mark.parametrize("searcher", list(SEARCHERS))
def test_a_killed_driver_is_resumed_with_exactly_the_configured_trials(ray_cluster, tiny_config, tmp_path, searcher):
    config = _config(tiny_config, "resumed", **SEARCHERS[searcher])
    experiment = Path(config["storage_path"]) / "resumed"
    driver = _driver("search", _write(config, tmp_path), "--address", ray_cluster.address, cwd=tmp_path)
    try:
        # Tune saves the searcher's state and its trial table at different moments: wait until
        # both have seen finished trials, so the kill leaves a searcher that has learned something.
        _wait_until(
            lambda: len(_terminated(experiment)) >= 2 and _saved_completions(experiment) >= 1,
            driver,
            "two trials finished in Tune's snapshot and one in the searcher's saved state",
        )
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert len(_done(experiment)) < config["trials"], (
        "the search was over before the driver was killed: give it more trials"
    )
    # Finished as the snapshot that resume reads records them (a trial finishing in the last
    # instant before the crash is not in it yet and redoes its last checkpoint interval).
    # Trials write checkpoints straight to storage; the driver's result.json copies may lag.
    finished = {trial: _checkpoints(experiment / trial) for trial in _terminated(experiment)}
    assert finished and all(len(c) == 40 // CHUNK for c in finished.values())
    interrupted = _searcher_state(experiment)
    status = _cli("status", str(experiment), cwd=tmp_path)
    assert status.returncode == 0 and "prunetune resume" in status.stdout, status.stdout + status.stderr

    out = _cli("resume", str(experiment), cwd=tmp_path)  # joins the cluster the search used
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reports = _reports(experiment)
    assert len(reports) == config["trials"] and all(r[-1]["done"] for r in reports.values())
    assert {t: _checkpoints(experiment / t) for t in finished} == finished  # none ran again
    # The searcher came back warm: its counter continues (a cold one would count only the
    # trials finished after the restart) and its generator draws no profile twice.
    resumed = _searcher_state(experiment)
    assert interrupted["completed"] >= 1 and resumed["completed"] == config["trials"] and not resumed["pending"]
    profiles = {json.dumps(r[-1]["config"]["profile"], sort_keys=True) for r in reports.values()}
    assert len(profiles) == config["trials"]
    if searcher == "exhaustive":  # one step along the permutation per proposal, none repeated
        assert interrupted["position"] >= 2 and resumed["position"] == config["trials"]
    if searcher == "rl":  # every batch of two episodes made one update, before and after
        before, after = interrupted["rl"], resumed["rl"]
        assert before["updates"] >= 1 and after["updates"] == config["trials"] // 2
        assert after["log_nu"] < before["log_nu"] < math.log(math.expm1(1.0))  # the multiplier goes on falling
    status = _cli("status", str(experiment), cwd=tmp_path)
    trials = config["trials"]
    assert f"done      {trials} of {trials}" in status.stdout and "left      0" in status.stdout


def _snapshot_has_checkpoint(experiment: Path, name: str) -> bool:
    """Whether Tune's newest experiment snapshot (what resume reads) has registered the
    checkpoint ``name`` (Tune stores each trial's checkpoint manager cloudpickled, in hex)."""
    snapshots = sorted(experiment.glob("experiment_state-*.json"))
    try:
        blob = json.loads(snapshots[-1].read_text()) if snapshots else {"trial_data": []}
    except (OSError, json.JSONDecodeError):  # being replaced this instant: look again
        return False
    for _trial, runtime in blob["trial_data"]:
        manager = json.loads(runtime).get("checkpoint_manager") or {}
        if name.encode() in bytes.fromhex(manager.get("value", "")):
            return True
    return False


def test_a_killed_taper_run_resumes_from_its_last_level_and_tracks_each_point_once(ray_cluster, tiny_config, tmp_path):
    levels = [0.7, 0.5, 0.35]
    config = _config(
        tiny_config,
        "taper-resumed",
        method="taper",
        tracking={"enabled": True},
        taper={"levels": levels, "rate": 0.01, "control_every": 5, "holdout": 64},
    )
    experiment = Path(config["storage_path"]) / "taper-resumed"
    driver = _driver("search", _write(config, tmp_path), "--address", ray_cluster.address, cwd=tmp_path)

    def registered() -> int:
        """How many levels' checkpoints Tune's newest snapshot (what resume reads) holds."""
        return sum(_snapshot_has_checkpoint(experiment, f"checkpoint_{i:06d}") for i in range(len(levels)))

    def mid_run():
        # Killed after Tune's snapshot registered a level but before the last one: resume
        # must go on from the last registered level (a level hardened after that snapshot is
        # done again, which the snapshot period allows: at most a second's work).
        reports = next(iter(_reports(experiment).values()), [])
        if reports and not reports[-1]["done"] and 0 < (kept := registered()) < len(levels):
            return next(experiment.glob("trial_*")).name, kept
        return None

    try:
        trial, kept = _wait_until(mid_run, driver, "a taper level in Tune's snapshot")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    kept_checkpoints = _checkpoints(experiment / trial)[:kept]

    out = _cli("resume", str(experiment), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reports = _reports(experiment)[trial]
    # The restored run went on from its last registered level: every level reported, in order,
    # and those the snapshot held were not hardened again.
    assert list(dict.fromkeys(r["level"] for r in reports)) == levels and reports[-1]["done"]
    assert _checkpoints(experiment / trial)[:kept] == kept_checkpoints
    restart = next(i for i, r in enumerate(reports) if i and r["iterations_since_restore"] == 1)
    assert reports[restart]["level"] == levels[kept]  # the first level after the restart

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{Path(config['storage_path']) / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("taper-resumed").experiment_id])
    points = sorted(
        (r for r in runs if r.data.tags["prunetune.role"] == "taper_point"), key=lambda r: -r.data.metrics["level"]
    )
    assert [r.data.tags["prunetune.trial_id"] for r in points] == [
        f"{trial.removeprefix('trial_')}@{lv:g}" for lv in levels
    ]
    assert all(r.info.status == "FINISHED" and r.data.tags["prunetune.checkpoint"] for r in points)


def test_a_lost_worker_node_s_trial_completes_elsewhere_from_its_checkpoint(ray_cluster, tiny_config, tmp_path):
    config = _config(tiny_config, "lost", trials=3, finetune={**tiny_config["finetune"], "steps": 200})
    experiment = Path(config["storage_path"]) / "lost"
    workers = {worker.node_id for worker in ray_cluster.workers}
    driver = _driver("search", _write(config, tmp_path), "--address", ray_cluster.address, cwd=tmp_path)

    def running_trial():
        for trial, reports in _reports(experiment).items():
            if reports and not reports[-1]["done"] and reports[-1]["node_id"] in workers:
                return trial, reports[-1]["node_id"]
        return None

    try:
        trial, node_id = _wait_until(running_trial, driver, "a trial to checkpoint on a worker node")
        ray_cluster.worker(node_id).kill()  # the machine is gone: raylet, agents, trial workers
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    log = (tmp_path / "driver.log").read_text()
    assert driver.returncode == 0, log[-3000:]
    reports = _reports(experiment)
    assert len(reports) == 3 and all(r[-1]["done"] for r in reports.values())
    history = reports[trial]
    restart = next(i for i, r in enumerate(history) if i and r["iterations_since_restore"] == 1)
    before, after = history[restart - 1], history[restart:]
    assert before["node_id"] == node_id
    assert all(r["node_id"] != node_id for r in after)  # it finished on another node
    # ...from its last checkpoint, not from the start of its fine-tune.
    assert after[0]["finetune_steps"] == before["finetune_steps"] + CHUNK
