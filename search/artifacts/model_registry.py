"""Registering a verified export in the MLflow model registry.

:func:`register_export` logs the artifact as an MLflow model in one run of the search's MLflow
experiment and registers it under a name; the new version carries the profile, budgets,
accuracy, costs and source trial as tags, so ``models:/NAME/VERSION`` can be fetched and run
(``mlflow.pyfunc.load_model``) and the best model per budget found by its tags. The registry
needs a database-backed store: the search's default ``sqlite:///<storage>/mlflow.db`` or a
tracking server.

How each format is logged is the format's own choice (``ExportFormat.log_model`` in
:mod:`prunetune.search.artifacts.export`): ``state_dict`` as the rebuilt ``nn.Module`` in
MLflow's ``pt2`` (``torch.export``) format, so loading it unpickles nothing, with the export
folder beside it as artifacts; ``torchscript`` through ``mlflow.pytorch`` (which saves a
ScriptModule with ``torch.jit.save``); ``onnx`` through ``mlflow.onnx``. The study is found or
created like a search's (:func:`~prunetune.search.tracking.tracker.ensure_experiment`), so with a
SQLite store its artifacts go beside the database. The same run also holds the model as a
pyfunc that takes raw images and applies the recorded preprocessing first
(:mod:`~prunetune.search.artifacts.raw_images`); the version's ``raw_images`` tag is its URI.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.tracking import tracker


@dataclass(frozen=True)
class RegisteredExport:
    name: str
    version: str
    run_id: str
    tracking_uri: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def version_tags(result) -> dict[str, str]:
    """Tags of the registered version: everything needed to choose among versions."""
    info = result.info
    tags = {
        "profile": json.dumps(info["profile"]),
        "budgets": ", ".join(info["budgets"]) or "none",
        R.ACCURACY: f"{info[R.ACCURACY]:.6g}",
        R.FEASIBLE: str(info[R.FEASIBLE]).lower(),
        R.SOURCE_TRIAL: result.trial_id,
        "experiment": info["source"]["experiment"],
        "format": result.format,
        "model": info["architecture"]["model"],
        "preprocessing": json.dumps(info.get("preprocessing")),
    }
    tags.update({f"cost.{k}": f"{v:.8g}" for k, v in info["costs"].items()})
    tags.update({f"relative.{k}": f"{v:.6g}" for k, v in info["relative"].items()})
    return tags


def _log_model(result, name: str, example: np.ndarray):
    """Log ``result``'s artifact the way its format says (:meth:`ExportFormat.log_model`)."""
    from mlflow.models import infer_signature

    from prunetune.search.artifacts.export import get_format

    fmt = get_format(result.format)
    runner, loaded = fmt.load(result.path)
    output = runner(torch.from_numpy(example)).detach().numpy()
    signature = infer_signature(example, output)
    preprocessing = result.info.get("preprocessing")
    if preprocessing is None or "metadata" not in inspect.signature(fmt.log_model).parameters:
        return fmt.log_model(loaded, result.path, name, signature, example)  # a plug-in format from before metadata
    return fmt.log_model(
        loaded, result.path, name, signature, example, metadata={"prunetune.preprocessing": preprocessing}
    )


def register_export(result, name: str, tracking_uri: str, experiment: str, example: np.ndarray) -> RegisteredExport:
    """Log ``result`` (an :class:`~prunetune.search.artifacts.export.ExportResult`) and register it as ``name``.

    MLflow's model logging reads the process-wide tracking URI: it is ``tracking_uri`` while
    this runs and what it was before afterwards. ``example`` is a small input batch for the
    model's signature.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not name or "/" in name or ":" in name:
        raise ConfigError(f"--register {name!r} is not a valid model name; use letters, digits, '-', '_' or '.'")
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri exports it to child processes
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    tags = version_tags(result)
    try:
        experiment_id = tracker.ensure_experiment(client, tracking_uri, experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"export-{result.trial_id}") as run:
            mlflow.set_tags({"prunetune.export": result.format, **tags})
            mlflow.log_metrics(
                {R.ACCURACY: float(result.info[R.ACCURACY]), **{R.cost_key(k): v for k, v in result.costs.items()}}
            )
            info = _log_model(result, name, example)
            if result.info.get("preprocessing") is not None:
                from prunetune.search.artifacts.raw_images import NAME, log_raw_image_model

                tags[NAME] = log_raw_image_model(result).model_uri
        model_version = str(info.registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(name, model_version, key, value)
    except MlflowException as error:
        raise ConfigError(f"MLflow at {tracking_uri} refused the registration: {str(error).splitlines()[0]}") from None
    finally:
        mlflow.set_tracking_uri(previous)  # None: back to the default, MLFLOW_TRACKING_URI unset
    return RegisteredExport(name, model_version, run.info.run_id, tracking_uri)


def default_tracking_uri(manifest) -> str:
    """The search's own MLflow store (its experiment folder lies in the storage path)."""
    return tracker.tracking_uri(manifest.config, manifest.directory.parent)
