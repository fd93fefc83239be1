"""The fault suite (#26): real processes are killed, interrupted, starved of disk and fed
damaged files, and afterwards every view of the search tells one story.

One tracked search with confirmation (``faulted``, shared by the module) goes through: a trial
worker SIGKILLed (max_failures 0: the trial errors), SIGTERM to the driver, an edited manifest
refused on resume, the MLflow server killed, the search resumed untracked, the server started
again and ``prunetune sync``; then a result line is cut. A second (``retried``) retries its
trials: a worker SIGKILLed mid-trial, its MLflow server killed mid-search, Ctrl-C, the server
back and a tracked resume. A third runs on a tiny tmpfs.
After each fault: ``status``, the frontier, ``export --best``, ``compare`` and MLflow (counted
with the client) name the same best profile with the same figure, every finished trial is in
MLflow once with its final metrics, and the user saw lines, not a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY
from tests.mlflow_server import MlflowServer, start_mlflow_server, stop
from tests.search.conftest import done_trials

pytestmark = pytest.mark.integration

STUDY = "faults"


def prunetune(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def command(capsys, *args: str) -> subprocess.CompletedProcess:
    """A reading command run in this process (the faults themselves run in real processes;
    reading the folder afterwards needs no new interpreter, which costs ~5 s a command)."""
    from prunetune.search.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (ours only: the driver's local Ray and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def trial_workers(driver: int) -> list[int]:
    """The driver's Ray workers running a trial (process title ``ray::ImplicitFunc...``)."""
    workers = []
    for pid in descendants(driver):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::ImplicitFunc"):
            workers.append(pid)
    return workers


def running_trials(experiment: Path, driver: int) -> list[str]:
    """Trials started and not done, while the driver has trial workers."""
    folders = {path.name.removeprefix("trial_") for path in experiment.glob("trial_*")}
    return sorted(folders - set(done_trials(experiment))) if trial_workers(driver) else []


