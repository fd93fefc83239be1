"""MLflow tracking: one experiment per study, one parent run per search, one child run per trial.

Where runs go: ``tracking.tracking_uri`` in the config, else ``MLFLOW_TRACKING_URI``, else the
embedded SQLite store ``<storage>/mlflow.db`` (artifacts in ``<storage>/mlartifacts``), so a
first search needs no server. Only the driver talks to MLflow (through
:class:`~prunetune.search.tracking.callback.TrackingCallback` during a search, or
:func:`prunetune.search.tracking.sync.sync` afterwards): trials on remote workers need no
tracking access.

:class:`SearchTracker` is idempotent, so a resumed search or a repeated ``prunetune sync``
re-attaches instead of duplicating: the parent run is found by the ``prunetune.search_id`` tag
(its id is also cached per tracking URI in ``tracking.json`` beside ``prunetune.json``), child
runs by their ``prunetune.trial_id`` tag. Tracking never stops a search: the first MLflow error
(an unreachable server, a timeout) is reported once and the rest of the search runs untracked;
Tune's results stay on disk for ``prunetune sync`` to backfill.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prunetune.budgets import report as R
from prunetune.budgets.errors import PrunetuneError
from prunetune.search.config import SearchConfig, frontier_costs
from prunetune.search.store.frontier import TrialRecord, confirmed, references

log = logging.getLogger("prunetune.tracking")

TRACKING_FILE = "tracking.json"
EMBEDDED_DB = "mlflow.db"  # the embedded store of a storage folder, and its artifacts beside it
ARTIFACTS_DIR = "mlartifacts"
_SQLITE = "sqlite:///"
PARENT_ID = "mlflow.parentRunId"
TAG_ROLE = "prunetune.role"
DENSE_METRIC = "dense_accuracy"  # a parent run's metric: the accuracy of the model it prunes
TAG_SEARCH_ID = "prunetune.search_id"
TAG_TRIAL_ID = "prunetune.trial_id"
TAG_CHECKPOINT = "prunetune.checkpoint"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
TAG_TAPER_TRIAL = "prunetune.taper_trial"
TAG_CONFIRMS = "prunetune.confirms"  # a confirmation trial's run: the search trial whose profile it retrains
TAG_BEST_TRIAL = "prunetune.best_trial"  # the parent run: the trial holding the search's best profile
TAG_BEST_ACCURACY = "prunetune.best_accuracy"  # the parent run: which accuracy the best figure is
# A study is model training ("Machine learning" in MLflow 3's UI), not a GenAI app; the UI's
# view itself follows the URL's workflowType (`prunetune ui` prints a model-training link).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# Every scalar and family of the trial report (prunetune.budgets.report), and Tune's own clock.
_TRIAL_METRICS = (*R.SCALARS, "time_total_s")


def embedded_uri(storage: Path) -> str:
    """The URI of the embedded SQLite store of a storage folder: ``sqlite:///<storage>/mlflow.db``."""
    return f"sqlite:///{Path(storage).resolve() / EMBEDDED_DB}"


def embedded_database(uri: str) -> Path | None:
    """The database file of an embedded SQLite store's URI; None for any other store."""
    return Path(uri.removeprefix(_SQLITE)) if uri.startswith(_SQLITE) else None


def artifact_root(uri: str) -> Path | None:
    """Where runs of the embedded SQLite store at ``uri`` keep their artifacts: ``mlartifacts``
    beside the database (MLflow's default is ``./mlruns`` in whatever folder the process
    started in). None for a server, which decides for itself."""
    database = embedded_database(uri)
    return None if database is None else (database.parent / ARTIFACTS_DIR).resolve()


def ensure_experiment(client, uri: str, name: str) -> str:
    """The id of the MLflow experiment ``name`` in the store at ``uri`` (``client``'s), created
    if missing, with its artifacts under :func:`artifact_root` for an embedded store, and
    restored if deleted, and tagged as model training (:data:`TAG_EXPERIMENT_KIND`). Another
    process creating it at the same moment is fine.

    Used by every writer of a study: the search's tracker, ``prunetune sync`` and the model
    registry."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if found.tags.get(TAG_EXPERIMENT_KIND) != MODEL_TRAINING:
            client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
        return found.experiment_id
    root = artifact_root(uri)
    try:
        return client.create_experiment(
            name,
            artifact_location=None if root is None else (root / name).as_uri(),
            tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING},
        )
    except MlflowException:  # created meanwhile by a search beside this one
        return client.get_experiment_by_name(name).experiment_id


def tracking_uri(config: SearchConfig, storage: Path) -> str:
    """The config's URI, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<storage>/mlflow.db``."""
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(storage)


