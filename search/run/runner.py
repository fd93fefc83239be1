"""Assembling and running a search: base model, profile space, searcher, Tuner, frontier.

:func:`prepare` does everything that can fail because of the user's config before a single
file is written or Ray is started; :func:`run_search` then runs the trials on Ray Tune and
writes the frontier beside Tune's results.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from prunetune.budgets import ANALYTIC_COSTS, AnalyticCostModel, Budget, measure_costs
from prunetune.budgets.errors import BudgetError, ConfigError
from prunetune.search.config import DataConfig, SearchConfig
from prunetune.search.store.manifest import write_manifest
from prunetune.search.run.reachable import check_measured_budgets
from prunetune.search.store.frontier import TrialRecord, format_table, pareto, plot_frontier, write_frontier
from prunetune.search.store.plots import frontier_html
from prunetune.search.searchers import get_searcher
from prunetune.search.space import ProfileSpace
from prunetune.search.run.taper import is_taper_result, taper_param_space, taper_records
from prunetune.search.tracking.tracker import frontier_costs
from prunetune.trainables import (
    DataSpec,
    ModelSpec,
    PruneSettings,
    Recipe,
    TrialSetup,
    CostModelError,
    build_model,
    dataset_names,
    ensure_base_checkpoint,
    example_input,
    extract_cost_model,
    find_groups,
    load_base,
    prune_and_finetune,
    taper_run,
)


@dataclass(frozen=True)
class Prepared:
    """A validated search, ready to run."""

    config: SearchConfig
    setup: TrialSetup
    space: ProfileSpace
    dense_costs: dict[str, float]
    storage: Path
    num_classes: int
    resume: bool = False  # the experiment exists: run_search continues it via Tuner.restore

    @property
    def experiment_dir(self) -> Path:
        return self.storage / self.config.name

    @property
    def storage_uri(self) -> str:
        """Where Tune writes trials: the configured ``s3://``/``gs://`` URI or local folder."""
        return self.config.storage_path if is_uri(self.config.storage_path) else str(self.storage)

    @property
    def experiment_uri(self) -> str:
        return experiment_uri(self.config, self.storage)

    @property
    def frontier_cost(self) -> str:
        if self.config.method == "taper":
            return self.config.taper.cost
        return self.config.budgets[0].key if self.config.budgets else "macs"


@dataclass
class SearchOutcome:
    records: list[TrialRecord]
    errors: dict[str, str]
    frontier: list[TrialRecord]
    files: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0


SNAPSHOT_PERIOD_S = "1"  # Tune's experiment snapshot period that searches set (see run_search)


def data_spec(data: DataConfig) -> DataSpec:
    return DataSpec(data.name, data.root, data.seed, tuple(sorted(data.options.items())))


def specs(config: SearchConfig) -> tuple[ModelSpec, DataSpec, Recipe]:
    model = ModelSpec(config.model.name, config.model.width, config.model.input_size, config.model.weights)
    data = data_spec(config.data)
    base = config.base
    recipe = Recipe(base.steps, base.lr, base.batch_size, base.momentum, base.weight_decay)
    return model, data, recipe


def trial_setup(config: SearchConfig) -> TrialSetup:
    """The trial settings of ``config`` (``base_checkpoint`` as configured, maybe empty)."""
    model, data, _ = specs(config)
    ft = config.finetune
    return TrialSetup(
        model=model,
        data=data,
        base_checkpoint=config.base.checkpoint or "",
        prune=PruneSettings(config.prune.criterion, config.prune.round_to, config.prune.min_channels),
        finetune=Recipe(ft.steps, ft.lr, ft.batch_size, ft.momentum, ft.weight_decay),
        budgets=tuple(config.budgets),
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
    )


def _check_names(config: SearchConfig) -> None:
    get_searcher(config.searcher.name)
    for where, data in [("data", config.data)] + [(f"bases[{i}].data", b.data) for i, b in enumerate(config.bases) if b.data]:
        if data.name not in dataset_names():
            raise ConfigError(f"unknown data set {data.name!r} in {where}; choose one of {', '.join(dataset_names())}")
    for index, extra in enumerate(config.bases):
        if extra.checkpoint and not Path(extra.checkpoint).is_file():
            raise ConfigError(f"bases[{index}].checkpoint {extra.checkpoint!r} does not exist; give a trained checkpoint or null to train one")
    # Building raises the registry's error (with close matches) for a bad name or width.
    build_model(config.model.name, num_classes=10, input_size=config.model.input_size, width=config.model.width)


