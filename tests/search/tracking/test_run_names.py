"""MLflow names a trial's run after what it tests: `prunetune experiment` varies the criterion,
the seed or the base, and its runs say which, live and after `prunetune sync` alike."""

from __future__ import annotations

import json

from prunetune.search.store.trials import read_trial_folder
from prunetune.search.tracking.sync import summarize_folder
from prunetune.search.tracking.tracker import TrialSummary


def test_a_search_trial_is_named_by_its_id():
    assert TrialSummary("ab12", {}, {}).run_name == "trial_ab12"


def test_an_experiment_trial_is_named_after_the_criterion_and_seed_it_tests(tmp_path):
    folder = tmp_path / "trial_ab12"
    folder.mkdir()
    config = {"profile": {"g0": 0.5}, "criterion": "random", "seed": 2, "model": "resnet20"}
    (folder / "params.json").write_text(json.dumps(config))
    (folder / "result.json").write_text(
        json.dumps({"trial_id": "ab12", "accuracy": 0.5, "feasible": 1.0, "done": True}) + "\n"
    )
    summary = summarize_folder(read_trial_folder(folder))
    assert summary.run_name == "criterion random, seed 2 (trial_ab12)"
