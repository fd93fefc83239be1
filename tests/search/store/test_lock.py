"""The experiment lock: one driver per folder, released on exit, taken over from a dead one
(same host: its process is gone; another node: its heartbeat stopped). Real processes hold,
die holding, and race for the lock; no Ray is needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prunetune.search.store import lock as lock_module
from prunetune.search.store.lock import ExperimentLock, ExperimentLocked, holder_of, lock_path

HOLD = textwrap.dedent(
    """
    import sys, time
    from prunetune.search.store.lock import ExperimentLock
    lock = ExperimentLock(sys.argv[1], "prunetune search")
    lock.acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)

RACE = textwrap.dedent(
    """
    import sys
    from prunetune.search.store.lock import ExperimentLock, ExperimentLocked
    sys.stdin.readline()  # start together
    try:
        ExperimentLock(sys.argv[1], "racer").acquire()
    except ExperimentLocked:
        print("refused", flush=True)
    else:
        print("won", flush=True)
    sys.stdin.readline()  # the winner holds the lock until every racer has answered
    """
)


def _holder_process(directory: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_lock_is_one_file_beside_the_folder_and_leaves_nothing_on_release(tmp_path):
    experiment = tmp_path / "results" / "demo"
    with ExperimentLock(experiment, "prunetune search") as held:
        assert held.path == tmp_path / "results" / ".locks" / "demo"
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
        assert not experiment.exists()  # taking the lock does not claim the name
        assert holder_of(experiment).command == "prunetune search"
    assert not (tmp_path / "results").exists()  # nothing written, nothing to block a rerun
    assert holder_of(experiment) is None


def test_a_second_driver_is_refused_in_one_line_naming_the_holder(tmp_path):
    experiment = tmp_path / "demo"
    process = _holder_process(experiment)
    try:
        with pytest.raises(ExperimentLocked) as refused:
            ExperimentLock(experiment).acquire()
        message = str(refused.value)
        assert "\n" not in message and f"pid {process.pid}" in message and "prunetune search" in message
        assert "choose another name" in message
    finally:
        process.kill()
        process.wait()


def test_a_killed_drivers_lock_is_taken_over_on_the_same_host(tmp_path):
    experiment = tmp_path / "demo"
    process = _holder_process(experiment)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert lock_path(experiment).is_file()  # it died holding the lock
    with ExperimentLock(experiment, "prunetune resume") as held:
        assert json.loads(held.path.read_text())["pid"] == os.getpid()


def _plant(experiment: Path, *, host: str, renewed_s_ago: float) -> Path:
    path = lock_path(experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "host": host,
        "boot": "other-boot",
        "pid": 1,
        "started": 1,
        "token": "t",
        "command": "prunetune search",
        "since": 0.0,
    }
    path.write_text(json.dumps(blob))
    stamp = time.time() - renewed_s_ago
    os.utime(path, (stamp, stamp))
    return path


def test_another_nodes_lock_holds_while_renewed_and_is_taken_over_when_stale(tmp_path):
    experiment = tmp_path / "demo"
    _plant(experiment, host="node-b", renewed_s_ago=1)
    with pytest.raises(ExperimentLocked, match="in use by prunetune search \\(pid 1 on node-b"):
        ExperimentLock(experiment).acquire()
    _plant(experiment, host="node-b", renewed_s_ago=lock_module.STALE_S + 5)
    with ExperimentLock(experiment) as held:
        assert json.loads(held.path.read_text())["host"] != "node-b"


def test_the_heartbeat_renews_a_held_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    with ExperimentLock(tmp_path / "demo") as held:
        old = time.time() - 100
        os.utime(held.path, (old, old))
        deadline = time.time() + 10
        while held.path.stat().st_mtime == old and time.time() < deadline:
            time.sleep(0.05)
        assert held.path.stat().st_mtime > old + 50


def test_release_leaves_a_lock_that_is_no_longer_its_own(tmp_path):
    experiment = tmp_path / "demo"
    held = ExperimentLock(experiment)
    held.acquire()
    held.path.unlink()  # e.g. taken over by another node after this driver stalled
    other = _plant(experiment, host="node-b", renewed_s_ago=0)
    held.release()
    assert other.is_file()


def test_drivers_racing_for_a_dead_lock_let_exactly_one_win(tmp_path):
    experiment = tmp_path / "demo"
    dead = _holder_process(experiment)
    dead.kill()
    dead.wait()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(experiment)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for racer in racers:
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outcomes = [racer.stdout.readline().strip() for racer in racers]
    for racer in racers:
        racer.communicate("done\n", timeout=60)
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"], outcomes


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def _wait_for(condition, what: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert process.poll() is None, f"the driver exited before {what}: {process.stdout.read()[-3000:]}"
        assert time.time() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.integration
def test_two_drivers_a_killed_one_and_a_renamed_folder(tiny_config, tmp_path):
    """A second driver of the same name is refused while the first runs; the first is killed
    holding the lock and its folder renamed; a new search of the old name takes the dead lock
    over; resuming the renamed folder finishes it there and leaves the new experiment alone."""
    import yaml

    tiny_config.update(trials=4, concurrency=1, tracking={"enabled": False})
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    results = Path(tiny_config["storage_path"])
    experiment = results / "tiny"
    first = subprocess.Popen(
        [sys.executable, "-m", "prunetune", "search", str(path)],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: holder_of(experiment) is not None, "lock", first)
        second = _cli("search", str(path), "--set", "searcher.seed=7", cwd=tmp_path)
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert f"in use by prunetune search (pid {first.pid}" in second.stderr
        _wait_for(lambda: any(experiment.glob("experiment_state-*.json")), "Tune snapshot", first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray it started
        first.wait()
    assert lock_path(experiment).is_file() and holder_of(experiment) is None  # died holding it
    assert len(json.loads((experiment / "prunetune.json").read_text())["config"]) > 0
    experiment.rename(results / "renamed")

    # The name is free again: a new search takes the killed driver's lock over and runs.
    other = _cli("search", str(path), "--set", "trials=1", cwd=tmp_path)
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    frontier = (experiment / "frontier.csv").read_text()

    resumed = _cli("resume", str(results / "renamed"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming renamed" in resumed.stdout and "0 errored" in resumed.stdout
    assert len(list((results / "renamed").glob("trial_*"))) == 4  # new trials too land in the folder resumed
    assert (experiment / "frontier.csv").read_text() == frontier  # the other experiment is untouched
    assert len(list(experiment.glob("trial_*"))) == 1
    assert not (results / ".locks").exists()  # every lock released
    status = _cli("status", str(results / "renamed"), cwd=tmp_path)
    assert "done      4 of 4" in status.stdout, status.stdout
