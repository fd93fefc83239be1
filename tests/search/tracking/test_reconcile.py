"""Reconciliation (search/tracking/tracker.py, ``_needs_write``): a run is rewritten exactly when
it differs from its folder, so that ``sync`` and the end of a search make MLflow equal to the
folder without rewriting what already agrees. MLflow itself is a stand-in here."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from prunetune.search.config import parse_config
from prunetune.search.tracking.tracker import SearchTracker, TrialSummary

FINAL = {"accuracy": 0.8, "feasible": 1.0, "cost/macs": 10.0, "rel/macs": 0.1, "done": True}


class Client:
    """The few MlflowClient calls a trial write makes, recorded."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.calls: list[tuple] = []

    def create_run(self, experiment_id, **kw):
        run_id = f"run{next(self.ids)}"
        self.calls.append(("create", run_id))
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.calls.append(("log", run_id, {m.key: m.value for m in metrics}))

    def set_terminated(self, run_id, status, end_time=None):
        self.calls.append(("status", run_id, status))

    def update_run(self, run_id, status):
        self.calls.append(("status", run_id, status))


def tracker(children: dict, logged: dict) -> SearchTracker:
    t = SearchTracker("sqlite:///unused.db", "study", "/tmp/unused", parse_config({}))
    t._client, t.parent_id, t.search_id = Client(), "parent", "search"
    t._children, t._logged = dict(children), dict(logged)
    return t


def summary(status="FINISHED", metrics=FINAL, trial_id="t1"):
    return TrialSummary(trial_id, {"a": 0.5}, dict(metrics), status, ended=1.7e9, time_total_s=5.0, step=3)


def test_a_run_that_agrees_with_its_folder_is_not_written_again():
    t = tracker({"t1": ("run9", "FINISHED")}, {})
    t._log_trials([summary()])  # first: the run lacked the final metrics
    assert ("status", "run9", "FINISHED") in t._client.calls and t.changed == 1
    t._client.calls.clear()
    t._log_trials([summary()])
    assert t._client.calls == [] and t.changed == 1


def test_a_finished_run_without_its_metrics_is_completed():
    t = tracker({"t1": ("run9", "FINISHED")}, {"t1": {}})  # closed at Ctrl-C without its last report
    t._log_trials([summary()])
    logged = next(c for c in t._client.calls if c[0] == "log")
    assert logged[2]["accuracy"] == 0.8 and logged[2]["cost/macs"] == 10.0


def test_a_failed_run_that_a_resume_ran_again_becomes_finished_with_its_metrics():
    t = tracker({"t1": ("run9", "FAILED")}, {"t1": {}})
    t._log_trials([summary("RUNNING", {**FINAL, "done": False})])  # reopened while it runs again
    assert ("status", "run9", "RUNNING") in t._client.calls
    t._log_trials([summary()])
    assert ("status", "run9", "FINISHED") in t._client.calls
    assert not any(c[0] == "create" for c in t._client.calls)  # one run per trial


def test_a_finished_run_is_never_reopened_by_a_running_update():
    t = tracker({"t1": ("run9", "FINISHED")}, {"t1": {"accuracy": 0.8}})
    t._log_trials([summary("RUNNING", {**FINAL, "done": False})])
    assert t._client.calls == []
