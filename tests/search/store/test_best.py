"""The one definition of a search's best profile (search/store/best.py): confirmed test
accuracy where the search confirmed, else validation accuracy; every reader gets the same
trial and figure, labelled with which accuracy it is."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prunetune.search.store.best import CONFIRMED, VALIDATION, best_of, ranked
from prunetune.search.store.frontier import TrialRecord, confirmed, pareto


def rec(trial_id, accuracy, macs=30.0, *, feasible=True, confirms=None, test=None, stopped=False, reference=None):
    return TrialRecord(
        trial_id,
        accuracy,
        0.1,
        feasible,
        {"macs": macs},
        {"macs": macs / 100},
        {"a": 0.5},
        confirms=confirms,
        test_accuracy=test,
        stopped=stopped,
        reference=reference,
    )


def test_without_confirmation_the_best_is_the_highest_validation_accuracy_then_the_cheaper():
    records = [rec("a", 0.8, 40), rec("b", 0.8, 30), rec("c", 0.9, feasible=False), rec("d", 0.95, stopped=True)]
    best = best_of(records)
    assert (best.trial_id, best.kind, best.accuracy) == ("b", VALIDATION, 0.8)
    assert best.label == "validation accuracy 0.8000" and best.describe() == "validation accuracy 0.8000 in trial_b"


def test_with_confirmation_the_best_is_the_highest_mean_test_accuracy_whatever_the_validation_said():
    records = [
        rec("s1", 0.99),
        rec("s2", 0.70),
        rec("c1", 0.9, confirms="s1", test=0.95),
        rec("c2", 0.9, confirms="s1", test=0.70),  # s1: mean 0.825
        rec("c3", 0.9, confirms="s2", test=0.85),
        rec("c4", 0.9, confirms="s2", test=0.84),  # s2: mean 0.845
        replace(rec("u1", 0.9, confirms="uniform@0.3", test=0.99), reference="uniform"),
    ]
    for given in (records, confirmed(records)):  # raw or merged records: the same answer
        best = best_of(given)
        assert (best.trial_id, best.source, best.kind) == ("c3", "s2", CONFIRMED)
        assert best.accuracy == pytest.approx(0.845)
        assert best.describe() == "confirmed test accuracy 0.8450 (2 seeds) in trial_c3, confirming search trial_s2"
    pool, kind = ranked(records)
    assert [r.trial_id for r in pool] == ["c3", "c1"] and kind == CONFIRMED


def test_the_frontier_keeps_every_search_trial_at_its_validation_accuracy_beside_the_best():
    records = confirmed([rec("s1", 0.9, 40), rec("s2", 0.7, 20), rec("c1", 0.9, 20, confirms="s2", test=0.88)])
    assert [r.trial_id for r in pareto(records, "macs")] == ["s2", "s1"]  # both, at validation accuracy
    assert best_of(records).trial_id == "c1"  # the best is the confirmed one, labelled as such


def test_no_feasible_profile_has_no_best():
    assert best_of([rec("a", 0.9, feasible=False)]) is None and best_of([]) is None
