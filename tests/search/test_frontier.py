from __future__ import annotations

import csv
import json

from prunetune.search.store.frontier import TrialRecord, format_table, pareto, plot_frontier, write_frontier


def _rec(tid, acc, macs, feasible=True):
    return TrialRecord(tid, acc, 0.1, feasible, {"macs": macs}, {"macs": macs / 100}, {"g": 0.5})


RECORDS = [_rec("a", 0.90, 50), _rec("b", 0.80, 30), _rec("c", 0.85, 60), _rec("d", 0.95, 40, feasible=False), _rec("e", 0.70, 20)]


def test_pareto_keeps_only_undominated_feasible_trials_cheapest_first():
    assert [r.trial_id for r in pareto(RECORDS, "macs")] == ["e", "b", "a"]


def test_frontier_files_and_table(tmp_path):
    front = pareto(RECORDS, "macs")
    paths = write_frontier(front, "macs", tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["trial_id"] for r in rows] == ["e", "b", "a"] and float(rows[2]["accuracy"]) == 0.9
    assert json.loads(paths["json"].read_text())["frontier"][0]["profile"] == {"g": 0.5}
    assert "0.9000" in format_table(front, "macs")
    png = plot_frontier(RECORDS, "macs", tmp_path / "f.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_empty_frontier_says_what_to_do():
    assert "no feasible trial" in format_table([], "macs")


def test_pareto_front_works_on_plain_cost_accuracy_pairs():
    from prunetune.search.store.frontier import pareto_front

    pairs = [(50, 0.90), (30, 0.80), (60, 0.85), (30, 0.75), (20, 0.70), (40, 0.80)]
    front = pareto_front(pairs, cost=lambda p: p[0], accuracy=lambda p: p[1])
    assert front == [(20, 0.70), (30, 0.80), (50, 0.90)]  # at one cost the most accurate; ties on accuracy lose
