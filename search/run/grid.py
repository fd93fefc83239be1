"""Running a fixed set of trials on Ray Tune: known profiles, not a searcher's suggestions.

``prunetune apply`` and ``prunetune experiment`` evaluate profiles chosen up front, possibly under
several variants (criteria, seeds, base models). :func:`run_grid` gives Tune that list as a
grid ``param_space`` and reuses the search's pieces (the Tuner assembly, trainable resources, MLflow
tracking callback, manifest), so each profile is an ordinary trial with the usual checkpoint, child run
and report. :func:`log_report` attaches a report's files to the run's MLflow parent run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.run.prepare import Prepared, local_storage
from prunetune.search.run.tuner import make_tuner, split_results, start, with_resources
from prunetune.search.store.manifest import write_manifest


def profile_key(ratios: Mapping[str, float]) -> str:
    """A canonical text for a profile, to find which input a trial's profile was."""
    return json.dumps({k: round(float(v), 6) for k, v in sorted(ratios.items())})


def check_new(config) -> None:
    """A fixed run never resumes: an existing experiment of the same name is an error
    (checked before ``prepare``, which would otherwise offer to resume it)."""
    directory = local_storage(config) / config.name
    if directory.exists():
        raise ConfigError(f"results {directory} already exist; choose another --name or remove that folder")


def run_grid(
    prepared: Prepared,
    grid: Mapping[str, Sequence[Any]],
    *,
    fixed: Mapping[str, Any] | None = None,
    bases: Mapping[str, Any] | None = None,
) -> list:
    """One Tune trial per combination of ``grid``'s values (``profile`` among them), run with
    :func:`~prunetune.trainables.variants.prune_and_finetune_variant` on ``prepared``'s setup (``bases``:
    other setups a trial's ``base`` key selects). Returns Tune's results, errored ones included."""
    from ray import tune

    from prunetune.trainables.variants import VARIANT_KEYS, VARIES, prune_and_finetune_variant

    config = prepared.config
    start(prepared)
    write_manifest(prepared)
    trainable = with_resources(prepared, prune_and_finetune_variant, bases=dict(bases or {}))
    space = {
        "model": config.model.name,
        "data": config.data.name,
        "criterion": config.prune.criterion,
        **dict(fixed or {}),
    }
    if "base" in grid:  # the data set is the base's: which one is in the trial's ``base``
        space.pop("data")
    space.update({key: tune.grid_search(list(values)) for key, values in grid.items()})
    space[VARIES] = [key for key in VARIANT_KEYS if key in grid]  # what each trial's MLflow run is named after
    from prunetune.search.run.console import LiveView

    total = math.prod(len(list(values)) for values in grid.values())
    reporter = LiveView(prepared.frontier_cost, total)  # one live line, as a search shows
    tuner = make_tuner(prepared, trainable, space, {"max_concurrent_trials": config.concurrency}, reporter=reporter)
    return list(tuner.fit())


def finished(results: Sequence) -> tuple[list[dict], dict[str, str]]:
    """The last report (with its ``config``) of every finished trial, and errored trials' reasons."""
    done, errors = split_results(results)
    rows = [
        {**result.metrics, "config": result.config, "checkpoint": result.checkpoint.path if result.checkpoint else None}
        for result in done
        if R.is_finished(result.metrics)
    ]
    return rows, errors


def log_report(prepared: Prepared, files: Sequence[Path]) -> str | None:
    """Attach ``files`` to the run's MLflow parent run (the one the tracking callback opened);
    returns the run id, or None when tracking is off or MLflow is unreachable (a warning)."""
    if not prepared.config.tracking.enabled:
        return None
    from prunetune.search.tracking.tracker import LocalState, TrackingUnavailable, tracking_uri

    uri = tracking_uri(prepared.config, prepared.storage)
    run_id = LocalState.load(prepared.experiment_dir).parent_runs.get(uri)
    if run_id is None:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path="report")
    except (MlflowException, OSError, TrackingUnavailable) as err:
        print(f"warning: could not log the report to MLflow at {uri}: {str(err).splitlines()[0][:200]}")
        return None
    return run_id
