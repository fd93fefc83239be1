"""Running a prepared search on Ray Tune, and reading what it found.

:func:`run_search` starts (or joins) Ray, writes the manifest, assembles the Tuner (or restores
an interrupted one) and writes the frontier. :func:`make_tuner` is the one Tuner assembly:
searched, taper and fixed-grid runs (``run.grid``) differ only in their trainable, parameter
space and how trials are made, which their :class:`~prunetune.search.run.methods.Method` says.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunetune.budgets.errors import ConfigError
from prunetune.search import ray_compat
from prunetune.search.config import frontier_costs, is_uri
from prunetune.search.run.joining import init_ray, plugin_runtime_env, plugins_of  # noqa: F401  (re-exported)
from prunetune.search.run.prepare import Prepared
from prunetune.search.store.frontier import TrialRecord, confirmed, pareto
from prunetune.search.store.manifest import write_manifest
from prunetune.search.store.trials import last_line


@dataclass
class SearchOutcome:
    records: list[TrialRecord]
    errors: dict[str, str]
    frontier: list[TrialRecord]
    files: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0


SNAPSHOT_PERIOD_S = "auto"  # Tune's experiment snapshot period that searches set (see snapshot_period)
SNAPSHOT_FLOOR_S = 1.0  # ... adapting from every second
SNAPSHOT_SHARE = 0.05  # ... so that snapshots take at most this share of the driver's time


def check_shared_storage(prepared: Prepared) -> None:
    """Trials on other nodes write checkpoints to ``storage_path``: on a multi-node cluster it
    must be object storage or a folder every node mounts (asserted by ``shared_storage``)."""
    import ray

    config = prepared.config
    if not config.address or is_uri(config.storage_path) or config.shared_storage:
        return
    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) > 1:
        raise ConfigError(
            f"storage_path {config.storage_path!r} is a local folder but the cluster at {config.address} "
            f"has {len(nodes)} nodes; use shared storage (s3://..., gs://...) or, if every node mounts "
            f"this folder (NFS), set shared_storage: true"
        )


def trial_name(trial) -> str:
    """Trial and folder name: ``trial_<id>`` (``status``, ``export`` and ``sync`` read these)."""
    return f"trial_{trial.trial_id}"


def with_resources(prepared: Prepared, function, **parameters):
    """``function`` as a Tune trainable of ``prepared``'s search: its setup (and
    ``parameters``) shipped once through Ray's object store, each trial with the configured
    CPUs and GPUs."""
    from ray import tune

    resources = prepared.config.resources
    return tune.with_resources(
        tune.with_parameters(function, setup=prepared.setup, **parameters),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )


def build_trainable(prepared: Prepared):
    """The Tune trainable of a search; fresh and restored runs must use the same one."""
    return with_resources(prepared, prepared.method.trainable())


def build_callbacks(prepared: Prepared) -> list:
    """The Tune callbacks of a search, built anew for fresh and restored runs alike."""
    callbacks = []
    if not is_uri(prepared.config.storage_path):
        from prunetune.search.run.snapshots import SnapshotKeeper

        callbacks.append(SnapshotKeeper(prepared.experiment_dir))
    if prepared.config.tracking.enabled:
        from prunetune.search.tracking.callback import tracking_callback

        callbacks.append(tracking_callback(prepared))
    return callbacks


def start(prepared: Prepared) -> None:
    """Before any Tuner of a search is built: Tune's snapshot period, Ray, shared storage."""
    snapshot_period()
    init_ray(prepared.config.address, budgets=prepared.config.budgets, plugins=plugins_of(prepared.config))
    check_shared_storage(prepared)
    check_resources(prepared)


