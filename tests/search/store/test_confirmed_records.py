"""Confirmed figures name the search's best wherever a search reports its result (``export
--best``, MLflow's totals), while the frontier keeps every search trial at its validation
accuracy and draws confirmed profiles beside it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from prunetune.search.store.frontier import TrialRecord, confirmed, pareto
from prunetune.search.store.trials import TrialInfo, best_trial


def record(
    trial_id: str,
    accuracy: float,
    macs: float,
    *,
    confirms: str | None = None,
    test: float | None = None,
    stopped: bool = False,
) -> TrialRecord:
    return TrialRecord(
        trial_id,
        accuracy,
        0.1,
        True,
        {"macs": macs},
        {"macs": macs / 100},
        {"a": macs / 100},
        finetune_steps=300 if confirms else 40,
        confirms=confirms,
        test_accuracy=test,
        stopped=stopped,
    )


def test_confirmations_merge_into_one_record_per_profile_with_the_mean_test_accuracy():
    records = [
        record("s1", 0.70, 40),
        record("s2", 0.80, 30),
        record("c1", 0.90, 30, confirms="s2", test=0.84),
        record("c2", 0.91, 30, confirms="s2", test=0.86),
    ]
    merged = confirmed(records)
    [point] = [r for r in merged if r.confirmed]
    assert point.accuracy == pytest.approx(0.85) and point.seeds == 2 and point.search_accuracy == 0.80
    assert point.trial_id == "c1" and point.confirms == "s2"
    assert {r.trial_id for r in merged if not r.confirmed} == {"s1", "s2"}  # the search trials stay listed
    # every finished search trial stays on the frontier at its validation accuracy
    assert [r.trial_id for r in pareto(merged, "macs")] == ["s2"]


def test_a_uniform_reference_is_read_against_never_part_of_the_frontier(tmp_path):
    import json

    from prunetune.search.store.frontier import Reference, format_table, references
    from prunetune.search.store.plots import render_frontier

    uniform = [
        replace(
            record(f"u{i}", 0.9, 30, confirms="uniform@0.3", test=t), reference="uniform", profile={"a": 0.3, "b": 0.3}
        )
        for i, t in enumerate((0.95, 0.97))
    ]
    records = confirmed([record("s1", 0.80, 30), record("c1", 0.9, 30, confirms="s1", test=0.88), *uniform])
    [ref] = references(records)
    assert ref.accuracy == pytest.approx(0.96) and ref.seeds == 2
    assert [r.trial_id for r in pareto(records, "macs")] == ["s1"]  # the uniform reference is not the search's
    best = best_trial(
        {
            t.trial_id: t
            for t in [
                _info("c1", 0.9, test=0.88, source="s1"),
                _info("u0", 0.9, test=0.99, source="uniform@0.3", reference="uniform"),
            ]
        }
    )
    assert best.trial_id == "c1"
    reference = Reference(dense_accuracy=0.99, dense_costs={"macs": 100.0}, baseline=(ref,))
    table = format_table(pareto(records, "macs"), "macs", reference).splitlines()
    assert table[3].startswith("uniform (test acc)") and "0.9600" in table[3] and "all 0.30" in table[3]
    files = render_frontier(records, ("macs",), tmp_path, "t", reference=reference)
    written = json.loads(files["json"].read_text())
    assert [r["trial_id"] for r in written["frontier"]] == ["s1"] and written["uniform"][0][
        "accuracy"
    ] == pytest.approx(0.96)
    assert [r["trial_id"] for r in written["confirmed"]] == ["c1"]
    assert written["best"] == {
        "trial_id": "c1",
        "accuracy": pytest.approx(0.88),
        "kind": "confirmed test accuracy",
        "source": "s1",
    }
    assert '"name":"uniform"' in files["html"].read_text().replace(" ", "")  # the dashed reference curve
    from prunetune.search.store.plots import frontier_figure

    axes = frontier_figure(records, "macs", reference=reference).axes[0]
    assert axes.get_ylabel() == "accuracy: trials validation, \u25c6 confirmed test"
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "uniform" in legend and "confirmed (test accuracy)" in legend


def test_without_confirmations_the_frontier_leaves_out_trials_a_scheduler_stopped():
    records = [record("s1", 0.70, 40), record("s2", 0.95, 30, stopped=True), record("s3", 0.60, 20)]
    assert confirmed(records) == records
    assert [r.trial_id for r in pareto(records, "macs")] == ["s3", "s1"]


def _info(
    trial_id: str,
    accuracy: float,
    *,
    test: float | None = None,
    source: str | None = None,
    reference: str | None = None,
) -> TrialInfo:
    metrics = {"accuracy": accuracy, "feasible": 1.0, "cost/macs": 10.0}
    if test is not None:
        metrics |= {"test/accuracy": test, "confirms": source}
    if reference is not None:
        metrics["reference"] = reference
    return TrialInfo(trial_id, metrics, {"a": 0.5}, Path(f"/ckpt/{trial_id}"), Path(f"/trials/{trial_id}"))


def test_export_best_takes_the_best_confirmed_profile_by_mean_test_accuracy():
    trials = {
        t.trial_id: t
        for t in [
            _info("s1", 0.99),
            _info("s2", 0.80),
            _info("c1", 0.90, test=0.95, source="s1"),
            _info("c2", 0.90, test=0.70, source="s1"),  # mean 0.825
            _info("c3", 0.90, test=0.85, source="s2"),
            _info("c4", 0.90, test=0.84, source="s2"),  # mean 0.845
        ]
    }
    assert best_trial(trials).trial_id == "c3"  # not the best search-time accuracy, nor the luckiest seed


def test_mlflow_totals_report_the_best_confirmed_accuracy():
    from prunetune.search.config import parse_config
    from prunetune.search.tracking.tracker import TrialSummary, search_totals

    def summary(trial_id, metrics):
        return TrialSummary(
            trial_id, {"a": 0.5}, {"feasible": 1.0, "cost/macs": 10.0, "rel/macs": 0.1, **metrics}, "FINISHED"
        )

    summaries = [
        summary("s1", {"accuracy": 0.99}),
        summary("c1", {"accuracy": 0.9, "test/accuracy": 0.8, "confirms": "s1"}),
    ]
    totals = search_totals(summaries, parse_config({}), 1.0)
    assert totals["best_feasible_accuracy"] == pytest.approx(0.8) and totals["confirmed_profiles"] == 1
