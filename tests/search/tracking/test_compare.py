"""The compare table and overlay from trial values (no MLflow needed)."""

from __future__ import annotations

import json

from prunetune.search.tracking.compare import ComparedSearch, ComparedTrial, best_at, frontier_points, write_compare


def trial(name: str, accuracy: float, relative: float, order: int) -> ComparedTrial:
    return ComparedTrial(name, accuracy, relative, cpu_hours=0.5, ended=order)


TRIALS = (trial("a", 0.60, 0.30, 1), trial("b", 0.80, 0.90, 2), trial("c", 0.70, 0.25, 3), trial("d", 0.75, 0.55, 4))


def test_best_at_a_level_counts_trials_and_compute_until_first_reached():
    best = best_at(TRIALS, 0.6)
    assert (best.accuracy, best.trial_id, best.trials_spent, best.cpu_hours_spent) == (0.75, "d", 4, 2.0)
    assert best_at(TRIALS, 0.3).trial_id == "c"
    assert best_at(TRIALS, 1.0).trials_spent == 2
    assert best_at(TRIALS, 0.2).accuracy is None


def test_frontier_points_are_cheapest_first_and_improving():
    assert [t for _, _, t in frontier_points(TRIALS)] == ["c", "d", "b"]


def test_write_compare_writes_table_and_both_plots(tmp_path):
    searches = [ComparedSearch("study/x", "r1", "study", TRIALS), ComparedSearch("study/y", "r2", "study", TRIALS[:2])]
    files = write_compare(searches, "macs", tmp_path)
    blob = json.loads(files["json"].read_text())
    assert [s["label"] for s in blob["searches"]] == ["study/x", "study/y"]
    levels = {row["level"]: row["accuracy"] for row in blob["levels"]["study/y"]}
    assert levels[0.2] is None and levels[0.3] == 0.60  # y's cheapest trial costs 30% of dense
    assert "study\\u002fx" in files["html"].read_text() and files["png"].stat().st_size > 10_000
    assert "100%" in files["txt"].read_text()