def analytic_limits(budgets: Sequence[Budget], cost_model: AnalyticCostModel) -> dict[str, float]:
    """Absolute limits of the budgets the cost model computes exactly (``macs``, ``params``),
    keyed by cost key; a relative budget's limit is ``max`` times the dense model's cost."""
    dense = cost_model.dense()
    return {b.key: b.limit(dense[b.cost]) for b in budgets if b.cost in ANALYTIC_COSTS and not b.options}


def check_reachable(space: ProfileSpace, budgets: Sequence[Budget]) -> None:
    """A BudgetError for an analytic budget that no profile of ``space`` can meet."""
    smallest = space.min_costs()
    dense = space.cost_model.dense() if space.cost_model else {}
    for budget in budgets:
        limit = space.limits.get(budget.key)
        if limit is None or smallest[budget.key] <= limit * (1 + 1e-9):
            continue
        reach = smallest[budget.key] / dense[budget.key]
        raise BudgetError(
            f"budget {budget.label} cannot be met: with every group at its smallest ratio the model "
            f"still has {smallest[budget.key]:,.0f} {budget.key} ({reach:.1%} of dense), above the limit "
            f"{limit:,.0f}; raise the budget's max to at least {reach:.4g} (relative) or "
            f"{smallest[budget.key]:,.0f} (absolute), or lower space.low (or the smallest space.levels)"
        )


def build_space(config: SearchConfig, num_classes: int) -> ProfileSpace:
    """The profile space of ``config``'s model, with its exact analytic cost model and the
    analytic budgets' limits; a budget below the smallest reachable cost is a BudgetError.

    Needs only the architecture (costs do not depend on weights), so it runs before the base
    model is trained and before any file is written. A model the cost model cannot represent
    exactly gets a space without one (a warning): its budgets are then checked by trials only.
    """
    spec, _, _ = specs(config)
    sample = example_input(trial_setup(config))
    architecture = build_model(spec.name, num_classes=num_classes, input_size=spec.input_size, width=spec.width)
    channels = {g.name: g.channels for g in find_groups(architecture, sample)}
    try:
        cost_model = extract_cost_model(architecture, sample)
    except CostModelError as err:
        warnings.warn(f"no exact cost model for {spec.name} ({err}); profiles are not screened", stacklevel=2)
        cost_model = None
    space = ProfileSpace.build(
        channels,
        low=config.space.low,
        high=config.space.high,
        levels=config.space.levels,
        overrides=config.space.overrides,
        round_to=config.prune.round_to,
        min_channels=config.prune.min_channels,
        cost_model=cost_model,
        limits=analytic_limits(config.budgets, cost_model) if cost_model else {},
    )
    check_reachable(space, config.budgets)
    return space


def is_uri(path: str) -> bool:
    """``s3://...``, ``gs://...`` (any pyarrow filesystem URI) rather than a local path."""
    return "://" in path


def local_storage(config: SearchConfig) -> Path:
    """The local results folder: ``storage_path``, or ``local_dir`` when that is a URI (base
    checkpoints, MLflow's SQLite file, the manifest and the frontier stay on this machine)."""
    if is_uri(config.storage_path):
        return Path(config.local_dir or "results").resolve()
    return Path(config.storage_path).resolve()


def experiment_uri(config: SearchConfig, storage: Path) -> str:
    """Tune's experiment folder: under the ``storage_path`` URI, or the local results folder."""
    root = config.storage_path if is_uri(config.storage_path) else str(storage)
    return f"{root.rstrip('/')}/{config.name}"


def config_differences(old: SearchConfig, new: SearchConfig) -> list[str]:
    """``key: old -> new`` for every setting that differs (``address`` may change freely)."""

    def flat(blob: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in blob.items():
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    a, b = flat(old.model_dump(mode="json")), flat(new.model_dump(mode="json"))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if k != "address" and a.get(k) != b.get(k)]


def _existing(config: SearchConfig, storage: Path) -> Prepared | None:
    """The search to resume when ``config``'s experiment already exists (same config), else None."""
    from ray.tune import Tuner

    from prunetune.search.store.manifest import MANIFEST, read_manifest

    directory = storage / config.name
    if not directory.exists():
        return None
    if not (directory / MANIFEST).is_file() or not Tuner.can_restore(experiment_uri(config, storage)):
        raise ConfigError(
            f"experiment {config.name!r} already exists in {storage} but has no search state to resume; "
            f"choose a new name (--set name=...) or remove {directory}"
        )
    manifest = read_manifest(directory)
    differences = config_differences(manifest.config, config)
    if differences:
        raise ConfigError(
            f"experiment {config.name!r} in {storage} was started with a different config "
            f"({'; '.join(differences)}); resume it unchanged or choose a new name (--set name=...)"
        )
    return from_manifest(manifest, address=config.address)