def kill_a_running_trial(experiment: Path, search: subprocess.Popen, seen) -> None:
    """SIGKILL a trial worker while a trial runs, until ``seen()`` shows the fault; a kill that
    lands as a trial ends (or on a worker idle for reuse) faults nothing: kill the next one."""
    for _ in range(3):
        wait_for(lambda: running_trials(experiment, search.pid), "a running trial", search)
        os.kill(trial_workers(search.pid)[0], signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            wait_for(seen, "the killed trial's fault", search, timeout_s=20)
            return


def wait_for(condition, what: str, process: subprocess.Popen | None = None, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process is None or process.poll() is None, f"the search ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def kill_group(pid: int) -> None:
    """SIGKILL what a driver we started left behind (its local Ray, in the session the driver
    led: started with start_new_session), by the driver's PID."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class Faulted:
    experiment: Path
    tmp: Path
    server: MlflowServer
    killed_trial: str
    runs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    mlflow_after_sigterm: dict = field(default_factory=dict)
    done_after_sigterm: dict = field(default_factory=dict)
    done_after_sigint: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # each phase's wall time, for --durations readers


def mlflow_runs(uri: str) -> dict:
    """Trial id -> list of (status, metrics) of its child runs, and the parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children: dict[str, list] = {}
    parent = None
    for run in runs:
        if run.data.tags.get("prunetune.role") == "search":
            parent = run
        elif run.data.tags.get("prunetune.trial_id"):
            children.setdefault(run.data.tags["prunetune.trial_id"], []).append(
                (run.info.status, dict(run.data.metrics))
            )
    return {"children": children, "parent": parent}


def run_search(args: list[str], tmp: Path, log: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "prunetune", *args],
        stdout=(tmp / f"{log}.out").open("w"),
        stderr=(tmp / f"{log}.err").open("w"),
        cwd=tmp,
        start_new_session=True,
    )


def finished(process: subprocess.Popen, tmp: Path, log: str, timeout_s: float = 400) -> subprocess.CompletedProcess:
    try:
        process.wait(timeout=timeout_s)
    finally:
        kill_group(process.pid)
    return subprocess.CompletedProcess(
        process.args, process.returncode, (tmp / f"{log}.out").read_text(), (tmp / f"{log}.err").read_text()
    )


def tracked_search(tmp: Path, base: Path, *, trials: int, concurrency: int, steps: int, seed: int, **more) -> Faulted:
    """A tiny random search's config in ``tmp/search.yaml``, with confirmation, tracked to a new
    MLflow server over ``tmp/mlflow``; the search is not started."""
    server = start_mlflow_server(tmp / "mlflow")
    config = {
        **TINY,
        "trials": trials,
        "concurrency": concurrency,
        "base": {**TINY["base"], "checkpoint": str(base)},
        "finetune": {**TINY["finetune"], "steps": steps},
        "budgets": [{"cost": "macs", "max": 0.7, "relative": True}],
        "searcher": {"name": "random", "seed": seed},
        "confirm": {"top": 1, "steps": 5, "seeds": 1},
        "storage_path": str(tmp / "results"),
        "tracking": {"tracking_uri": server.uri, "experiment": STUDY},
        **more,
    }
    (tmp / "search.yaml").write_text(yaml.safe_dump(config))
    return Faulted(tmp / "results" / "tiny", tmp, server, "")


@pytest.fixture(scope="module")
def faulted(tmp_path_factory, tiny_base):
    faulted = tracked_search(tmp_path_factory.mktemp("faults"), tiny_base, trials=4, concurrency=2, steps=20, seed=7)
    tmp, experiment, server = faulted.tmp, faulted.experiment, faulted.server
    try:
        # 1. A trial worker SIGKILLed (max_failures 0: the trial errors), then SIGTERM to the driver.
        started = time.monotonic()
        search = run_search(["search", str(tmp / "search.yaml")], tmp, "search")
        errored = lambda: [
            ln for ln in (tmp / "search.out").read_text().splitlines() if ln.startswith("errored trial_")
        ]  # noqa: E731
        # As soon as a trial runs: waiting for a finished trial first let a loaded CI machine
        # finish the rest too, and the SIGKILL hit a worker Tune kept idle for reuse.
        kill_a_running_trial(experiment, search, errored)
        wait_for(lambda: errored() and len(done_trials(experiment)) >= 2, "the killed trial's error", search)
        faulted.killed_trial = errored()[0].split()[1].removeprefix("trial_").rstrip(":")
        search.send_signal(signal.SIGTERM)
        faulted.runs["sigterm"] = finished(search, tmp, "search")
        faulted.seconds["search"] = time.monotonic() - started
        faulted.mlflow_after_sigterm = mlflow_runs(server.uri)
        faulted.done_after_sigterm = done_trials(experiment)
        # 2. The manifest edited: resume refuses, naming the key; the original goes back.
        manifest = experiment / "prunetune.json"
        original = manifest.read_text()
        blob = json.loads(original)
        blob["config"]["finetune"]["steps"] = 7
        manifest.write_text(json.dumps(blob))
        faulted.runs["edited"] = prunetune("resume", str(experiment), cwd=tmp)
        manifest.write_text(original)
        # 3. The MLflow server killed; the search resumed untracked; the server back; sync.
        port = int(server.uri.rsplit(":", 1)[1])
        stop(server.process)
        started = time.monotonic()
        faulted.runs["resume"] = finished(run_search(["resume", str(experiment)], tmp, "resume"), tmp, "resume")
        faulted.seconds["resume"] = time.monotonic() - started
        faulted.server = server = start_mlflow_server(tmp / "mlflow", port=port)
        started = time.monotonic()
        faulted.runs["sync"] = prunetune("sync", str(experiment), cwd=tmp)
        faulted.seconds["sync"] = time.monotonic() - started
        print(f"fault suite phases: {faulted.seconds}", file=sys.stderr)
        yield faulted
    finally:
        stop(faulted.server.process)


@pytest.fixture(scope="module")
def retried(tmp_path_factory, tiny_base):
    """A second tracked search, with retries (``max_failures: 1``), one trial at a time: the
    worker of a running trial SIGKILLed (Tune runs the trial again); once the re-run trial is
    in MLflow, the MLflow server killed mid-search; once a trial has finished untracked, Ctrl-C
    (SIGINT) to the driver; then the server back and ``prunetune resume``, tracked, with no
    ``sync``: the resumed search's own end brings MLflow level with the folder."""
    trials = 12  # enough that trials are left at each step below, on a fast machine too
    retried = tracked_search(
        tmp_path_factory.mktemp("retried"), tiny_base, trials=trials, concurrency=1, steps=100, seed=11, max_failures=1
    )
    tmp, experiment, server = retried.tmp, retried.experiment, retried.server
    try:
        search = run_search(["search", str(tmp / "search.yaml")], tmp, "search")

        def failed() -> list[str]:  # the trials Tune saw fail (it writes error.txt, then runs them again)
            return [path.parent.name.removeprefix("trial_") for path in experiment.glob("trial_*/error.txt")]

        # 1. A running trial's worker SIGKILLed: Tune runs the trial again.
        kill_a_running_trial(experiment, search, failed)
        [retried.killed_trial] = failed()
        wait_for(lambda: retried.killed_trial in done_trials(experiment), "the killed trial run again", search)

        def in_mlflow() -> bool:
            runs = mlflow_runs(server.uri)["children"].get(retried.killed_trial, [])
            return any(status == "FINISHED" and "accuracy" in metrics for status, metrics in runs)

        wait_for(in_mlflow, "the re-run trial in MLflow", search, timeout_s=60)
        retried.mlflow_after_sigterm = mlflow_runs(server.uri)  # the live search's tracking, before the kill
        retried.done_after_sigterm = done_trials(experiment)
        # 2. The MLflow server killed mid-search; a trial finishes untracked; then Ctrl-C.
        port = int(server.uri.rsplit(":", 1)[1])
        stop(server.process)
        tracked = len(retried.done_after_sigterm)
        wait_for(lambda: len(done_trials(experiment)) > tracked, "a trial finished untracked", search)
        assert len(done_trials(experiment)) < trials, "no trial left to interrupt"
        search.send_signal(signal.SIGINT)
        retried.runs["sigint"] = finished(search, tmp, "search")
        retried.done_after_sigint = done_trials(experiment)
        # 3. The server back; the search resumed, tracked; no sync.
        retried.server = server = start_mlflow_server(tmp / "mlflow", port=port)
        retried.runs["resume"] = finished(run_search(["resume", str(experiment)], tmp, "resume"), tmp, "resume")
        yield retried
    finally:
        stop(retried.server.process)


def best_of_views(faulted: Faulted, capsys) -> dict[str, tuple[str, float]]:
    """(trial id, figure) of the best profile as status, the frontier, export --best, compare
    and the MLflow parent run name it."""
    tmp, experiment = faulted.tmp, faulted.experiment
    views = {}
    status = command(capsys, "status", str(experiment))
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("best "))
    words = line.split()
    views["status"] = (words[words.index("in") + 1].removeprefix("trial_").rstrip(","), float(words[4]))
    assert line.startswith("best      confirmed test accuracy "), line
    best = json.loads((experiment / "frontier.json").read_text())["best"]
    assert best["kind"] == "confirmed test accuracy"
    views["frontier"] = (best["trial_id"], round(best["accuracy"], 4))
    export = prunetune(
        "export", str(experiment), "--best", "--format", "state_dict", "--out", str(tmp / "best"), "--force", cwd=tmp
    )
    assert export.returncode == 0, export.stderr[-2000:]
    first = export.stdout.splitlines()[0]  # trial <id>: best: confirmed test accuracy 0.xxxx, macs ...
    assert "best: confirmed test accuracy" in first, first
    views["export"] = (first.split()[1].rstrip(":"), float(first.split("accuracy ")[1].split(",")[0].split()[0]))
    compare = command(capsys, "compare", STUDY, "--tracking-uri", faulted.server.uri, "--out", str(tmp / "compare"))
    assert compare.returncode == 0, compare.stderr[-2000:]
    assert ": confirmed test accuracy" in compare.stdout
    levels = next(iter(json.loads((tmp / "compare" / "compare.json").read_text())["levels"].values()))
    at_budget = next(level for level in levels if level["level"] == 0.7)
    views["compare"] = (at_budget["trial_id"], round(at_budget["accuracy"], 4))
    parent = mlflow_runs(faulted.server.uri)["parent"]
    assert parent.data.tags["prunetune.best_accuracy"] == "confirmed test accuracy"
    views["mlflow"] = (
        parent.data.tags["prunetune.best_trial"],
        round(parent.data.metrics["best_feasible_accuracy"], 4),
    )
    return views


