"""Where MLflow data goes (search/tracking/tracker.py): one rule for the embedded SQLite store and
its artifacts, and one get-or-create of a study, shared by the tracker, the model registry and
``prunetune ui``/``compare``."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.commands.ui import store
from prunetune.search.tracking.tracker import artifact_root, embedded_database, embedded_uri, ensure_experiment


def test_an_embedded_store_keeps_its_artifacts_beside_the_database(tmp_path):
    uri = embedded_uri(tmp_path / "results")

    assert uri == f"sqlite:///{(tmp_path / 'results').resolve() / 'mlflow.db'}"
    assert embedded_database(uri) == tmp_path.resolve() / "results" / "mlflow.db"
    assert artifact_root(uri) == tmp_path.resolve() / "results" / "mlartifacts"
    assert embedded_database("http://127.0.0.1:5000") is None and artifact_root("http://127.0.0.1:5000") is None


def test_ui_serves_a_results_folder_or_an_experiment_in_it_with_the_same_artifact_rule(tmp_path):
    (tmp_path / "mlflow.db").touch()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "prunetune.json").write_text("{}")

    expected = (embedded_uri(tmp_path), tmp_path.resolve() / "mlartifacts")
    assert store(str(tmp_path)) == expected == store(str(tmp_path / "demo"))
    assert store(embedded_uri(tmp_path)) == expected  # a SQLite URI given as is
    assert store("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", Path("mlartifacts").resolve())
    with pytest.raises(ConfigError, match="no MLflow store at"):
        store(str(tmp_path / "demo" / "nothing-here"))


@pytest.mark.integration  # creates a real MLflow SQLite store (~10 s of migrations)
def test_a_study_is_created_once_beside_its_store_and_restored_when_deleted(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = embedded_uri(tmp_path)
    client = MlflowClient(uri)
    first = ensure_experiment(client, uri, "study-a")

    assert client.get_experiment(first).artifact_location == (tmp_path.resolve() / "mlartifacts" / "study-a").as_uri()
    assert ensure_experiment(client, uri, "study-a") == first
    client.delete_experiment(first)
    assert ensure_experiment(client, uri, "study-a") == first
    assert client.get_experiment(first).lifecycle_stage == "active"