def snapshot_period() -> None:
    """How often Tune snapshots the experiment (trial states, searcher): every
    ``SNAPSHOT_FLOOR_S`` while a snapshot is cheap, less often as it grows, so that snapshots
    take at most ``SNAPSHOT_SHARE`` of the driver's time (:func:`ray_compat.snapshots_within_share`).

    Each snapshot writes every trial so far: a fixed short period makes the driver's work grow
    quadratically over thousands of short trials (BENCHMARKS.md), Tune's own "auto" waits 10 s
    or more from the start. A killed driver redoes on resume the trials that finished after the
    last snapshot: a second's worth in a small search, at most 19 snapshot-times' worth in a
    large one. A number in ``TUNE_GLOBAL_CHECKPOINT_S`` (e.g. 10 for object storage) wins.
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", SNAPSHOT_PERIOD_S)
    ray_compat.snapshots_within_share(SNAPSHOT_FLOOR_S, SNAPSHOT_SHARE)


def check_resources(prepared: Prepared) -> None:
    """A node of the joined cluster can hold one trial, or one is awaited (``resources.wait_s``)."""
    from prunetune.search.run.resources import await_fit, trial_request

    config = prepared.config
    where = f"the cluster at {config.address}" if config.address else "the local Ray"
    await_fit(trial_request(config.resources.cpu, config.resources.gpu), config.resources.wait_s, where)


def make_tuner(
    prepared: Prepared, trainable, param_space: Mapping[str, Any], tune_config: Mapping[str, Any], *, reporter=None
):
    """The one Tuner assembly of every run: ``trainable`` over ``param_space``, trials made as
    ``tune_config`` says (a search algorithm, a sample count, a concurrency limit), maximising
    ``accuracy``, reused actors, ``trial_<id>`` folders, the run's callbacks and retries."""
    from ray import tune

    config = prepared.config
    return tune.Tuner(
        trainable,
        param_space=dict(param_space),
        tune_config=tune.TuneConfig(
            metric="accuracy",
            mode="max",
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
            **tune_config,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=prepared.storage_uri,
            callbacks=build_callbacks(prepared),
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            progress_reporter=reporter,
            verbose=1,
        ),
    )


def build_tuner(prepared: Prepared, trainable=None):
    """The search's Tuner: trials as its method makes them, and a compact reporter.

    ``trainable`` replaces the search's own trial function (``benchmarks/scheduler_overhead``
    times this assembly around a no-op trial); None, the default, runs the real trials.
    """
    from prunetune.search.run.console import LiveView

    param_space, trials = prepared.method.trials(prepared)
    reporter = LiveView(prepared.frontier_cost, prepared.method.trial_count(prepared.config))
    return make_tuner(prepared, trainable or build_trainable(prepared), param_space, trials, reporter=reporter)


def restore_tuner(prepared: Prepared):
    """The interrupted search's Tuner: finished trials kept, unfinished and errored ones
    resumed from their last checkpoint, the searcher restored from its own saved state."""
    from ray import tune

    if not is_uri(prepared.config.storage_path):
        from prunetune.search.run.snapshots import ABANDONED_DIR, clear_stale_staging, repair, set_aside_orphans

        repaired = repair(prepared.experiment_dir)
        if repaired:
            print(
                "the crash cut Tune's copy of its snapshot short: resuming from the last whole one "
                f"({', '.join(repaired)})"
            )
        for name in set_aside_orphans(prepared.experiment_dir):
            print(f"{name} started after the last snapshot: its work is redone; moved to {ABANDONED_DIR}/")
        clear_stale_staging(prepared.experiment_dir)  # or the restored run would copy it back
    tuner = tune.Tuner.restore(prepared.experiment_uri, trainable=build_trainable(prepared), resume_errored=True)
    # Tune unpickles the callbacks as they were when the search started; fresh ones see the
    # config as it is now (e.g. a tracking server URI) and may re-attach to their runs.
    ray_compat.replace_callbacks(tuner, build_callbacks(prepared))
    return tuner


def split_results(results: Iterable) -> tuple[list, dict[str, str]]:
    """Tune's results without an error, and errored trials' one-line reasons by trial id."""
    finished, errors = [], {}
    for result in results:
        if result.error is not None:
            errors[(result.metrics or {}).get("trial_id") or Path(result.path).name] = last_line(result.error)
        else:
            finished.append(result)
    return finished, errors


def collect(prepared: Prepared, results: Iterable) -> tuple[list[TrialRecord], dict[str, str]]:
    """The frontier points of the finished trials (as the search's method reads them), with
    confirmation trials merged into confirmed records, and errored trials' reasons by trial id."""
    finished, errors = split_results(results)
    records = []
    for result in finished:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        records.extend(prepared.method.records(result, trial_id))
    records += finished_on_disk(prepared, {r.trial_id for r in records} | set(errors))
    return confirmed(records), errors


def finished_on_disk(prepared: Prepared, known: set[str]) -> list[TrialRecord]:
    """Trials whose folder holds their last report (``done``) though Tune's results do not list
    them as finished: a trial that finished as Ctrl-C or SIGTERM stopped the run. The folder is
    the truth, and ``status`` reads it: the frontier counts them too."""
    if is_uri(prepared.config.storage_path):
        return []
    from prunetune.search.store.best import search_records
    from prunetune.search.store.trials import read_trials

    on_disk = read_trials(prepared.experiment_dir).values()
    return [r for r in search_records([t for t in on_disk if t.report_done]) if r.trial_id not in known]


