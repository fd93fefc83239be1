"""``prunetune sync``: backfill MLflow from a search's results on disk.

After a tracking outage (or with tracking turned off) everything a search found is still in
its experiment folder: ``prunetune.json`` (the config) and, per trial, Tune's ``result.json``
(one JSON line per report), ``error.txt`` for an errored trial and ``checkpoint_*`` folders.
:func:`sync` writes them through the same idempotent :class:`SearchTracker` the live callback
uses, so running it twice, or after a partly tracked search, creates no duplicate runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.store.manifest import read_manifest
from prunetune.search.store.trials import PARAMS_FILE, TrialFolder, read_trial_folder
from prunetune.search.tracking.points import point_summaries
from prunetune.search.tracking.tracker import (
    LocalState,
    SearchTracker,
    TrialSummary,
    experiment_name,
    role_of,
    tracking_uri,
)
from prunetune.search.tracking.writer import writer_lock
from prunetune.trainables.variants import variant_label


@dataclass(frozen=True)
class SyncResult:
    uri: str
    experiment: str
    parent_run_id: str
    trials: int
    points: int = 0  # taper points, each a run of its own


def read_points(folder: TrialFolder) -> list[TrialSummary]:
    """A taper trial folder's frontier points, one per level it reported."""
    reports = [(p.metrics, p.profile, p.checkpoint) for p in folder.taper_points() if p.checkpoint is not None]
    return point_summaries(folder.trial_id, reports)


def summarize_folder(folder: TrialFolder) -> TrialSummary | None:
    """A trial folder of Tune's as a summary, judged by its last whole report; None when it
    neither reported nor errored."""
    result = folder.last
    if not result and folder.error is None:
        return None
    if folder.error is not None:
        status = "FAILED"
    else:
        status = "FINISHED" if result.get(R.DONE) else "KILLED"  # killed: the search stopped mid-trial
    checkpoint = folder.checkpoint
    return TrialSummary(
        trial_id=folder.trial_id,
        profile=folder.profile,
        metrics={k: v for k, v in result.items() if k != "config"},
        status=status,
        checkpoint=None if checkpoint is None else str(checkpoint),
        error=folder.error,
        ended=result.get("timestamp"),
        time_total_s=float(result.get("time_total_s") or 0.0),
        step=int(result.get("training_iteration") or 0),
        role=role_of(dict(folder.config)),
        label=variant_label(folder.config),
    )


def read_trial(directory: Path) -> TrialSummary | None:
    """The trial folder at ``directory`` as a summary (see :func:`summarize_folder`)."""
    return summarize_folder(read_trial_folder(directory))


def read_trials(directory: Path) -> list[TrialSummary]:
    """Every trial of an experiment folder that reported or errored, in folder order, each
    taper trial followed by its points."""
    summaries = []
    for path in sorted(directory.iterdir()):
        if not (path.is_dir() and (path / PARAMS_FILE).exists()):
            continue
        folder = read_trial_folder(path)
        trial = summarize_folder(folder)
        if trial is not None:
            summaries.append(trial)
            if trial.role == "taper":
                summaries.extend(read_points(folder))
    return summaries


def _wall_s(state: LocalState, trials: list[TrialSummary]) -> float:
    if state.wall_s:
        return state.wall_s
    ended = [t.ended for t in trials if t.ended]
    started = [t.ended - t.time_total_s for t in trials if t.ended]
    return max(ended) - min(started) if ended else 0.0


def sync(directory: str | Path, uri: str | None = None) -> SyncResult:
    """Write the search in ``directory`` to MLflow at ``uri`` (default: the search's own URI)."""
    manifest = read_manifest(directory)
    config = manifest.config
    uri = uri or tracking_uri(config, manifest.directory.parent)
    trials = read_trials(manifest.directory)
    state = LocalState.load(manifest.directory)
    state.save(manifest.directory)  # fixes the search id for later syncs
    with writer_lock(manifest.directory):  # a killed driver's writer finishes its last batch first
        return _sync(manifest, uri, config, trials, state)


def _sync(manifest, uri: str, config, trials: list[TrialSummary], state: LocalState) -> SyncResult:
    tracker = SearchTracker(uri, experiment_name(config), manifest.directory, config)
    if not tracker.open():
        raise ConfigError(f"cannot write to MLflow at {uri}; start the tracking server or pass --tracking-uri URI")
    tracker.log_trials(trials)
    tracker.finish(trials, _wall_s(state, trials))
    if tracker.down:
        raise ConfigError(f"MLflow at {uri} stopped answering during the sync; run `prunetune sync` again")
    points = sum(t.role == "taper_point" for t in trials)
    return SyncResult(uri, tracker.experiment, tracker.parent_id, len(trials) - points, points)
