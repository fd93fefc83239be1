"""What a search prints: the live view's line (fast, on stand-in trials), then real searches
through the CLI: a short readable log, one line per errored trial, exit codes for a search
where every trial errored and for Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from prunetune.search.run.console import LiveView, best_text, error_line

REPO = Path(__file__).resolve().parents[3]


def _trial(tid, status, accuracy=None, feasible=True, rel=0.4, path="/x"):
    result = {} if accuracy is None else {"accuracy": accuracy, "feasible": float(feasible), "rel/macs": rel}
    return SimpleNamespace(trial_id=tid, status=status, last_result=result, path=path, error_file=None)


def test_the_live_line_counts_trials_and_names_the_best_that_meets_every_budget():
    view = LiveView("macs", total=6)
    view.setup(start_time=0.0)
    trials = [
        _trial("a", "TERMINATED", 0.91, rel=0.45),
        _trial("b", "TERMINATED", 0.97, feasible=False, rel=0.8),  # more accurate, over budget
        _trial("c", "ERROR"),
        _trial("d", "RUNNING"),
    ]
    line = view.status_line(trials)
    assert line.startswith("trials 2 done, 1 running, 1 errored, 2 left | best feasible 0.9100 at 45.0% macs | ")
    assert "elapsed, ETA" in line
    assert best_text([_trial("b", "TERMINATED", 0.97, feasible=False)], "macs") == "no feasible trial yet"


def test_an_errored_trial_is_one_line_with_its_reason_and_log(tmp_path):
    log = tmp_path / "error.txt"
    log.write_text(
        "Traceback (most recent call last):\n  File ...\nValueError: meter cannot handle a stem of 2 channels\n"
    )
    staged = tmp_path / "staging" / "error.txt"  # Tune's driver copy, before the run ends
    staged.parent.mkdir()
    log.rename(staged)
    trial = SimpleNamespace(trial_id="abc", status="ERROR", last_result={}, path=str(tmp_path), error_file=str(staged))
    assert error_line(trial) == f"errored trial_abc: ValueError: meter cannot handle a stem of 2 channels (log: {log})"


def _search(config: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


NOISE = (
    "╭",
    "Current best trial",
    "AIR_VERBOSITY",
    "tensorboard",
    "repeated",
    "Tuner.restore",
    "Traceback",
    "Trial status:",
    "\x1b[",
)


@pytest.mark.integration
def test_a_small_search_prints_a_short_readable_log(tracked_search):
    """The session's tracked search (tests/search/conftest.py): 3 trials, tracked live."""
    out = tracked_search.output
    lines = out.stdout.splitlines()
    assert len(lines) < 30, out.stdout  # Tune's own output was ~20 lines per trial
    for noise in NOISE:
        assert noise not in out.stdout + out.stderr, noise
    assert any(line.startswith("dense model: accuracy 0.") and " macs" in line for line in lines)
    assert any(line.startswith("trials 3 done, 0 running, 0 errored, 0 left | ") for line in lines)
    table = lines[lines.index(next(line for line in lines if line.startswith("trial "))) + 2]
    assert table.startswith("dense ")  # the reference row heads the frontier
    listed = {line.split(": ", 1)[1] for line in lines if line.startswith("frontier ")}
    assert {str(tracked_search.directory / name) for name in ("frontier.png", "frontier.html")} <= listed
    assert (tracked_search.directory.parent / "plotly.min.js").is_file()


@pytest.mark.integration
def test_quiet_prints_only_the_result(quiet_uri_search):
    out = quiet_uri_search.output  # a 2-trial search with --quiet (tests/search/conftest.py)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not any(line.startswith(("trials ", "dense model:")) for line in out.stdout.splitlines())
    assert "Frontier: accuracy vs macs" in out.stdout


@pytest.mark.integration
def test_verbose_brings_back_tunes_own_output(tiny_config, tmp_path):
    tiny_config.update(trials=2, tracking={"enabled": False})
    out = _search(tiny_config, tmp_path, "--verbose")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Trial status:" in out.stdout + out.stderr  # Tune's own status table, per trial state
    assert not any(line.startswith("trials ") for line in out.stdout.splitlines())  # instead of the live line
    assert "Frontier: accuracy vs macs" in out.stdout


@pytest.mark.integration
def test_a_search_where_every_trial_errored_fails_with_one_line_each(diverged_search):
    out = diverged_search.output
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    errored = [line for line in out.stdout.splitlines() if line.startswith("errored trial_")]
    assert len(errored) == 2 and all("fine-tune diverged: loss is " in line and " (log: " in line for line in errored)
    log = Path(errored[0].rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.parent.parent == diverged_search.directory  # in the experiment folder
    assert "DivergedError" in log.read_text()  # the full story is where the line says
    assert "Traceback" not in out.stdout + out.stderr
    assert "search failed: all 2 trials errored" in out.stderr


def _a_trial_done(experiment: Path) -> bool:
    for result in experiment.glob("trial_*/result.json"):
        try:
            if any(json.loads(line).get("done") for line in result.read_text().splitlines() if line.strip()):
                return True
        except (OSError, ValueError):  # being written
            continue
    return False


@pytest.mark.integration
def test_ctrl_c_exits_130_with_a_partial_frontier_and_how_to_resume(tiny_config, tmp_path):
    tiny_config.update(
        trials=40, concurrency=1, tracking={"enabled": False}, finetune={**tiny_config["finetune"], "steps": 30}
    )
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    experiment = Path(tiny_config["storage_path"]) / "tiny"
    with (tmp_path / "out.txt").open("w") as stdout, (tmp_path / "err.txt").open("w") as stderr:
        search = subprocess.Popen(
            [sys.executable, "-m", "prunetune", "search", str(path)], stdout=stdout, stderr=stderr, cwd=tmp_path
        )
    deadline = time.monotonic() + 300
    while not _a_trial_done(experiment):  # the first trial finishing is the signal to interrupt
        assert search.poll() is None, "the search ended before it could be interrupted"
        assert time.monotonic() < deadline, "no trial finished within 300 s"
        time.sleep(0.1)
    search.send_signal(signal.SIGINT)
    search.wait(timeout=300)
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert search.returncode == 130, out[-3000:] + err[-3000:]
    assert f"interrupted: resume with `prunetune resume {experiment}`" in err
    assert "Tuner.restore" not in out + err
    assert "(partial: the search was interrupted" in out
    assert json.loads((experiment / "frontier.json").read_text())["partial"] is True
    status = subprocess.run(
        [sys.executable, "-m", "prunetune", "status", str(experiment)], capture_output=True, text=True
    )
    assert "(not finished)" in status.stdout and "left      0" not in status.stdout