def ensure_extra_bases(config: SearchConfig, storage: Path, *, show_progress: bool = True) -> list[str]:
    """A trained checkpoint for each of ``config.bases``: the given one, else trained once and
    cached under ``<storage>/base`` beside the search's own base."""
    model, _, recipe = specs(config)
    paths = []
    for extra in config.bases:
        if extra.checkpoint:
            paths.append(str(Path(extra.checkpoint).resolve()))
            continue
        seed = config.seed if extra.seed is None else extra.seed
        data = data_spec(extra.data or config.data)
        paths.append(str(ensure_base_checkpoint(model, data, recipe, storage / "base", seed=seed, show_progress=show_progress)))
    return paths


def with_extra_bases(config: SearchConfig, setup: TrialSetup, checkpoints: Sequence[str]) -> TrialSetup:
    """``setup`` carrying one trial setup per extra base model (same recipe, own data and
    checkpoint), so each trial also evaluates its profile there; unchanged without ``bases``."""
    if not config.bases:
        return setup
    others = tuple(
        replace(setup, data=data_spec(extra.data or config.data), base_checkpoint=checkpoint, label=config.base_label(extra))
        for extra, checkpoint in zip(config.bases, checkpoints, strict=True)
    )
    return replace(setup, label=config.base_label(None), others=others)


def from_manifest(manifest, *, address: str | None = None) -> Prepared:
    """The prepared search an experiment manifest describes, marked for resuming."""
    config = manifest.config.model_copy(update={"address": address}) if address else manifest.config
    space = build_space(config, manifest.num_classes)
    storage = manifest.directory.parent
    return Prepared(config, manifest.setup(), space, manifest.dense_costs, storage, manifest.num_classes, resume=True)


def prepare(config: SearchConfig, *, show_progress: bool = True) -> Prepared:
    """Validate, load data, train or load the base model and derive the profile space.

    An experiment of the same name that Tune can restore, started with the same config, is
    prepared for resuming instead (``Prepared.resume``); a different config is an error.
    """
    _check_names(config)
    storage = local_storage(config)
    existing = _existing(config, storage)
    if existing is not None:
        return existing
    model, data, recipe = specs(config)
    splits = data.load(model.input_size)  # a missing data set fails here, before any write
    space = build_space(config, splits.num_classes)  # so does an unreachable budget
    checkpoint = config.base.checkpoint
    if checkpoint is None:
        checkpoint = str(ensure_base_checkpoint(model, data, recipe, storage / "base", seed=config.seed, show_progress=show_progress))
    setup = replace(trial_setup(config), base_checkpoint=str(Path(checkpoint).resolve()))
    setup = with_extra_bases(config, setup, ensure_extra_bases(config, storage, show_progress=show_progress))
    dense = load_base(model, splits.num_classes, setup.base_checkpoint)
    dense_costs = measure_costs(dense, example_input(setup), setup.cost_functions())
    check_measured_budgets(space, setup, splits.num_classes, dense_costs)
    return Prepared(config, setup, space, dense_costs, storage, splits.num_classes)


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join ``address``, or start a private local Ray on the loopback interface."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, configure_logging=False)


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


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def build_trainable(prepared: Prepared):
    """The Tune trainable of a search; fresh and restored runs must use the same one."""
    from ray import tune

    config = prepared.config
    function = taper_run if config.method == "taper" else prune_and_finetune
    return tune.with_resources(
        tune.with_parameters(function, setup=prepared.setup),
        {"cpu": config.resources.cpu, "gpu": config.resources.gpu},
    )


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


