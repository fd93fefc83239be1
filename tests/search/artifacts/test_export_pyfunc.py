"""``prunetune export --register`` also logs the model as an MLflow pyfunc that takes raw images:
loaded back with ``mlflow.pyfunc.load_model`` from a local SQLite store (no server), it predicts
raw digits, channels last or first, uint8 or float, at the trial's accuracy."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from prunetune.search.artifacts.export import export_trial
from prunetune.search.artifacts.model_registry import register_export
from prunetune.search.store.manifest import read_manifest
from prunetune.search.store.trials import find_trial, read_trials
from tests.search.artifacts.test_export_preprocessing import raw_digits


@pytest.fixture
def tracking_uri_for_loading():
    """The user's side: loading ``models:/...`` reads the process's tracking URI, so point it
    at the store (``register_export`` leaves the process's URI as it found it), and reset."""
    yield mlflow.set_tracking_uri
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(("fmt", "name"), [("torch_export", "m.pt2"), ("state_dict", "m")])
def test_the_raw_images_pyfunc_reaches_the_trials_accuracy(cifar_exp, tmp_path, fmt, name, tracking_uri_for_loading):
    manifest = read_manifest(cifar_exp)
    trial = find_trial(read_trials(cifar_exp), "wide0001")
    result = export_trial(manifest, trial, fmt, tmp_path / name)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    example = manifest.setup().data.load(8).val_x[:2].float().numpy()
    registered = register_export(result, "digits-net", uri, "exports", example)
    assert mlflow.get_tracking_uri() != uri  # this process's URI is as it was before
    version = mlflow.MlflowClient(uri).get_model_version("digits-net", registered.version)
    tracking_uri_for_loading(uri)
    model = mlflow.pyfunc.load_model(version.tags["raw_images"])

    images, labels = raw_digits()  # (N, 1, 8, 8) gray floats in [0, 1], as the loader read them
    labels = labels.numpy()
    channels_last = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # what PIL/OpenCV give
    tolerance = 1.5 / len(labels)
    for raw, slack in ((images.numpy(), tolerance), (channels_last, 0.03)):  # uint8 rounding moves a few
        logits = model.predict(raw)
        assert logits.shape == (len(labels), 10)
        assert (logits.argmax(1) == labels).mean() == pytest.approx(trial.metrics["accuracy"], abs=slack)
    unprocessed = mlflow.pyfunc.load_model(registered.uri)  # the format's own model wants prepared inputs
    raw_rgb = np.ascontiguousarray(np.repeat(images.numpy(), 3, axis=1))
    output = unprocessed.predict(raw_rgb)
    assert (np.asarray(output).argmax(1) == labels).mean() < trial.metrics["accuracy"] - 0.2
