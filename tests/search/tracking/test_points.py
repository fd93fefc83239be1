"""A taper run's frontier points as tracking logs them (search/tracking/points.py), read from a
running trial through the Ray adapter: a stand-in trial with Tune's checkpoint-manager shape."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow.fs

from prunetune.search.tracking.points import point_id, point_summaries, trial_points


def fake_trial(tmp_path, levels: list[float]):
    """A taper trial that has reported one checkpoint per level (and one report without)."""
    results = []
    for step, level in enumerate(levels, start=1):
        directory = tmp_path / f"checkpoint_{step:06d}"
        directory.mkdir()
        (directory / "profile.json").write_text(json.dumps({"g": level}))
        checkpoint = SimpleNamespace(filesystem=pyarrow.fs.LocalFileSystem(), path=str(directory))
        metrics = {"level": level, "training_iteration": step, "time_total_s": 5.0 * step, "accuracy": level}
        results.append(SimpleNamespace(metrics=metrics, checkpoint=checkpoint))
    results.append(SimpleNamespace(metrics={"training_iteration": 9}, checkpoint=results[0].checkpoint))
    manager = SimpleNamespace(best_checkpoint_results=results)
    return SimpleNamespace(trial_id="t1", run_metadata=SimpleNamespace(checkpoint_manager=manager))


def test_a_running_taper_trials_points_are_named_by_level_with_their_profiles(tmp_path):
    points = trial_points(fake_trial(tmp_path, [0.9, 0.6]))

    assert [p.trial_id for p in points] == ["t1@0.9", "t1@0.6"] == [point_id("t1", 0.9), point_id("t1", 0.6)]
    assert [p.profile for p in points] == [{"g": 0.9}, {"g": 0.6}]
    assert [p.time_total_s for p in points] == [5.0, 5.0]  # the run's time, split between its levels
    assert all(p.role == "taper_point" and p.taper_trial == "t1" and p.status == "FINISHED" for p in points)
    assert points[1].checkpoint == str(tmp_path / "checkpoint_000002")


def test_point_summaries_sort_by_step_and_make_finished_records():
    reports = [
        (
            {"level": 0.5, "training_iteration": 2, "time_total_s": 9.0, "accuracy": 0.7, "feasible": 1.0},
            {"g": 0.5},
            "b",
        ),
        (
            {"level": 0.8, "training_iteration": 1, "time_total_s": 4.0, "accuracy": 0.8, "feasible": 1.0},
            {"g": 0.8},
            "a",
        ),
    ]

    points = point_summaries("run", reports)
    assert [(p.trial_id, p.time_total_s) for p in points] == [("run@0.8", 4.0), ("run@0.5", 5.0)]
    assert points[0].record().checkpoint == "a" and points[1].record().accuracy == 0.7
