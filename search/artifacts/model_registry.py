"""Registering a verified export in the MLflow model registry.

:func:`register_export` logs the artifact as an MLflow model in one run of the search's MLflow
experiment and registers it under a name; the new version carries the profile, budgets,
accuracy, costs and source trial as tags, so ``models:/NAME/VERSION`` can be fetched and run
(``mlflow.pyfunc.load_model``) and the best model per budget found by its tags. The registry
needs a database-backed store: the search's default ``sqlite:///<storage>/mlflow.db`` or a
tracking server.

How each format is logged (our choice): ``state_dict`` as the rebuilt ``nn.Module`` in MLflow's
``pt2`` (``torch.export``) format, so loading it unpickles nothing, with the export folder
beside it as artifacts; ``torchscript`` through ``mlflow.pytorch`` (which saves a ScriptModule
with ``torch.jit.save``); ``onnx`` through ``mlflow.onnx``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from prunetune.budgets.errors import ConfigError


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
        "accuracy": f"{info['accuracy']:.6g}",
        "feasible": str(info["feasible"]).lower(),
        "source_trial": result.trial_id,
        "experiment": info["source"]["experiment"],
        "format": result.format,
        "model": info["architecture"]["model"],
    }
    tags.update({f"cost.{k}": f"{v:.8g}" for k, v in info["costs"].items()})
    tags.update({f"relative.{k}": f"{v:.6g}" for k, v in info["relative"].items()})
    return tags


def _requirements(*packages: str) -> list[str]:
    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def _log_model(result, name: str, example: np.ndarray):
    import mlflow
    from mlflow.models import infer_signature

    from prunetune.search.artifacts.export import get_format

    runner, loaded = get_format(result.format).load(result.path)
    output = runner(torch.from_numpy(example)).detach().numpy()
    signature = infer_signature(example, output)
    if result.format == "onnx":
        import mlflow.onnx

        return mlflow.onnx.log_model(
            loaded, name="model", registered_model_name=name, signature=signature,
            pip_requirements=_requirements("onnx", "onnxruntime"), save_as_external_data=False,
        )
    import mlflow.pytorch

    info = mlflow.pytorch.log_model(
        loaded, name="model", registered_model_name=name, signature=signature, input_example=example,
        pip_requirements=_requirements("torch"),
        serialization_format="pickle" if result.format == "torchscript" else "pt2",
    )
    if result.path.is_dir():
        mlflow.log_artifacts(str(result.path), artifact_path="prunetune_export")
    return info


def register_export(result, name: str, tracking_uri: str, experiment: str, example: np.ndarray) -> RegisteredExport:
    """Log ``result`` (an :class:`~prunetune.search.artifacts.export.ExportResult`) and register it as ``name``.

    Sets this process's MLflow tracking URI to ``tracking_uri`` (MLflow's model logging reads
    the global one). ``example`` is a small input batch for the model's signature.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not name or "/" in name or ":" in name:
        raise ConfigError(f"--register {name!r} is not a valid model name; use letters, digits, '-', '_' or '.'")
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    tags = version_tags(result)
    try:
        experiment_id = _experiment_id(client, tracking_uri, experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"export-{result.trial_id}") as run:
            mlflow.set_tags({"prunetune.export": result.format, **tags})
            mlflow.log_metrics({"accuracy": float(result.info["accuracy"]), **{f"cost/{k}": v for k, v in result.costs.items()}})
            info = _log_model(result, name, example)
        model_version = str(info.registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(name, model_version, key, value)
    except MlflowException as error:
        raise ConfigError(f"MLflow at {tracking_uri} refused the registration: {str(error).splitlines()[0]}") from None
    return RegisteredExport(name, model_version, run.info.run_id, tracking_uri)


def _experiment_id(client, tracking_uri: str, experiment: str) -> str:
    """The experiment's id, creating it if needed; with a SQLite store its artifacts go beside
    the database (``mlartifacts/<experiment>``), not MLflow's default ``./mlruns`` of the cwd."""
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        location = (database.parent / "mlartifacts" / experiment).resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=location)


def default_tracking_uri(manifest) -> str:
    """The search's own MLflow store (its experiment folder lies in the storage path)."""
    from prunetune.search.tracking.tracker import tracking_uri

    return tracking_uri(manifest.config, manifest.directory.parent)