def run_search(prepared: Prepared) -> SearchOutcome:
    """Run every trial on Ray Tune (or the rest of them, for a resumed search), then write and
    return the frontier."""
    started = time.time()
    start(prepared)
    if prepared.resume:
        tuner = restore_tuner(prepared)
    else:
        write_manifest(prepared)
        tuner = build_tuner(prepared)
    try:
        with storage_errors(prepared):
            with memory_errors(prepared):
                results = tuner.fit()
            records, errors = collect(prepared, results)
            front = pareto(records, prepared.frontier_cost)
            files = render(prepared, records)
        reconcile_tracking(prepared)
    finally:  # tracking that failed on a full disk, when the search itself did not say so
        from prunetune.search.tracking.writer import log, take_full_disk_warnings

        for message in take_full_disk_warnings():
            log.warning(message)
    return SearchOutcome(records, errors, front, files, time.time() - started)


@contextmanager
def memory_errors(prepared: Prepared) -> Iterator[None]:
    """Ray's memory monitor killing trial workers as they start makes Tune's fit raise
    ("Caught unexpected exception") instead of ending those trials: one :class:`MachineError`
    line, with the node's memory as Ray measured it and how to go on. Tune's last snapshot
    stays, so the search resumes."""
    import ray.exceptions

    from prunetune.budgets.errors import MachineError

    try:
        yield
    except (RuntimeError, ray.exceptions.OutOfMemoryError) as err:
        cause = err if isinstance(err, ray.exceptions.OutOfMemoryError) else err.__cause__
        if not isinstance(cause, ray.exceptions.OutOfMemoryError):
            raise
        measured = re.search(r"([\d.]+\s*GB used / [\d.]+\s*GB limit)", str(cause))
        raise MachineError(
            "Ray stopped trial workers: the node ran low on memory"
            f"{f' ({measured.group(1)})' if measured else ''}; free memory or lower concurrency "
            f"(now {prepared.config.concurrency}), then resume with `prunetune resume {prepared.experiment_dir}`"
        ) from None


@contextmanager
def storage_errors(prepared: Prepared) -> Iterator[None]:
    """A write that fails for want of space or rights (Tune's snapshot, a frontier file) as one
    :class:`StorageError` naming the experiment folder and how to resume once it is fixed; what
    was written before stays as it was (Tune's last whole snapshot, the kept snapshot set)."""
    from prunetune.budgets.errors import STORAGE_ERRNOS, StorageError, storage_message
    from prunetune.search.tracking.writer import take_full_disk_warnings

    try:
        yield
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        stopped = take_full_disk_warnings()
        tracking = "; MLflow tracking stopped too (backfill it with `prunetune sync`)" if stopped else ""
        raise StorageError(
            f"{storage_message(err, prepared.experiment_dir)}; then resume with "
            f"`prunetune resume {prepared.experiment_dir}`{tracking}"
        ) from None


def reconcile_tracking(prepared: Prepared) -> None:
    """Bring MLflow up to date with the experiment folder once the run has ended (on its own,
    by Ctrl-C or SIGTERM): what the live callback missed is written, what it got wrong is
    corrected (:func:`~prunetune.search.tracking.sync.reconcile`)."""
    if not prepared.config.tracking.enabled or is_uri(prepared.config.storage_path):
        return
    from prunetune.search.tracking.sync import reconcile
    from prunetune.search.tracking.tracker import tracking_uri

    reconcile(prepared.experiment_dir, tracking_uri(prepared.config, prepared.storage))


def reference(prepared: Prepared, records: Sequence[TrialRecord] = ()):
    """The dense model (accuracy from its checkpoint, measured costs), budgets and uniform
    reference profiles (``confirm.uniform``, among ``records``) every figure of ``prepared``'s
    search is read against."""
    from prunetune.search.store.dense import dense_accuracy
    from prunetune.search.store.frontier import reference_of, references

    return reference_of(
        prepared.config,
        prepared.dense_costs,
        dense_accuracy(prepared.setup.base_checkpoint),
        baseline=references(records),
    )


def render(prepared: Prepared, records: list[TrialRecord]) -> dict[str, Path]:
    """Every frontier file of the search, once: CSV/JSON, a PNG per cost and the HTML page
    (loading the storage folder's one plotly.js), drawn against the dense model and marked
    partial after Ctrl-C."""
    from prunetune.search.run.console import was_interrupted
    from prunetune.search.store.plots import render_frontier, shared_plotlyjs

    return render_frontier(
        records,
        frontier_costs(prepared.config),
        prepared.experiment_dir,
        prepared.config.name,
        reference=reference(prepared, records),
        partial=was_interrupted(),
        plotlyjs=shared_plotlyjs(prepared.storage),
    )
