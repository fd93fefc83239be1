"""The Ray Tune callback that writes a running search to MLflow through a :class:`SearchTracker`.

It runs in the driver only (trials on remote workers never talk to MLflow). Tune pickles it with
the run config and ``Tuner.restore`` brings it back, so it holds only plain settings between
experiments and re-attaches on :meth:`setup`: the parent run comes from ``tracking.json`` or its
search-id tag, child runs from their trial-id tags; nothing is created twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ray.tune import Callback

from prunetune.budgets import report as R
from prunetune.search.config import SearchConfig
from prunetune.search.store.trials import last_line
from prunetune.search.tracking.points import trial_points
from prunetune.search.tracking.tracker import LocalState, TrialSummary, role_of
from prunetune.search.tracking.writer import TrackingWriter
from prunetune.trainables.taper_trial import is_taper_trial
from prunetune.trainables.variants import variant_label


@dataclass(frozen=True)
class TrackingSettings:
    """Where and what to track for one search."""

    uri: str
    experiment: str
    directory: Path  # the local experiment folder (prunetune.json, tracking.json)
    config: SearchConfig


def summarize(trial, result: dict | None = None, status: str | None = None) -> TrialSummary:
    """A Tune trial (and optionally one of its results) as tracking sees it."""
    result = result if result is not None else (trial.last_result or {})
    checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
    error = None
    if status == "FAILED" and trial.error_file and Path(trial.error_file).is_file():
        error = last_line(Path(trial.error_file).read_text())
    return TrialSummary(
        trial_id=trial.trial_id,
        profile=dict(trial.config.get("profile") or {}),
        metrics=dict(result),
        status=status or _status(trial),
        checkpoint=checkpoint,
        error=error,
        ended=result.get("timestamp"),
        time_total_s=float(result.get("time_total_s") or 0.0),
        step=int(result.get("training_iteration") or 0),
        role=role_of(trial.config),
        label=variant_label(trial.config),
    )


def summarize_all(trials) -> list[TrialSummary]:
    """Every trial, and every point each taper trial has hardened so far."""
    summaries = []
    for trial in trials:
        summaries.append(summarize(trial))
        if is_taper_trial(trial.config):
            summaries.extend(trial_points(trial))
    return summaries


def _status(trial) -> str:
    return {"TERMINATED": "FINISHED", "ERROR": "FAILED"}.get(trial.status, "RUNNING")


def cluster_size() -> dict[str, float]:
    """Nodes, CPUs and GPUs of the Ray cluster the driver is connected to."""
    import ray

    if not ray.is_initialized():
        return {}
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return {"nodes": float(nodes), "cpus": resources.get("CPU", 0.0), "gpus": resources.get("GPU", 0.0)}


class TrackingCallback(Callback):
    """Parent run on setup, child runs per trial, frontier every ``frontier_every_s`` seconds
    and at the end, totals when the experiment ends. Every write goes through the search's
    :class:`~prunetune.search.tracking.writer.TrackingWriter`, so the event loop only queues
    messages; the end of the experiment waits for them to be written. Never raises because of
    MLflow."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._writer: TrackingWriter | None = None
        self._started = time.time()
        self._last_frontier = time.time()

    def __getstate__(self) -> dict:
        # Tune pickles callbacks into the experiment state; the writer must not go along.
        return {"settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["settings"])

    def setup(self, **info) -> None:
        self._started = self._last_frontier = time.time()
        LocalState.load(self.settings.directory).save(self.settings.directory)  # fixes the search id
        self._writer = TrackingWriter(self.settings)
        self._writer.put("open", cluster_size())

    def _log(self, *summaries: TrialSummary) -> None:
        if self._writer is not None and summaries:
            self._writer.put("trials", list(summaries))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not result.get(R.DONE):  # a trial's last report is logged once, by on_trial_complete
            self._log(summarize(trial, result, "RUNNING"))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._log(summarize(trial, status="FINISHED"))
        self._maybe_refresh_frontier(trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._log(summarize(trial, status="FAILED"))

    def on_trial_save(self, iteration, trials, trial, **info) -> None:
        # A taper run's checkpoints are its frontier points: each becomes a child run as soon
        # as Tune has registered it (the run's earlier points were logged before: a no-op).
        if is_taper_trial(trial.config):
            self._log(*trial_points(trial))

    def on_experiment_end(self, trials, **info) -> None:
        state = LocalState.load(self.settings.directory)
        state.wall_s += time.time() - self._started
        state.save(self.settings.directory)
        if self._writer is not None:
            self._writer.put("finish", summarize_all(trials), state.wall_s)
        self.close()

    def close(self) -> None:
        """Wait until everything queued is written, and stop the writer (until the next setup)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _maybe_refresh_frontier(self, trials) -> None:
        every = self.settings.config.tracking.frontier_every_s
        if every and self._writer is not None and time.time() - self._last_frontier >= every:
            self._last_frontier = time.time()
            self._writer.put("frontier", summarize_all(trials))


def tracking_callback(prepared) -> TrackingCallback:
    """The callback ``build_tuner`` adds for a prepared search (tracking enabled)."""
    from prunetune.search.tracking.tracker import experiment_name, fail_fast_http, tracking_uri

    fail_fast_http()
    config = prepared.config
    settings = TrackingSettings(
        uri=tracking_uri(config, prepared.storage),
        experiment=experiment_name(config),
        directory=Path(prepared.experiment_dir),
        config=config,
    )
    return TrackingCallback(settings)
