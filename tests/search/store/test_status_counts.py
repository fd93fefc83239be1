"""``prunetune status`` and ``resume`` on experiment folders written by hand (no Ray): what is
done, errored and left, and a finished search that resume refuses to restart."""

from __future__ import annotations

import json
from pathlib import Path

from prunetune.search import cli
from prunetune.search.config import parse_config
from tests.conftest import TINY
from tests.search.conftest import write_manifest


def experiment(root: Path, trials: dict[str, str], *, configured: int = 50, finished: bool = True, **config) -> Path:
    """An experiment folder: the manifest, Tune's snapshot with ``trials`` (id -> Tune status),
    each done trial's last report, errored ones' error.txt, and (when ``finished``) the
    frontier.json a run that ended on its own writes last."""
    directory = root / "exp"
    directory.mkdir(parents=True)
    raw = parse_config({**TINY, "name": "exp", "trials": configured, "storage_path": str(root), **config})
    write_manifest(directory, raw)
    data = [[json.dumps({"trial_id": tid, "status": status}), "{}"] for tid, status in trials.items()]
    (directory / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))
    for tid, status in trials.items():
        folder = directory / f"trial_{tid}"
        folder.mkdir()
        if status == "TERMINATED":
            report = {"accuracy": 0.5 + len(tid) / 100, "feasible": 1.0, "done": True, "trial_id": tid}
            (folder / "result.json").write_text(json.dumps(report) + "\n")
        if status == "ERROR":
            (folder / "error.txt").write_text("Traceback ...\nValueError: meter unplugged\n")
    if finished:
        (directory / "frontier.json").write_text(json.dumps({"cost": "macs", "partial": False, "frontier": []}))
    return directory


def _status(directory: Path, capsys) -> dict[str, str]:
    assert cli.main(["status", str(directory)]) == 0
    out = capsys.readouterr().out
    return {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}


def test_a_finished_search_whose_searcher_ran_out_early_has_nothing_left(tmp_path, capsys):
    directory = experiment(tmp_path, {f"t{i:02d}": "TERMINATED" for i in range(27)}, configured=50)
    lines = _status(directory, capsys)
    assert "(finished)" in lines["experiment"]
    assert lines["left"].split() == ["left", "0"]
    assert lines["dense"].startswith("dense model: accuracy unknown, 1,000 macs")


def test_errored_trials_are_not_left(tmp_path, capsys):
    trials = {"a": "TERMINATED", "b": "ERROR", "c": "RUNNING"}
    directory = experiment(tmp_path, trials, configured=5, finished=False)
    lines = _status(directory, capsys)
    assert lines["errored"].split() == ["errored", "1"] and lines["left"].split() == ["left", "3"]  # 5 - done - errored
    assert "(not finished)" in lines["experiment"]


def test_a_taper_sweep_counts_its_combinations_not_the_trials_setting(tmp_path, capsys):
    taper = {"levels": [0.8, 0.5], "cost": "macs", "sweep": {"lr": [0.01, 0.02]}}
    directory = experiment(tmp_path, {"a": "TERMINATED"}, configured=16, finished=False, method="taper", taper=taper)
    lines = _status(directory, capsys)
    assert lines["done"].startswith("done      1 of 2 configured trials") and lines["left"].split() == ["left", "1"]


def test_resume_of_a_finished_search_says_so_without_starting_ray(tmp_path, capsys):
    import sys

    directory = experiment(tmp_path, {f"t{i}": "TERMINATED" for i in range(3)}, configured=3)
    assert cli.main(["resume", str(directory)]) == 0
    assert "is finished (3 trials done): nothing to resume" in capsys.readouterr().out
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_search_that_ended_has_nothing_running_even_when_tunes_snapshot_says_so(tmp_path, capsys):
    """A trial worker SIGKILLed (max_failures 0): the search went on and ended on its own, but
    Tune's last snapshot still calls the killed trial RUNNING."""
    directory = experiment(tmp_path, {"a": "TERMINATED", "k": "RUNNING"}, configured=2)
    (directory / "trial_k" / "error.txt").write_text("Traceback ...\nActorDiedError: the worker died\n")
    lines = _status(directory, capsys)
    assert "(finished)" in lines["experiment"]
    assert lines["errored"].split() == ["errored", "1"] and lines["running"].split() == ["running", "0"]
    assert lines["best"].startswith("best      validation accuracy 0.5100 in trial_a")