def test_sigterm_stops_the_search_like_ctrl_c_with_one_line_and_the_resume_hint(faulted):
    run = faulted.runs["sigterm"]
    assert run.returncode == 143, run.stdout[-2000:] + run.stderr[-3000:]
    assert f"interrupted by SIGTERM: resume with `prunetune resume {faulted.experiment}`" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr and "(partial: " in run.stdout
    assert run.stderr.strip().splitlines()[-1].startswith("interrupted by SIGTERM"), run.stderr
    assert len([ln for ln in run.stdout.splitlines() if ln.startswith("errored trial_")]) == 1  # the killed worker


def test_the_end_of_an_interrupted_search_leaves_mlflow_equal_to_the_folder(faulted):
    """No sync was run: the search's own end reconciled MLflow with the folder."""
    children = faulted.mlflow_after_sigterm["children"]
    for trial_id, report in faulted.done_after_sigterm.items():
        [(status, metrics)] = children[trial_id]  # exactly one run
        assert status == "FINISHED" and metrics["accuracy"] == pytest.approx(report["accuracy"])
        assert metrics["cost/macs"] == pytest.approx(report["cost/macs"])
    [(status, _)] = children[faulted.killed_trial]
    assert status == "FAILED"
    for trial_id, runs in children.items():  # the trials stopped by SIGTERM: not claimed finished
        if trial_id not in faulted.done_after_sigterm and trial_id != faulted.killed_trial:
            assert [s for s, _ in runs] == ["KILLED"]