def experiment_name(config: SearchConfig) -> str:
    """The study: ``tracking.experiment``, else the search's name."""
    return config.tracking.experiment or config.name


def fail_fast_http() -> None:
    """Keep an unreachable tracking server from stalling the driver for minutes: MLflow's
    defaults retry 7 times with back-off and wait 120 s per request. Users may override."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def quiet_mlflow() -> None:
    """Keep MLflow's INFO lines ("Creating initial MLflow database tables", a "View run" /
    "View experiment" pair per run on a server) out of a search's console: tracking reports
    its own problems, once, as warnings."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a server's links, per run
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # a retry per request: the tracker warns once


def git_revision(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` in ``cwd``, or ``"unknown"`` outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@dataclass(frozen=True)
class TrialSummary:
    """One trial as tracking sees it: what a child run records."""

    trial_id: str
    profile: dict[str, float]
    metrics: dict[str, Any]
    status: str = "RUNNING"  # RUNNING, or a terminal MLflow status (FINISHED, FAILED, KILLED)
    checkpoint: str | None = None
    error: str | None = None
    ended: float | None = None  # epoch seconds of the last result
    time_total_s: float = 0.0
    step: int = 0  # Tune's training_iteration of ``metrics``: re-logging the same point is a no-op
    # "trial": a searched profile; "reference": one confirmed beside them (confirm.uniform);
    # "taper": a taper run (its reports are history, not points);
    # "taper_point": one level a taper run hardened, a frontier point beside searched trials.
    role: str = "trial"
    taper_trial: str | None = None  # for a taper point: the taper run it came from
    label: str = ""  # what a variant trial of ``prunetune experiment`` tests (``criterion l1, seed 2``)

    @property
    def run_name(self) -> str:
        """The MLflow run's name: ``trial_<id>``, after what the trial tests when it is a variant."""
        return f"{self.label} (trial_{self.trial_id})" if self.label else f"trial_{self.trial_id}"

    def record(self) -> TrialRecord | None:
        """The frontier record of a finished trial or taper point; None while running, after
        an error, and for a taper run itself (its points are the records)."""
        if self.role == "taper" or self.status != "FINISHED":
            return None
        if not R.is_finished(self.metrics):
            return None
        return TrialRecord.from_metrics(self.trial_id, self.metrics, self.profile, self.checkpoint)


@dataclass
class LocalState:
    """``tracking.json``: the search's id, its parent run per tracking URI, wall time so far."""

    search_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_runs: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    @classmethod
    def load(cls, directory: Path) -> LocalState:
        path = directory / TRACKING_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TRACKING_FILE
        tmp = path.with_name(f".{TRACKING_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        os.replace(tmp, path)


def search_params(config: SearchConfig) -> dict[str, str]:
    """The parent run's params: what distinguishes one search from another at a glance."""
    budgets = "; ".join(b.label for b in config.budgets) or "none"
    # A length given in epochs is logged beside the steps it resolved to.
    epochs = {f"{key}.epochs": f"{section.epochs:g}" for key, section in config.in_epochs().items()}
    return {
        "searcher": config.searcher.name,
        "searcher.seed": str(config.searcher.seed),
        "model": config.model.name,
        "model.width": str(config.model.width),
        "model.input_size": str(config.model.input_size),
        "data": config.data.name,
        "data.mode": config.data.mode,
        "data.augment": _augmentation(config),
        "evaluate.val_images": str(config.evaluate.val_images),
        "budgets": budgets,
        "trials": str(config.trials),
        "concurrency": str(config.concurrency),
        "base.steps": str(config.base.steps),
        "finetune.steps": str(config.finetune.steps),
        "prune.criterion": config.prune.criterion,
        "resources.cpu": str(config.resources.cpu),
        "resources.gpu": str(config.resources.gpu),
        **epochs,
    }


def _augmentation(config: SearchConfig) -> str:
    """The training augmentation the trials use, in words (the data set's standard one resolved)."""
    from prunetune.search.setup import data_spec
    from prunetune.trainables.data import dataset_kind
    from prunetune.trainables.data.augment import PRESETS

    try:
        augment = data_spec(config.data).reading.augment or PRESETS[dataset_kind(config.data.name)]
    except PrunetuneError:  # a data set registered only where the trials run
        return str(config.data.augment)
    return augment.describe()


def role_of(trial_config: dict) -> str:
    """A trial's ``prunetune.role`` tag from its Tune config: ``taper`` (a tapering run),
    ``reference`` (a reference profile confirmed beside the search's, ``confirm.uniform``) or
    ``trial``."""
    from prunetune.trainables.taper_trial import is_taper_trial

    if is_taper_trial(trial_config):
        return "taper"
    return "reference" if (trial_config.get("confirm") or {}).get(R.REFERENCE) else "trial"


def trial_metrics(summary: TrialSummary, config: SearchConfig) -> dict[str, float]:
    """The numeric metrics a child run records, with the compute the trial used."""
    metrics = {
        key: float(value)
        for key, value in summary.metrics.items()
        if (key in _TRIAL_METRICS or key.startswith(R.FAMILIES)) and isinstance(value, (int, float))
    }
    if summary.status in TERMINAL and summary.time_total_s:
        metrics["cpu_hours"] = summary.time_total_s * config.resources.cpu / 3600
        metrics["gpu_hours"] = summary.time_total_s * config.resources.gpu / 3600
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


class TrackingUnavailable(Exception):
    """Raised inside :class:`SearchTracker` once MLflow has failed; callers never see it."""


def _tracking_errors() -> tuple[type[BaseException], ...]:
    """What an MLflow store can raise when it is unreachable or cannot write: MLflow's own
    errors, network and file errors, and a SQLite store's database errors (a full disk fails
    in SQLAlchemy, while the store creates its tables, before MLflow wraps anything)."""
    import sqlite3

    from mlflow.exceptions import MlflowException

    errors: tuple[type[BaseException], ...] = (MlflowException, OSError, sqlite3.Error, TrackingUnavailable)
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # a server-only MLflow install
        return errors
    return (*errors, SQLAlchemyError)


def untracked_warning(uri: str, directory: Path, why: str) -> str:
    """The one line a search prints when its MLflow tracking fails: why, and how to backfill."""
    return (
        f"MLflow tracking at {uri} failed ({why}); the search goes on untracked. "
        f"Backfill later with: prunetune sync {directory} --tracking-uri {uri}"
    )


def full_disk(err: BaseException) -> bool:
    """Whether a tracking error is a full disk (SQLite says so in words, a file in errno)."""
    import errno

    text = str(err).lower()
    return getattr(err, "errno", None) == errno.ENOSPC or "disk is full" in text or "no space left" in text


class SearchTracker:
    """Writes one search to MLflow, idempotently: safe to re-create and re-run at any time.

    Every public method swallows MLflow and network errors after warning once; from then on
    the tracker is ``down`` and does nothing, so a search never fails because of tracking.
    """

    def __init__(self, uri: str, experiment: str, directory: Path, config: SearchConfig) -> None:
        self.uri, self.experiment, self.directory, self.config = uri, experiment, Path(directory), config
        self.down = False
        self.parent_id: str | None = None
        self.search_id: str | None = None
        self.experiment_id: str | None = None
        self._children: dict[str, tuple[str, str]] = {}  # trial id -> (run id, status)
        self._logged: dict[str, dict[str, float]] = {}  # trial id -> its run's latest metrics
        self.duplicates: list[str] = []  # run ids of second runs of one trial (two writers raced)
        self.changed = 0  # trial runs this tracker created or corrected
        self.parent_status: str | None = None  # the parent run's status when this tracker found it
        self.reopen = True  # open() marks a found parent run RUNNING (a search); sync leaves it be
        self.quiet = False  # no warning when tracking fails (the end-of-search reconciliation)
        # Called instead of the warning when tracking fails on a full disk (the writer process
        # tells its driver, which says it once with the search's own storage error).
        self.on_full_disk = None
        self._client = None

    def _guard(self, action, *args):
        if self.down:
            return None
        try:
            return action(*args)
        except _tracking_errors() as err:
            self.down = True
            if self.quiet:
                return None
            if self.on_full_disk is not None and full_disk(err):
                self.on_full_disk()
            else:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                log.warning(untracked_warning(self.uri, self.directory, first[:300]))
            return None

    @property
    def reference(self):
        """The dense model and budgets every frontier figure is read against (None outside an
        experiment folder)."""
        from prunetune.search.store.dense import experiment_reference
        from prunetune.search.store.manifest import MANIFEST, read_manifest

        if not (self.directory / MANIFEST).is_file():
            return None
        return experiment_reference(read_manifest(self.directory))

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            fail_fast_http()
            quiet_mlflow()
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def open(self, cluster: dict[str, float] | None = None) -> bool:
        """Find or create the study and this search's parent run; load its child runs."""
        return bool(self._guard(self._open, cluster))

    def log_trial(self, summary: TrialSummary) -> None:
        """Create the trial's child run if new; record metrics, checkpoint and end status."""
        self._guard(self._log_trials, [summary])

    def log_trials(self, summaries: list[TrialSummary]) -> None:
        """:meth:`log_trial` for many updates at once: one write per trial, however many of
        its reports are among them (the asynchronous writer's batches)."""
        self._guard(self._log_trials, summaries)

    def log_frontier(self, summaries: list[TrialSummary]) -> None:
        """Render the frontier (CSV, JSON, PNG per cost, interactive HTML) onto the parent run."""
        self._guard(self._log_frontier, summaries)

    def finish(self, summaries: list[TrialSummary], wall_s: float) -> None:
        """Totals (trials, errored, wall time, CPU/GPU hours), the frontier, parent FINISHED."""
        self._guard(self._finish, summaries, wall_s)

    def _open(self, cluster: dict[str, float] | None) -> bool:
        state = LocalState.load(self.directory)
        self.experiment_id = ensure_experiment(self.client, self.uri, self.experiment)
        run = self._find_parent(state)
        self.parent_status = None if run is None else run.info.status  # before this writer reopened it
        if run is None:
            run = self._create_parent(state, cluster)
        elif self.reopen and run.info.status != "RUNNING":
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.parent_id, self.search_id = run.info.run_id, state.search_id
        state.parent_runs[self.uri] = self.parent_id
        state.save(self.directory)
        self._children = self._load_children()
        return True

    def _find_parent(self, state: LocalState):
        from mlflow.exceptions import MlflowException

        cached = state.parent_runs.get(self.uri)
        if cached:
            try:
                run = self.client.get_run(cached)
                if run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active":
                    return run
            except MlflowException:
                pass  # another store behind the same URI: look the run up by its tag
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_SEARCH_ID}` = '{state.search_id}' and tags.`{TAG_ROLE}` = 'search'"
        )
        return found[0] if found else None

    def _create_parent(self, state: LocalState, cluster: dict[str, float] | None):
        from mlflow.entities import Param

        tags = {
            TAG_ROLE: "search",
            TAG_SEARCH_ID: state.search_id,
            "prunetune.search": self.config.name,
            "prunetune.searcher": self.config.searcher.name,
            "prunetune.experiment_dir": str(self.directory),
            "prunetune.frontier_cost": frontier_costs(self.config)[0],
            "mlflow.source.git.commit": git_revision(),
        }
        if cluster:
            tags.update({f"ray.{key}": f"{value:g}" for key, value in cluster.items()})
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.config.name)
        params = [Param(k, v) for k, v in search_params(self.config).items()]
        self.client.log_batch(run.info.run_id, params=params)
        written = self.config.as_written().model_dump(mode="json")  # a YAML the user could run again
        self.client.log_text(run.info.run_id, json.dumps(written, indent=2), "config.json")
        return run

    def _load_children(self) -> dict[str, tuple[str, str]]:
        children, token = {}, None
        self._logged, self.duplicates = {}, []
        query = f"tags.`{PARENT_ID}` = '{self.parent_id}'"
        while True:
            page = self.client.search_runs(
                [self.experiment_id], query, max_results=1000, page_token=token, order_by=["start_time ASC"]
            )
            for run in page:
                trial_id = run.data.tags.get(TAG_TRIAL_ID)
                if trial_id and trial_id in children:
                    self.duplicates.append(run.info.run_id)
                elif trial_id:
                    children[trial_id] = (run.info.run_id, run.info.status)
                    self._logged[trial_id] = dict(run.data.metrics)
            token = page.token
            if not token:
                return children

    def close_unbacked(self, known: set[str]) -> int:
        """Mark KILLED every FINISHED or RUNNING child run whose trial the folder has no report
        of (``known``: the trial ids it has): a trial Tune stopped before it reported, or whose
        folder was set aside, is no finished trial. How many were closed."""
        return self._guard(self._close_unbacked, known) or 0

    def _close_unbacked(self, known: set[str]) -> int:
        closed = 0
        for trial_id, (run_id, status) in list(self._children.items()):
            if trial_id not in known and status in ("FINISHED", "RUNNING"):
                self.client.set_terminated(run_id, "KILLED")
                self._children[trial_id] = (run_id, "KILLED")
                closed += 1
        self.changed += closed
        return closed

    def drop_duplicates(self) -> int:
        """Delete every second run of one trial (the first one stays); how many were deleted."""
        return self._guard(self._drop_duplicates) or 0

    def _drop_duplicates(self) -> int:
        for run_id in self.duplicates:
            self.client.delete_run(run_id)
        dropped, self.duplicates = len(self.duplicates), []
        return dropped

    def _require_open(self) -> str:
        if self.parent_id is None and not self._open(None):
            raise TrackingUnavailable("no parent run")
        return self.parent_id

    def _log_trials(self, summaries: list[TrialSummary]) -> None:
        """Each trial's summaries (in order) as one child-run write: created if new, every
        reported step's metrics in one batch, the last checkpoint, error and end status."""
        from mlflow.entities import Metric, Param, RunTag

        parent = self._require_open()
        by_trial: dict[str, list[TrialSummary]] = {}
        for summary in summaries:
            by_trial.setdefault(summary.trial_id, []).append(summary)
        for trial_id, updates in by_trial.items():
            run_id, status = self._children.get(trial_id) or (None, None)
            last = updates[-1]
            if not self._needs_write(trial_id, status, last):
                continue  # logged completely before (resume, repeated sync)
            params = []
            if run_id is None:
                run_id = self._create_child(parent, updates[0])
                params = [Param(f"profile.{group}", f"{ratio:.6g}") for group, ratio in last.profile.items()]
            metrics = [
                Metric(k, v, _stamp(u), u.step) for u in updates for k, v in trial_metrics(u, self.config).items()
            ]
            tags = [RunTag(TAG_CHECKPOINT, last.checkpoint)] if last.checkpoint else []
            if last.error:
                tags.append(RunTag("prunetune.error", last.error[:4000]))
            _log_batch(self.client, run_id, metrics, params, tags)
            if last.status in TERMINAL:
                self.client.set_terminated(run_id, last.status, end_time=_stamp(last))
            elif status in TERMINAL:  # a trial a resumed search runs again
                self.client.update_run(run_id, status="RUNNING")
            self._children[trial_id] = (run_id, last.status)
            self._logged[trial_id] = {**self._logged.get(trial_id, {}), **trial_metrics(last, self.config)}
            self.changed += last.status in TERMINAL

    def _needs_write(self, trial_id: str, status: str | None, last: TrialSummary) -> bool:
        """Whether the trial's run differs from ``last``: no run yet, a running run, or a
        terminal one whose status or final metrics are not ``last``'s (the folder is the truth:
        a trial a resume ran again, a run closed without its last report). A terminal run is
        never reopened for a running update, except a failed one a resume runs again."""
        if status not in TERMINAL:
            return True
        if last.status not in TERMINAL:
            return status in ("FAILED", "KILLED")
        if status != last.status:
            return True
        logged = self._logged.get(trial_id, {})
        wanted = trial_metrics(last, self.config)
        return any(
            key not in logged or not math.isclose(logged[key], value, rel_tol=1e-9, abs_tol=1e-12)
            for key, value in wanted.items()
        )

    def _create_child(self, parent: str, summary: TrialSummary) -> str:
        started = (summary.ended or time.time()) - summary.time_total_s
        tags = {
            PARENT_ID: parent,
            TAG_ROLE: summary.role,
            TAG_TRIAL_ID: summary.trial_id,
            TAG_SEARCH_ID: self.search_id,
        }
        if summary.taper_trial:
            tags[TAG_TAPER_TRIAL] = summary.taper_trial
        if summary.metrics.get(R.CONFIRMS):
            tags[TAG_CONFIRMS] = str(summary.metrics[R.CONFIRMS])
        run = self.client.create_run(
            self.experiment_id, start_time=int(started * 1000), tags=tags, run_name=summary.run_name
        )
        return run.info.run_id

    def _log_frontier(self, summaries: list[TrialSummary]) -> None:
        """Every frontier file as the parent run's artifacts, plotly.js inlined: the page is one
        MLflow artifact, opened on its own."""
        from prunetune.search.store.plots import render_frontier

        parent = self._require_open()
        records = confirmed(r for r in (s.record() for s in summaries) if r is not None)
        reference = self.reference
        if reference is not None and references(records):
            reference = replace(reference, baseline=tuple(references(records)))
        with tempfile.TemporaryDirectory(prefix="prunetune-frontier-") as tmp:
            render_frontier(
                records, frontier_costs(self.config), Path(tmp), title=self.config.name, reference=reference
            )
            self.client.log_artifacts(parent, tmp)

    def _finish(self, summaries: list[TrialSummary], wall_s: float) -> None:
        from mlflow.entities import Metric

        parent = self._require_open()
        self._log_trials([s for s in summaries if s.status in TERMINAL])
        self._log_frontier(summaries)
        now = int(time.time() * 1000)
        totals = search_totals(summaries, self.config, wall_s)
        reference = self.reference
        if reference is not None and reference.dense_accuracy is not None:
            totals[DENSE_METRIC] = reference.dense_accuracy  # what compare reads the search against
        self.client.log_batch(parent, metrics=[Metric(k, v, now, 0) for k, v in totals.items()])
        best = search_best(summaries)
        if best is not None:
            self.client.set_tag(parent, TAG_BEST_TRIAL, best.trial_id)
            self.client.set_tag(parent, TAG_BEST_ACCURACY, best.kind)
        self.client.set_terminated(parent, "FINISHED")


