"""``prunetune sync``: make MLflow equal to a search's results folder.

The experiment folder is the truth: ``prunetune.json`` (the config) and, per trial, Tune's
``result.json`` (one JSON line per report), ``error.txt`` for an errored trial and
``checkpoint_*`` folders. MLflow is a projection of it. :func:`sync` writes the folder through
the same idempotent :class:`SearchTracker` the live callback uses and reconciles what is
already there: a run whose status or final metrics differ from its folder (a trial a resume
ran again, a run closed without its last report) is corrected, a second run of one trial is
deleted, a damaged folder is named and left out. Running it twice changes nothing the second
time. The end of every search runs the same reconciliation (:func:`reconcile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.store.manifest import read_manifest
from prunetune.search.store.trials import PARAMS_FILE, Damaged, TrialFolder, read_trial_folder
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
    corrected: int = 0  # trial runs created or corrected to match their folders
    duplicates: int = 0  # second runs of one trial, deleted
    damaged: tuple[Damaged, ...] = ()  # trial folders left out, each named with what is wrong


def read_points(folder: TrialFolder) -> list[TrialSummary]:
    """A taper trial folder's frontier points, one per level it reported."""
    reports = [(p.metrics, p.profile, p.checkpoint) for p in folder.taper_points() if p.checkpoint is not None]
    return point_summaries(folder.trial_id, reports)


def summarize_folder(folder: TrialFolder, tune_status: str | None = None) -> TrialSummary | None:
    """A trial folder of Tune's as a summary, judged by its last whole report: FAILED with an
    error, FINISHED when its last report says done (or Tune's ``tune_status`` says a scheduler
    ended it: TERMINATED), else KILLED (the search stopped it; a resume runs it on, and its run
    with it). None for a folder without any file of a trial."""
    result = folder.last
    if not result and folder.error is None and not folder.config:
        return None
    if folder.error is not None:
        status = "FAILED"
    else:
        ended = result.get(R.DONE) or (result and tune_status == "TERMINATED")
        status = "FINISHED" if ended else "KILLED"  # killed: the search stopped mid-trial
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


def read_trials(directory: Path, damaged: list[Damaged] | None = None) -> list[TrialSummary]:
    """Every trial of an experiment folder that reported or errored, in folder order, each
    taper trial followed by its points. Damaged folders are left out, and appended to
    ``damaged`` when given."""
    from prunetune.search.store.progress import snapshot_states

    states = snapshot_states(directory)
    summaries = []
    for path in sorted(directory.iterdir()):
        if not (path.is_dir() and ((path / PARAMS_FILE).exists() or (path / "result.json").exists())):
            continue
        folder = read_trial_folder(path)
        if folder.damage is not None:
            if damaged is not None:
                damaged.append(Damaged(path.name.removeprefix("trial_"), folder.damage))
            continue
        trial = summarize_folder(folder, states.get(folder.trial_id))
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


def sync(
    directory: str | Path, uri: str | None = None, *, always_finish: bool = True, quiet: bool = False
) -> SyncResult:
    """Make MLflow at ``uri`` (default: the search's own URI) equal to the search in
    ``directory``. ``always_finish`` false (the end of a search, whose callback has just drawn
    the frontier) redraws the parent run's frontier and totals only when a trial run changed."""
    manifest = read_manifest(directory)
    config = manifest.config
    uri = uri or tracking_uri(config, manifest.directory.parent)
    damaged: list[Damaged] = []
    trials = read_trials(manifest.directory, damaged)
    state = LocalState.load(manifest.directory)
    state.save(manifest.directory)  # fixes the search id for later syncs
    with writer_lock(manifest.directory):  # a killed driver's writer finishes its last batch first
        return _sync(manifest, uri, config, trials, state, tuple(damaged), always_finish, quiet)


def _sync(
    manifest,
    uri: str,
    config,
    trials: list[TrialSummary],
    state: LocalState,
    damaged,
    always_finish: bool,
    quiet: bool = False,
) -> SyncResult:
    tracker = SearchTracker(uri, experiment_name(config), manifest.directory, config)
    tracker.reopen, tracker.quiet = False, quiet
    if not tracker.open():
        raise ConfigError(f"cannot write to MLflow at {uri}; start the tracking server or pass --tracking-uri URI")
    duplicates = tracker.drop_duplicates()
    tracker.log_trials(trials)
    tracker.close_unbacked({t.trial_id for t in trials} | {d.trial_id for d in damaged})
    if always_finish or tracker.changed or duplicates or tracker.parent_status != "FINISHED":
        tracker.finish(trials, _wall_s(state, trials))
    if tracker.down:
        raise ConfigError(f"MLflow at {uri} stopped answering during the sync; run `prunetune sync` again")
    points = sum(t.role == "taper_point" for t in trials)
    return SyncResult(
        uri, tracker.experiment, tracker.parent_id, len(trials) - points, points, tracker.changed, duplicates, damaged
    )


def reconcile(directory: Path, uri: str) -> SyncResult | None:
    """The end of a search: :func:`sync` the folder into MLflow, so that what the live callback
    missed or got wrong (a Ctrl-C, a killed worker, a trial a resume ran again) is put right
    without the user running ``prunetune sync``. Never raises, and stays silent when MLflow
    cannot be reached: the search's writer tried it at the end too and has already warned
    once, naming ``prunetune sync``."""
    try:
        return sync(directory, uri, always_finish=False, quiet=True)
    except ConfigError:
        return None