def test_an_edited_manifest_is_refused_in_one_line_naming_the_key(faulted):
    run = faulted.runs["edited"]
    assert run.returncode == 2 and "changed: finetune.steps" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_resume_without_its_mlflow_server_warns_once_and_finishes(faulted):
    run = faulted.runs["resume"]
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    [warning] = run.stderr.strip().splitlines()  # one line, naming the command that backfills
    assert warning.startswith("MLflow tracking at ") and "prunetune sync" in warning


def test_after_sync_every_finished_trial_is_in_mlflow_once_with_its_final_metrics(faulted):
    assert faulted.runs["sync"].returncode == 0, faulted.runs["sync"].stderr[-2000:]
    children = mlflow_runs(faulted.server.uri)["children"]
    done = done_trials(faulted.experiment)
    assert faulted.killed_trial in done  # the resume ran the killed trial again
    for trial_id, report in done.items():
        [(status, metrics)] = children[trial_id]
        assert status == "FINISHED" and metrics["accuracy"] == pytest.approx(report["accuracy"]), trial_id
    assert set(children) == set(done)


def test_every_view_names_the_same_best_profile_with_the_same_figure(faulted, capsys):
    views = best_of_views(faulted, capsys)
    assert len(set(views.values())) == 1, views


def test_a_cut_result_line_is_named_by_status_export_and_sync(faulted, capsys):
    """Last: it damages the shared experiment."""
    tmp, experiment = faulted.tmp, faulted.experiment
    victim = sorted(t for t in done_trials(experiment) if t != faulted.killed_trial)[0]
    result = experiment / f"trial_{victim}" / "result.json"
    result.write_text(result.read_text().rstrip("\n")[:-20])  # the last report cut short
    status = command(capsys, "status", str(experiment))
    assert "damaged   1" in status.stdout and str(result) in status.stdout, status.stdout
    trial = prunetune(
        "export", str(experiment), "--trial", victim, "--format", "state_dict", "--out", str(tmp / "v"), cwd=tmp
    )
    assert trial.returncode == 2 and f"trial {victim} (" in trial.stderr and "cannot be used" in trial.stderr
    assert "cut short" in trial.stderr and len(trial.stderr.strip().splitlines()) == 1
    sync = command(capsys, "sync", str(experiment))
    assert sync.returncode == 0 and "left out 1 damaged trial" in sync.stdout and str(result) in sync.stdout


