"""One reader of Tune's trial folders (search/store/trials.py): ``status`` (read_progress),
``export``/``finetune`` (read_trials) and ``sync`` read a trial whose last report was cut short
the same way: the folder is damaged, named with its file and what is wrong, and left out by
every reader; none of them raises, and none judges the trial by an older report.

The experiment is written by hand in Tune's on-disk formats (no Ray, no torch model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.store.manifest import MANIFEST
from prunetune.search.store.progress import read_progress
from prunetune.search.store.trials import (
    damaged_trials,
    find_trial,
    read_reports,
    read_trial_folder,
    read_trials,
)
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


def test_status_names_the_damaged_trial_and_the_errors_last_line(experiment):
    progress = read_progress(experiment)

    states = {t.trial_id: t for t in progress.trials}
    assert states["cut00001"].status == "damaged"
    assert str(experiment / "trial_cut00001" / "result.json") in states["cut00001"].reason
    assert "line 3 of 3, its last report, is not whole JSON" in states["cut00001"].reason
    assert states["err00002"].status == "errored" and states["err00002"].reason == "DivergedError: fine-tune diverged"
    assert progress.left == 1  # 3 configured - 1 damaged - 1 errored (not left)


def test_export_leaves_a_damaged_trial_out_and_says_why_it_cannot_use_it(experiment):
    trials = read_trials(experiment)

    assert trials == {}  # the damaged trial is left out; the errored one has no whole report
    assert [d.trial_id for d in damaged_trials(experiment)] == ["cut00001"]
    with pytest.raises(
        ConfigError, match=r"trial cut00001 \(.*trial_cut00001\) cannot be used: .*result.json.*cut short"
    ):
        find_trial(trials, "trial_cut00001", experiment)
    with pytest.raises(ConfigError, match=r"trial err00002 .* cannot be used: it errored before its first report"):
        find_trial(trials, "err00002", experiment)


def test_sync_names_the_damaged_trial_and_logs_the_errors_last_line(experiment):
    damaged = []
    summaries = {s.trial_id: s for s in sync.read_trials(experiment, damaged)}

    assert "cut00001" not in summaries and [d.trial_id for d in damaged] == ["cut00001"]
    errored = summaries["err00002"]
    assert errored.status == "FAILED" and errored.error == "DivergedError: fine-tune diverged"
    assert errored.profile == PROFILE and errored.metrics == {}  # its config comes from params.json


def test_a_whole_trial_is_read_the_same_by_every_reader(experiment):
    write_trial(experiment, "ok00003", [report("ok00003", 1, 0.6), report("ok00003", 2, 0.7, done=True)])

    state = {t.trial_id: t for t in read_progress(experiment).trials}["ok00003"]
    info = read_trials(experiment)["ok00003"]
    summary = {s.trial_id: s for s in sync.read_trials(experiment)}["ok00003"]
    assert (state.status, state.accuracy) == ("done", 0.7)
    assert info.metrics["accuracy"] == summary.metrics["accuracy"] == 0.7
    assert info.checkpoint == experiment / "trial_ok00003" / "checkpoint_000001"
    assert summary.status == "FINISHED" and summary.step == 2


def test_a_trial_a_resume_ran_again_has_no_error(experiment):
    folder = write_trial(experiment, "re00004", [report("re00004", 1, 0.6), report("re00004", 2, 0.8, done=True)])
    (folder / "error.txt").write_text(TRACEBACK)  # the first attempt's: its worker was killed

    assert read_trial_folder(folder).error is None
    assert {s.trial_id: s for s in sync.read_trials(experiment)}["re00004"].status == "FINISHED"
    assert {t.trial_id: t for t in read_progress(experiment).trials}["re00004"].status == "done"


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


def test_a_taper_run_with_a_cut_report_is_left_out_by_every_reader(experiment):
    taper = {"method": "taper", "taper": {"levels": [0.8, 0.5]}}
    levels = [report("tap00004", i + 1, 0.8 - 0.1 * i, level=level, config=taper) for i, level in enumerate((0.8, 0.5))]
    write_trial(experiment, "tap00004", levels, tail=CUT, config=taper)

    assert not [t for t in read_trials(experiment) if t.startswith("tap00004")]
    damaged = []
    assert not [s for s in sync.read_trials(experiment, damaged) if s.trial_id.startswith("tap00004")]
    assert "tap00004" in [d.trial_id for d in damaged]


def test_a_whole_taper_run_gives_one_point_per_level_in_every_reader(experiment):
    taper = {"method": "taper", "taper": {"levels": [0.8, 0.5]}}
    levels = [report("tap00005", i + 1, 0.8 - 0.1 * i, level=level, config=taper) for i, level in enumerate((0.8, 0.5))]
    write_trial(experiment, "tap00005", levels, config=taper)

    points = sorted(t for t in read_trials(experiment) if t.startswith("tap00005"))
    assert points == ["tap00005@0.5", "tap00005@0.8"]
    synced = [s for s in sync.read_trials(experiment) if s.trial_id.startswith("tap00005")]
    assert [(s.trial_id, s.role) for s in synced] == [
        ("tap00005", "taper"),
        ("tap00005@0.8", "taper_point"),
        ("tap00005@0.5", "taper_point"),
    ]
    assert [s.time_total_s for s in synced[1:]] == [10.0, 10.0]  # each point charged its own level's time
    assert all(s.profile == PROFILE and s.status == "FINISHED" for s in synced[1:])
