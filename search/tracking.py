"""MLflow tracking: where runs go and the Tune callback that writes them.

The embedded default is a SQLite store under the results directory, so a first search needs no
server; ``tracking.tracking_uri`` in the config or ``MLFLOW_TRACKING_URI`` points at a server.
Runs are written by the driver's callback, so trials on remote workers need no MLflow access.
"""

from __future__ import annotations

import os
from pathlib import Path

from search.config import SearchConfig


def tracking_uri(config: SearchConfig, storage: Path) -> str:
    """The config's URI, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<storage>/mlflow.db``."""
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{storage.resolve() / 'mlflow.db'}"


def experiment_name(config: SearchConfig) -> str:
    return config.tracking.experiment or config.name


def mlflow_callback(config: SearchConfig, storage: Path):
    """One MLflow run per trial: config (profile included) as params, reports as metrics."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(
        tracking_uri=tracking_uri(config, storage),
        experiment_name=experiment_name(config),
        tags={"prunetune.search": config.name, "prunetune.searcher": config.searcher.name},
        save_artifact=False,
    )