def test_a_full_disk_is_one_line_naming_the_folder_and_damages_nothing(tiny_config, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        tiny_config.update(
            trials=8, storage_path=str(disk / "results"), finetune={**tiny_config["finetune"], "steps": 5}
        )
        (tmp_path / "search.yaml").write_text(yaml.safe_dump(tiny_config))
        run = prunetune("search", str(tmp_path / "search.yaml"), cwd=tmp_path, timeout=400)
        experiment = disk / "results" / "tiny"
        assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
        assert "Traceback" not in run.stdout + run.stderr, run.stderr[-3000:]
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        [last] = run.stderr.strip().splitlines()  # one line: no traceback, no warnings before it
        assert last.startswith(f"prunetune: error: cannot write {experiment}") and "No space left on device" in last
        assert f"prunetune resume {experiment}" in last and "MLflow tracking stopped too" in last
        status = prunetune("status", str(experiment), cwd=tmp_path)  # the manifest and snapshots still read
        assert status.returncode == 0, status.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_killed_worker_with_retries_runs_its_trial_again_without_an_error(retried, capsys):
    run = retried.runs["sigint"]
    assert "Traceback" not in run.stdout + run.stderr
    assert not [ln for ln in run.stdout.splitlines() if ln.startswith("errored trial_")], run.stdout[-3000:]
    assert retried.killed_trial in retried.done_after_sigterm
    assert (retried.experiment / f"trial_{retried.killed_trial}" / "error.txt").is_file()  # Tune saw it fail
    status = command(capsys, "status", str(retried.experiment))
    assert "errored   0" in status.stdout and "damaged" not in status.stdout, status.stdout


def test_the_re_run_trial_is_in_mlflow_once_with_its_final_metrics(retried):
    """As the live search tracked it, before the server was killed."""
    [(status, metrics)] = retried.mlflow_after_sigterm["children"][retried.killed_trial]
    report = retried.done_after_sigterm[retried.killed_trial]
    assert status == "FINISHED" and metrics["accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["cost/macs"] == pytest.approx(report["cost/macs"])


def test_a_server_killed_mid_search_then_ctrl_c_is_one_warning_and_the_resume_hint(retried):
    run = retried.runs["sigint"]
    assert run.returncode == 130, run.stdout[-2000:] + run.stderr[-3000:]
    warning, interrupted = run.stderr.strip().splitlines()
    assert warning.startswith(f"MLflow tracking at {retried.server.uri} failed") and "prunetune sync" in warning
    assert interrupted == f"interrupted: resume with `prunetune resume {retried.experiment}`"
    assert "(partial: " in run.stdout


def test_a_tracked_resume_leaves_mlflow_equal_to_the_folder_without_sync_and_every_view_agrees(retried, capsys):
    run = retried.runs["resume"]
    assert run.returncode == 0 and not run.stderr.strip(), run.stdout[-2000:] + run.stderr[-3000:]
    children = mlflow_runs(retried.server.uri)["children"]
    done = done_trials(retried.experiment)
    assert len(retried.done_after_sigint) > len(retried.done_after_sigterm)  # finished while the server was down
    assert len(done) > len(retried.done_after_sigint)  # and the resume ran the rest
    for trial_id, report in done.items():
        [(status, metrics)] = children[trial_id]
        assert status == "FINISHED" and metrics["accuracy"] == pytest.approx(report["accuracy"]), trial_id
    assert set(children) == set(done)
    views = best_of_views(retried, capsys)
    assert len(set(views.values())) == 1, views
