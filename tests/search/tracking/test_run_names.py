"""MLflow names a trial's run after what it tests: `prunetune experiment` varies the criterion,
the seed or the base, and its runs say which, live and after `prunetune sync` alike."""

from __future__ import annotations

import json

from prunetune.search.store.trials import read_trial_folder
from prunetune.search.tracking.sync import summarize_folder
from prunetune.search.tracking.tracker import TrialSummary


def test_a_search_trial_is_named_by_its_id(tmp_path):
    assert TrialSummary("ab12", {}, {}).run_name == "trial_ab12"
    search_trial = {"profile": {"g0": 0.5}, "criterion": "l1", "model": "resnet20"}  # what every trial carries
    assert summarize_folder(_folder(tmp_path, search_trial)).run_name == "trial_ab12"


def test_an_experiment_trial_is_named_after_the_criterion_and_seed_it_tests(tmp_path):
    config = {
        "profile": {"g0": 0.5},
        "criterion": "random",
        "seed": 2,
        "model": "resnet20",
        "varies": ["criterion", "seed"],
    }
    assert summarize_folder(_folder(tmp_path, config)).run_name == "criterion random, seed 2 (trial_ab12)"


def _folder(tmp_path, config: dict):
    folder = tmp_path / "trial_ab12"
    folder.mkdir(exist_ok=True)
    (folder / "params.json").write_text(json.dumps(config))
    report = {"trial_id": "ab12", "accuracy": 0.5, "feasible": 1.0, "done": True}
    (folder / "result.json").write_text(json.dumps(report) + "\n")
    return read_trial_folder(folder)