def restore_tuner(prepared: Prepared):
    """The interrupted search's Tuner: finished trials kept, unfinished and errored ones
    resumed from their last checkpoint, the searcher restored from its own saved state."""
    from ray import tune

    if not is_uri(prepared.config.storage_path):
        from prunetune.search.run.snapshots import ABANDONED_DIR, clear_stale_staging, repair, set_aside_orphans

        repaired = repair(prepared.experiment_dir)
        if repaired:
            print(f"the crash cut Tune's copy of its snapshot short: resuming from the last whole one ({', '.join(repaired)})")
        for name in set_aside_orphans(prepared.experiment_dir):
            print(f"{name} started after the last snapshot: its work is redone; moved to {ABANDONED_DIR}/")
        clear_stale_staging(prepared.experiment_dir)  # or the restored run would copy it back
    tuner = tune.Tuner.restore(prepared.experiment_uri, trainable=build_trainable(prepared), resume_errored=True)
    # Tune unpickles the callbacks as they were when the search started; fresh ones see the
    # config as it is now (e.g. a tracking server URI) and may re-attach to their runs.
    tuner._local_tuner.get_run_config().callbacks = build_callbacks(prepared)
    return tuner


def build_tuner(prepared: Prepared, trainable=None):
    """The search's Tuner: searcher behind a ConcurrencyLimiter, callbacks, reporter.

    ``trainable`` replaces the search's own trial function (``benchmarks/scheduler_overhead``
    times this assembly around a no-op trial); None, the default, runs the real trials.
    """
    from ray import tune

    config = prepared.config
    param_space, trials = _trials(prepared)
    trainable = trainable or build_trainable(prepared)
    callbacks = build_callbacks(prepared)
    reporter = tune.CLIReporter(
        metric_columns={"accuracy": "acc", f"rel/{prepared.frontier_cost}": "cost", "feasible": "ok"},
        parameter_columns=[],
        max_report_frequency=15,
    )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            **trials,
            metric="accuracy",
            mode="max",
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=prepared.storage_uri,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            progress_reporter=reporter,
            verbose=1,
        ),
    )


def _trials(prepared: Prepared) -> tuple[dict, dict]:
    """Tune's parameter space and how trials are made: a profile searcher (``method: search``)
    or a grid over the taper sweep (``method: taper``)."""
    from ray.tune.search import ConcurrencyLimiter

    config = prepared.config
    if config.method == "taper":
        return taper_param_space(config), {"num_samples": 1, "max_concurrent_trials": config.concurrency}
    searcher_cls = get_searcher(config.searcher.name)
    searcher = searcher_cls(prepared.space, seed=config.searcher.seed, **config.searcher.options)
    space = {"model": config.model.name, "data": config.data.name, "criterion": config.prune.criterion}
    return space, {"search_alg": ConcurrencyLimiter(searcher, max_concurrent=config.concurrency), "num_samples": config.trials}


def collect(results) -> tuple[list[TrialRecord], dict[str, str]]:
    """Finished trials as records, and errored trials' reasons by trial id."""
    records, errors = [], {}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        if result.error is not None:
            errors[trial_id] = str(result.error).strip().splitlines()[-1]
            continue
        if is_taper_result(result):  # every report of a taper run is a frontier point
            records.extend(taper_records(result, trial_id))
            continue
        if not result.metrics or "feasible" not in result.metrics:
            continue
        checkpoint = result.checkpoint.path if result.checkpoint else None
        records.append(TrialRecord.from_metrics(trial_id, result.metrics, result.config["profile"], checkpoint))
    return records, errors


def run_search(prepared: Prepared) -> SearchOutcome:
    """Run every trial on Ray Tune (or the rest of them, for a resumed search), then write and
    return the frontier."""
    started = time.time()
    # Tune snapshots the experiment (trial states, searcher) at most this often. Every second
    # (Tune's "auto" waits 10 s or more) a killed driver redoes at most the last second's
    # finished trials on resume; "0" (after every event) would redo none, but each snapshot
    # writes every trial, so over thousands of short trials the driver's work grows
    # quadratically (9x a bare Tune run at 1,000 no-op trials; 1.24x at 1 s: BENCHMARKS.md).
    # Set e.g. 10 for object storage. The user's setting wins.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", SNAPSHOT_PERIOD_S)
    init_ray(prepared.config.address)
    check_shared_storage(prepared)
    if prepared.resume:
        tuner = restore_tuner(prepared)
    else:
        write_manifest(prepared)
        tuner = build_tuner(prepared)
    results = tuner.fit()
    records, errors = collect(results)
    cost = prepared.frontier_cost
    front = pareto(records, cost)
    files = write_frontier(front, cost, prepared.experiment_dir)
    files["png"] = plot_frontier(records, cost, prepared.experiment_dir / "frontier.png", title=prepared.config.name)
    files["html"] = frontier_html(records, frontier_costs(prepared.config), prepared.experiment_dir / "frontier.html", title=prepared.config.name)
    return SearchOutcome(records, errors, front, files, time.time() - started)