def _stamp(summary: TrialSummary) -> int:
    return int((summary.ended or time.time()) * 1000)


# MLflow's limits per log_batch request.
_BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}


def _log_batch(client, run_id: str, metrics: list, params: list, tags: list) -> None:
    """One ``log_batch`` request, or as many as MLflow's per-request limits need."""
    lists = {"metrics": metrics, "params": params, "tags": tags}
    chunks = max(1, *(-(-len(v) // _BATCH_LIMITS[k]) for k, v in lists.items()))
    for i in range(chunks):
        client.log_batch(run_id, **{k: v[i * _BATCH_LIMITS[k] : (i + 1) * _BATCH_LIMITS[k]] for k, v in lists.items()})


def search_totals(summaries: list[TrialSummary], config: SearchConfig, wall_s: float) -> dict[str, float]:
    """What a search spent and found: trial counts, wall time, CPU/GPU hours, best accuracy."""
    records = [r for r in (s.record() for s in summaries) if r is not None]
    trials = [s for s in summaries if s.role != "taper_point"]  # a point's time is its run's
    seconds = sum(s.time_total_s for s in trials)
    totals = {
        "trials": float(len(trials)),
        "trials_finished": float(sum(s.status == "FINISHED" for s in trials)),
        "trials_errored": float(sum(s.status == "FAILED" for s in trials)),
        "trials_feasible": float(sum(r.feasible for r in records)),
        "wall_s": wall_s,
        "cpu_hours": seconds * config.resources.cpu / 3600,
        "gpu_hours": seconds * config.resources.gpu / 3600,
    }
    best = search_best(summaries)
    if best is not None:
        totals["best_feasible_accuracy"] = best.accuracy  # which accuracy: the parent's TAG_BEST_ACCURACY
    merged = [r for r in confirmed(records) if r.reference is None]
    if any(r.confirmed for r in merged):
        totals["confirmed_profiles"] = float(sum(r.confirmed for r in merged))
    return totals


def search_best(summaries: list[TrialSummary]):
    """The search's best profile among the finished trials in ``summaries``, by the one
    definition (:func:`~prunetune.search.store.best.best_of`)."""
    from prunetune.search.store.best import best_of

    return best_of(r for r in (s.record() for s in summaries) if r is not None)
