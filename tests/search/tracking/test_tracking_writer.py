"""The asynchronous MLflow writer: what it writes, that the end of a search waits for it, and
that a killed driver loses nothing ``prunetune sync`` cannot restore from Tune's files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from prunetune.search.config import parse_config
from prunetune.search.tracking.callback import TrackingSettings
from prunetune.search.tracking.tracker import TrialSummary, embedded_uri
from prunetune.search.tracking.writer import LOCK_FILE, TrackingWriter, writer_lock
from tests.conftest import TINY
from tests.search.conftest import done_trials


def _children(uri: str, study: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    return [r for r in runs if r.data.tags.get("prunetune.role") == "trial"]


def _summary(i: int, status: str, step: int, accuracy: float) -> TrialSummary:
    metrics = {
        "accuracy": accuracy,
        "feasible": 1.0,
        "cost/macs": 100.0 + i,
        "rel/macs": 0.5,
        "training_iteration": step,
    }
    return TrialSummary(
        trial_id=f"t{i:03d}",
        profile={"conv1": 0.5},
        metrics=metrics,
        status=status,
        ended=time.time(),
        time_total_s=1.0,
        step=step,
    )


def test_the_writer_writes_every_queued_report_and_close_waits_for_it(tmp_path):
    uri = embedded_uri(tmp_path)
    config = parse_config({**TINY, "name": "queued", "storage_path": str(tmp_path)})
    writer = TrackingWriter(TrackingSettings(uri, "queued", tmp_path / "queued", config))
    writer.put("open", {})
    for i in range(40):  # each trial: one report while running, then its last
        writer.put("trials", [_summary(i, "RUNNING", 1, 0.1)])
        writer.put("trials", [_summary(i, "FINISHED", 2, 0.5 + i / 100)])
    writer.put("finish", [_summary(i, "FINISHED", 2, 0.5 + i / 100) for i in range(40)], 12.0)
    writer.close()  # returns once everything above is written

    children = _children(uri, "queued")
    assert len(children) == 40 and all(c.info.status == "FINISHED" for c in children)
    by_trial = {c.data.tags["prunetune.trial_id"]: c for c in children}
    assert by_trial["t007"].data.metrics["accuracy"] == pytest.approx(0.57)
    history = mlflow.MlflowClient(uri).get_metric_history(by_trial["t007"].info.run_id, "accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, pytest.approx(0.57))]  # both reports kept
    client = mlflow.MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("queued").experiment_id], "tags.`prunetune.role` = 'search'"
    )
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials"] == 40
    assert not writer._process.is_alive()


def test_the_tracking_lock_waits_for_its_holder_and_then_goes_on(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from prunetune.search.tracking.writer import writer_lock\n"
                "with writer_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(2)"
            ),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with writer_lock(tmp_path):  # the holder lets go after its 2 s
            waited = time.monotonic() - started
        assert holder.wait(timeout=30) == 0 and waited > 0.5
    finally:
        holder.kill()
    assert not (tmp_path / LOCK_FILE).exists()  # released: no lock file naming a writer that is gone


@pytest.mark.integration
@pytest.mark.parametrize("killed", ["driver", "driver and writer"])
def test_a_killed_driver_loses_no_tracked_result_that_sync_restores(tiny_config, tmp_path, killed):
    """Kill the driver mid-search (alone: its writer drains what it received and exits; or with
    its whole process group: the writer dies mid-write), then ``prunetune sync``: every trial
    Tune's files hold as finished is one FINISHED child run with its accuracy, none twice."""
    config = {
        **tiny_config,
        "name": "killed",
        "trials": 40,
        "finetune": {**tiny_config["finetune"], "steps": 0},
        "tracking": {"frontier_every_s": 0},
    }
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(config))
    experiment = Path(config["storage_path"]) / "killed"
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - closed below
    driver = subprocess.Popen(
        [sys.executable, "-m", "prunetune", "search", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(done_trials(experiment)) < 6:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "timed out waiting for six finished trials"
            time.sleep(0.1)
        writer_pid = int((experiment / LOCK_FILE).read_text().split()[0])
        os.kill(driver.pid, signal.SIGKILL) if killed == "driver" else os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        if killed == "driver":  # the orphaned writer finishes what it has and exits
            deadline = time.monotonic() + 60
            while _alive(writer_pid):
                assert time.monotonic() < deadline, "the writer outlived its driver by a minute"
                time.sleep(0.1)
    finally:
        _kill_group(driver.pid)  # the local Ray the driver started
        log.close()
    done = done_trials(experiment)
    assert len(done) < config["trials"], "the search ended before the driver was killed: give it more trials"

    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "sync", str(experiment)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    children = _children(embedded_uri(Path(config["storage_path"])), "killed")
    ids = [c.data.tags["prunetune.trial_id"] for c in children]
    assert len(ids) == len(set(ids)), "a trial was tracked twice"
    finished = {c.data.tags["prunetune.trial_id"]: c for c in children if c.info.status == "FINISHED"}
    assert set(done) <= set(finished), (
        f"finished in Tune's files but not in MLflow: {sorted(set(done) - set(finished))}"
    )
    for trial_id, report in done.items():
        assert finished[trial_id].data.metrics["accuracy"] == pytest.approx(report["accuracy"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
