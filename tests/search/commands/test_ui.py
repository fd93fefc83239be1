"""``prunetune ui``: a busy port is one line and exit 2 before any server starts; studies are
tagged so MLflow's UI opens them on their runs (not the GenAI traces page)."""

from __future__ import annotations

import socket

from prunetune.search import cli


def test_ui_on_a_busy_port_says_so_and_starts_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "mlflow.db").write_bytes(b"")
    from types import SimpleNamespace

    from prunetune.search.commands import ui

    started = []
    monkeypatch.setattr(ui, "subprocess", SimpleNamespace(Popen=lambda *a, **k: started.append(a)))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = cli.main(["ui", str(tmp_path), "--port", str(port)])
    out, err = capsys.readouterr()
    assert code == 2 and started == []
    assert (
        err.strip()
        == f"prunetune: error: port {port} on 127.0.0.1 is in use; choose another with --port, e.g. --port {port + 1}"
    )
    assert "MLflow UI:" not in out  # no URL to a server that is not ours


def test_a_study_opens_on_the_model_training_view(tmp_path):
    from mlflow.tracking import MlflowClient

    from prunetune.search.tracking.tracker import MODEL_TRAINING, TAG_EXPERIMENT_KIND, embedded_uri, ensure_experiment

    uri = embedded_uri(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    created = ensure_experiment(client, uri, "study")
    assert client.get_experiment(created).tags[TAG_EXPERIMENT_KIND] == MODEL_TRAINING
    old = client.create_experiment("older")  # a study made before the tag existed gets it on next use
    assert ensure_experiment(client, uri, "older") == old
    assert client.get_experiment(old).tags[TAG_EXPERIMENT_KIND] == MODEL_TRAINING
