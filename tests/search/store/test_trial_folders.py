"""One reader of Tune's trial folders (search/store/trials.py): ``status`` (read_progress),
``export``/``finetune`` (read_trials) and ``sync`` read a trial whose last report was cut short
by a crash the same way: the previous whole report stands, and none of them raises.

The experiment is written by hand in Tune's on-disk formats (no Ray, no torch model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunetune.search.config import parse_config
from prunetune.search.store.manifest import MANIFEST
from prunetune.search.store.progress import read_progress
from prunetune.search.store.trials import best_trial, find_trial, read_reports, read_trial_folder, read_trials
from prunetune.search.tracking import sync

PROFILE = {"layer1": 0.5, "layer2": 0.75}
CUT = '{"accuracy": 0.99, "feasible": 1.0, "done": tr'  # a report the crash cut short, no newline
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nDivergedError: fine-tune diverged\n\n'


def report(trial_id: str, step: int, accuracy: float, done: bool = False, **extra) -> dict:
    return {
        "trial_id": trial_id,
        "training_iteration": step,
        "accuracy": accuracy,
        "loss": 1.0 - accuracy,
        "feasible": 1.0,
        "cost/macs": 50.0,
        "rel/macs": 0.5,
        "done": done,
        "timestamp": 1_700_000_000 + step,
        "time_total_s": 10.0 * step,
        "checkpoint_dir_name": f"checkpoint_{step - 1:06d}",
        "config": extra.pop("config", {"profile": PROFILE}),
        **extra,
    }


def write_trial(
    experiment: Path, trial_id: str, reports: list[dict], tail: str = "", config: dict | None = None
) -> Path:
    """A trial folder: params.json (indented, as Tune writes it), result.json, checkpoints."""
    folder = experiment / f"trial_{trial_id}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(config or {"profile": PROFILE}, indent=2))
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports) + tail)
    for r in reports:
        checkpoint = folder / r["checkpoint_dir_name"]
        checkpoint.mkdir()
        (checkpoint / "model.pt").write_bytes(b"weights")
        (checkpoint / "profile.json").write_text(json.dumps(PROFILE))
    return folder


@pytest.fixture
def experiment(tmp_path) -> Path:
    """``cut00001`` finished, then its next report was cut off; ``err00002`` errored before
    its first whole report; Tune's last snapshot knows only of the error."""
    config = parse_config({"name": "cut", "storage_path": str(tmp_path), "trials": 3, "tracking": {"enabled": False}})
    directory = tmp_path / "cut"
    directory.mkdir()
    manifest = {
        "version": 1,
        "config": config.model_dump(mode="json"),
        "base_checkpoint": "base.pt",
        "num_classes": 10,
        "dense_costs": {"macs": 100.0},
        "groups": {"layer1": 8, "layer2": 16},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest))
    write_trial(directory, "cut00001", [report("cut00001", 1, 0.5), report("cut00001", 2, 0.7, done=True)], tail=CUT)
    errored = write_trial(directory, "err00002", [], tail=CUT)
    (errored / "error.txt").write_text(TRACEBACK)
    snapshot = {"trial_data": [[json.dumps({"trial_id": "err00002", "status": "ERROR"}), "{}"]], "runner_data": {}}
    (directory / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(snapshot))
    return directory


def test_status_reads_the_last_whole_report_and_the_errors_last_line(experiment):
    progress = read_progress(experiment)

    states = {t.trial_id: t for t in progress.trials}
    assert (states["cut00001"].status, states["cut00001"].accuracy, states["cut00001"].feasible) == ("done", 0.7, True)
    assert states["err00002"].status == "errored" and states["err00002"].reason == "DivergedError: fine-tune diverged"
    assert progress.best.trial_id == "cut00001" and progress.left == 1  # 3 configured - 1 done - 1 errored (not left)


def test_export_and_finetune_read_the_last_whole_report_and_its_checkpoint(experiment):
    trials = read_trials(experiment)

    assert list(trials) == ["cut00001"]  # the errored trial has no whole report
    chosen = find_trial(trials, "trial_cut00001")
    assert (
        chosen.metrics["accuracy"] == 0.7 and chosen.checkpoint == experiment / "trial_cut00001" / "checkpoint_000001"
    )
    assert dict(chosen.profile) == PROFILE and best_trial(trials).trial_id == "cut00001"


def test_sync_logs_the_last_whole_report_and_the_errors_last_line(experiment):
    summaries = {s.trial_id: s for s in sync.read_trials(experiment)}

    finished, errored = summaries["cut00001"], summaries["err00002"]
    assert finished.status == "FINISHED" and finished.metrics["accuracy"] == 0.7 and finished.step == 2
    assert finished.checkpoint == str(experiment / "trial_cut00001" / "checkpoint_000001")
    assert "config" not in finished.metrics and finished.profile == PROFILE
    assert errored.status == "FAILED" and errored.error == "DivergedError: fine-tune diverged"
    assert errored.profile == PROFILE and errored.metrics == {}  # its config comes from params.json


def test_a_trial_cut_off_mid_run_is_the_same_report_to_every_reader(experiment):
    write_trial(experiment, "mid00003", [report("mid00003", 1, 0.6)], tail=CUT)

    state = {t.trial_id: t for t in read_progress(experiment).trials}["mid00003"]
    info = read_trials(experiment)["mid00003"]
    summary = {s.trial_id: s for s in sync.read_trials(experiment)}["mid00003"]
    assert state.status == "running"  # not done: `prunetune resume` runs it on
    assert info.metrics["accuracy"] == summary.metrics["accuracy"] == 0.6
    assert summary.status == "KILLED" and summary.step == 1


def test_a_cut_line_before_a_resumed_trials_reports_is_skipped(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps({"training_iteration": 1})
        + "\n"
        + CUT
        + json.dumps({"training_iteration": 2})
        + "\n"
        + json.dumps({"training_iteration": 3})
        + "\n\n"
    )

    assert [r["training_iteration"] for r in read_reports(path)] == [1, 3]
    assert read_reports(tmp_path / "missing.json") == ()


def test_a_folder_with_no_whole_report_or_params_reads_as_empty(tmp_path):
    (tmp_path / "trial_x").mkdir()
    (tmp_path / "trial_x" / "params.json").write_text('{"profile": {"a"')  # cut too
    (tmp_path / "trial_x" / "error.txt").write_text("\n\n")

    folder = read_trial_folder(tmp_path / "trial_x")
    assert folder.reports == () and folder.config == {} and folder.trial_id == "x"
    assert folder.info() is None and folder.checkpoint is None and folder.error == "failed (no reason given)"


def test_taper_points_survive_a_cut_report_in_every_reader(experiment):
    taper = {"method": "taper", "taper": {"levels": [0.8, 0.5]}}
    levels = [report("tap00004", i + 1, 0.8 - 0.1 * i, level=level, config=taper) for i, level in enumerate((0.8, 0.5))]
    write_trial(experiment, "tap00004", levels, tail=CUT, config=taper)

    points = sorted(t for t in read_trials(experiment) if t.startswith("tap00004"))
    assert points == ["tap00004@0.5", "tap00004@0.8"]
    synced = [s for s in sync.read_trials(experiment) if s.trial_id.startswith("tap00004")]
    assert [(s.trial_id, s.role) for s in synced] == [
        ("tap00004", "taper"),
        ("tap00004@0.8", "taper_point"),
        ("tap00004@0.5", "taper_point"),
    ]
    assert [s.time_total_s for s in synced[1:]] == [10.0, 10.0]  # each point charged its own level's time
    assert all(s.profile == PROFILE and s.status == "FINISHED" for s in synced[1:])
