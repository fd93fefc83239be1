"""Export, fine-tune and registry: search/export.py, search/results.py, search/finetune.py,
search/model_registry.py, their CLI commands, and trainables/export.py.

A finished "experiment" is built without Ray: prepare() trains a tiny base and writes the
manifest, then each trial folder gets a checkpoint and a result.json written the way the
trainable writes them (same checkpoint helper, same metric keys).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from prunetune.search.config import parse_config
from prunetune.search.store.manifest import read_manifest, write_manifest
from prunetune.search.artifacts.export import ExportError, StateDictFormat, export_trial, register_format
from prunetune.search.store.trials import find_trial, read_trials
from prunetune.search.run.prepare import prepare
from prunetune.trainables import Profile, load_pruned, rebuild_from_checkpoint, save_trial_checkpoint, train_steps
from prunetune.trainables.trial import _metrics, pruned_model

REPO = Path(__file__).resolve().parents[2]
# keep ratio per trial id; with the 60% MACs budget below, "half" and "small" are feasible
TRIALS = {"wide0001": 0.9, "half0002": 0.5, "small003": 0.3}
CIFAR = {
    "name": "exp-cifar",
    "model": {"name": "resnet20", "width": 0.25, "input_size": 8},
    "base": {"steps": 12, "batch_size": 32},
    "finetune": {"steps": 3, "batch_size": 32},
    "budgets": [{"cost": "macs", "max": 0.6, "relative": True}],
    "tracking": {"enabled": False},
}
TORCHVISION = {
    **CIFAR,
    "name": "exp-tv",
    "model": {"name": "resnet18", "input_size": 16},
    "base": {"steps": 2, "batch_size": 16},
    "finetune": {"steps": 1, "batch_size": 16},
}


def build_experiment(root: Path, raw: dict) -> Path:
    """A finished experiment folder under ``root`` with the trials of :data:`TRIALS`, plus
    ``broken01``: a trial that reported once and left no checkpoint."""
    prepared = prepare(parse_config({**raw, "storage_path": str(root)}), show_progress=False)
    write_manifest(prepared)
    setup, n = prepared.setup, prepared.num_classes
    splits = setup.data.load(setup.model.input_size)
    for trial_id, ratio in TRIALS.items():
        profile = Profile({g.name: ratio for g in prepared.space.groups})
        torch.manual_seed(0)
        model = pruned_model(setup, profile, n)
        train_steps(model, splits.train_x, splits.train_y, setup.finetune, seed=0)
        metrics = _metrics(setup, model, n, splits.val_x, splits.val_y, torch.device("cpu"), final=True)
        folder = prepared.experiment_dir / f"trial_{trial_id}"
        (folder / "checkpoint_000000").mkdir(parents=True)
        save_trial_checkpoint(folder / "checkpoint_000000", model, profile, {"step": setup.finetune.steps})
        report = {**metrics, "done": True, "trial_id": trial_id, "checkpoint_dir_name": "checkpoint_000000",
                  "config": {"profile": dict(profile.ratios)}}
        (folder / "result.json").write_text(json.dumps({"accuracy": 0.0, "trial_id": trial_id}) + "\n" + json.dumps(report) + "\n")
    broken = prepared.experiment_dir / "trial_broken01"
    broken.mkdir()
    (broken / "result.json").write_text(json.dumps({"accuracy": 0.1, "loss": 2.0, "trial_id": "broken01"}) + "\n")
    return prepared.experiment_dir


@pytest.fixture(scope="module")
def cifar_exp(tmp_path_factory) -> Path:
    return build_experiment(tmp_path_factory.mktemp("cifar"), CIFAR)


@pytest.fixture(scope="module")
def tv_exp(tmp_path_factory) -> Path:
    return build_experiment(tmp_path_factory.mktemp("tv"), TORCHVISION)


def reference(experiment: Path, trial_id: str):
    manifest = read_manifest(experiment)
    trial = find_trial(read_trials(experiment), trial_id)
    model = rebuild_from_checkpoint(manifest.setup(), trial.checkpoint, manifest.num_classes).eval()
    inputs = manifest.setup().data.load(manifest.config.model.input_size).val_x[:5].float()
    with torch.inference_mode():
        return manifest, trial, model, inputs, model(inputs)


LOADERS = {
    "state_dict": "from prunetune.trainables import load_pruned; m = load_pruned(path); y = m(x).detach()",
    "torchscript": "m = torch.jit.load(path); m.eval(); y = m(x).detach()",
    "onnx": (
        "import onnxruntime as ort; s = ort.InferenceSession(path, providers=['CPUExecutionProvider']); "
        "y = torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0])"
    ),
}


def outputs_in_fresh_process(fmt: str, path: Path, inputs: torch.Tensor, tmp_path: Path) -> torch.Tensor:
    """Load the artifact in a new Python process (nothing of this one shared) and run it."""
    torch.save(inputs, tmp_path / "x.pt")
    code = (
        "import sys, torch, warnings; warnings.simplefilter('ignore'); path = sys.argv[1]; "
        "x = torch.load(sys.argv[2]); " + LOADERS[fmt] + "; torch.save(y, sys.argv[3])"
    )
    args = [sys.executable, "-c", code, str(path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")]
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(tmp_path / "y.pt")


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript", "onnx"])
@pytest.mark.parametrize("which", ["cifar", "torchvision"])
def test_round_trip_reloads_in_a_fresh_process_with_the_trials_outputs(fmt, which, cifar_exp, tv_exp, tmp_path):
    experiment = cifar_exp if which == "cifar" else tv_exp
    manifest, trial, _, inputs, expected = reference(experiment, "half0002")
    out = tmp_path / {"state_dict": "model", "torchscript": "model.pt", "onnx": "model.onnx"}[fmt]

    result = export_trial(manifest, trial, fmt, out)

    assert result.path == out and out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left beside it
    assert result.costs == {"macs": trial.metrics["cost/macs"], "params": trial.metrics["cost/params"]}
    got = outputs_in_fresh_process(fmt, out, inputs, tmp_path)
    scale = expected.abs().max().item()
    assert got.shape == expected.shape  # batch of 5: the exported batch size was 2
    assert torch.allclose(got, expected, atol=1e-4 * max(1.0, scale), rtol=0)


def test_state_dict_folder_rebuilds_without_pickles_and_records_its_source(cifar_exp, tmp_path):
    manifest, trial, model, inputs, expected = reference(cifar_exp, "small003")
    export_trial(manifest, trial, "state_dict", tmp_path / "m")

    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["export.json", "model.pt", "profile.json"]
    info = json.loads((tmp_path / "m" / "export.json").read_text())
    assert info["architecture"] == {"model": "resnet20", "width": 0.25, "input_size": 8, "num_classes": 10,
                                    "round_to": 1, "min_channels": 1, "criterion": "l1", "in_channels": 3}
    assert info["source"]["trial_id"] == "small003" and info["source"]["experiment"] == "exp-cifar"
    assert info["accuracy"] == trial.metrics["accuracy"] and info["costs"]["macs"] == trial.metrics["cost/macs"]
    assert info["budgets"] == ["macs<=60%"] and set(info["profile"].values()) == {0.3}
    torch.load(tmp_path / "m" / "model.pt", weights_only=True)  # plain tensors only
    rebuilt = load_pruned(tmp_path / "m")
    assert not rebuilt.training
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_onnx_carries_a_dynamic_batch_and_the_export_info(cifar_exp, tmp_path):
    import onnx

    manifest, trial, *_ = reference(cifar_exp, "half0002")
    export_trial(manifest, trial, "onnx", tmp_path / "m.onnx")

    proto = onnx.load(str(tmp_path / "m.onnx"))
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["prunetune"])["source"]["trial_id"] == "half0002"


def test_a_checkpoint_that_does_not_match_the_trials_costs_is_refused_and_nothing_is_written(cifar_exp, tmp_path):
    manifest, trial, *_ = reference(cifar_exp, "half0002")
    lying = type(trial)(trial.trial_id, {**trial.metrics, "cost/macs": trial.metrics["cost/macs"] * 0.9},
                        trial.profile, trial.checkpoint, trial.directory)

    with pytest.raises(ExportError, match="reported macs="):
        export_trial(manifest, lying, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@register_format("wrong-weights")
class _WrongWeights(StateDictFormat):
    """A state_dict export whose weights were damaged on the way to disk."""

    def write(self, model, path, example, info):
        super().write(model, path, example, info)
        state = torch.load(path / "model.pt", weights_only=True)
        torch.save({k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}, path / "model.pt")


def test_an_artifact_whose_outputs_differ_is_an_error_and_is_removed(cifar_exp, tmp_path):
    manifest, trial, *_ = reference(cifar_exp, "half0002")
    (tmp_path / "old").mkdir()  # --force must not destroy the old output when the new one fails

    with pytest.raises(ExportError, match="outputs differ from the trial's model by"):
        export_trial(manifest, trial, "wrong-weights", tmp_path / "old", force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"]


# --- CLI ----------------------------------------------------------------------------------------


def prunetune(*args: str, cwd: Path | None = None, pre: str = "") -> subprocess.CompletedProcess:
    code = f"import sys; {pre}from prunetune.search.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # mlflow.set_tracking_uri sets it
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300, env=env)


def best_feasible(experiment: Path, max_rel_macs: float = 1.0) -> str:
    trials = [t for t in read_trials(experiment).values() if t.checkpoint and t.metrics["feasible"] and not t.source_trial]
    trials = [t for t in trials if t.metrics["rel/macs"] <= max_rel_macs]
    return max(trials, key=lambda t: (t.metrics["accuracy"], -t.metrics["cost/macs"])).trial_id


def test_best_is_the_most_accurate_feasible_trial_then_the_cheapest(tmp_path):
    from prunetune.search.store.trials import TrialInfo, best_trial, parse_budget_filter

    def trial(trial_id, accuracy, macs, feasible=1.0, source=None):
        metrics = {"accuracy": accuracy, "feasible": feasible, "cost/macs": macs, "rel/macs": macs / 100}
        return TrialInfo(trial_id, metrics, {}, tmp_path, tmp_path, source)

    trials = {t.trial_id: t for t in [
        trial("a", 0.90, 80, feasible=0.0), trial("b", 0.80, 60), trial("c", 0.80, 40),
        trial("d", 0.70, 20), trial("b-e9", 0.99, 60, source="b"),
    ]}
    assert best_trial(trials).trial_id == "c"  # b ties on accuracy but costs more; a is infeasible
    assert best_trial(trials, parse_budget_filter("macs<=30%")).trial_id == "d"
    assert best_trial(trials, parse_budget_filter("macs<=40")).trial_id == "c"


def test_cli_exports_the_best_feasible_trial_under_a_budget(cifar_exp, tmp_path):
    rel = {t: read_trials(cifar_exp)[t].metrics["rel/macs"] for t in TRIALS}
    cap = (rel["half0002"] + rel["small003"]) / 2  # between the two feasible trials: only the small one
    done = prunetune("export", cifar_exp, "--best", "--budget", f"macs<={cap * 100:.4f}%", "--format", "torchscript",
                     "--out", tmp_path / "best.pt")

    assert done.returncode == 0, done.stderr
    assert "trial small003:" in done.stdout and "verified:" in done.stdout
    assert (tmp_path / "best.pt").is_file()
    plain = prunetune("export", cifar_exp, "--best", "--format", "state_dict", "--out", tmp_path / "best")
    assert f"trial {best_feasible(cifar_exp)}:" in plain.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trial", "nosuch"], "no trial 'nosuch' in this experiment; valid trial ids: "),
        (["--trial", "broken01"], "trial broken01 has no checkpoint"),
        (["--best", "--budget", "macs<=1%"], "no feasible trial within macs<=1%"),
        (["--best", "--budget", "macs=>3"], "--budget 'macs=>3' is not NAME<=VALUE"),
        (["--best", "--budget", "latency<=3"], "trials report no cost 'latency'"),
    ],
)
def test_cli_refuses_a_bad_choice_of_trial_with_one_line(args, message, cifar_exp, tmp_path):
    done = prunetune("export", cifar_exp, *args, "--format", "state_dict", "--out", tmp_path / "m")

    assert done.returncode == 2
    assert done.stderr.startswith("prunetune: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
    if "valid trial ids" in message:
        assert all(t in done.stderr for t in TRIALS)


def test_cli_refuses_an_existing_output_unless_forced(cifar_exp, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "old.txt").write_text("keep me")
    args = ["export", cifar_exp, "--trial", "half0002", "--format", "state_dict", "--out", tmp_path / "m"]

    refused = prunetune(*args)
    assert refused.returncode == 2 and "already exists; choose another --out or pass --force" in refused.stderr
    assert (tmp_path / "m" / "old.txt").read_text() == "keep me"
    forced = prunetune(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["export.json", "model.pt", "profile.json"]


def test_cli_names_the_package_a_format_is_missing(cifar_exp, tmp_path):
    done = prunetune("export", cifar_exp, "--trial", "half0002", "--format", "onnx", "--out", tmp_path / "m.onnx",
                     pre="sys.modules['onnxruntime'] = None; ")

    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "pip install onnxruntime" in done.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_cli_refuses_a_folder_that_is_not_an_experiment(tmp_path):
    done = prunetune("export", tmp_path, "--best", "--format", "onnx", "--out", tmp_path / "m.onnx")

    assert done.returncode == 2 and "is not a prunetune experiment" in done.stderr


def test_finetune_continues_a_trial_and_export_takes_the_result(cifar_exp, tmp_path):
    done = prunetune("finetune", cifar_exp, "--trial", "small003", "--epochs", "1")

    assert done.returncode == 0, done.stderr
    estimate = read_trials(cifar_exp)["small003"].metrics["accuracy"]
    assert f"search's estimate {estimate:.4f}" in done.stdout
    folder = cifar_exp / "finetuned" / "small003-e1"
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "profile.json", "result.json", "state.json"]
    report = json.loads((folder / "result.json").read_text())
    assert report["source_trial"] == "small003" and report["finetune_steps"] > 10
    assert f"accuracy {report['accuracy']:.4f}" in done.stdout
    before = torch.load(read_trials(cifar_exp)["small003"].checkpoint / "model.pt", weights_only=True)
    after = torch.load(folder / "model.pt", weights_only=True)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it did train

    again = prunetune("finetune", cifar_exp, "--trial", "small003", "--epochs", "1")
    assert again.returncode == 2 and "already exists" in again.stderr
    exported = prunetune("export", cifar_exp, "--trial", "small003-e1", "--format", "state_dict", "--out", tmp_path / "ft")
    assert exported.returncode == 0, exported.stderr
    manifest, _, model, inputs, expected = reference(cifar_exp, "small003-e1")
    assert torch.allclose(load_pruned(tmp_path / "ft")(inputs), expected, atol=1e-5)
    assert json.loads((tmp_path / "ft" / "export.json").read_text())["accuracy"] == report["accuracy"]


# --- MLflow registry ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend; stopped by its PID."""
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed in the finalizer
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"mlflow server did not answer: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.25)  # polling a starting server, not waiting for a result
    yield uri
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.fixture
def restore_tracking_uri():
    import mlflow

    yield
    mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI, which set_tracking_uri exports


@pytest.mark.integration
@pytest.mark.usefixtures("restore_tracking_uri")
def test_registered_exports_are_fetched_by_name_and_version_and_run(cifar_exp, registry_server, tmp_path):
    import mlflow

    best = best_feasible(cifar_exp)
    for version, (fmt, out) in enumerate([("state_dict", "m"), ("onnx", "m.onnx")], start=1):
        done = prunetune("export", cifar_exp, "--best", "--budget", "macs<=60%", "--format", fmt, "--out", tmp_path / out,
                         "--register", "pruned-resnet20", "--tracking-uri", registry_server)
        assert done.returncode == 0, done.stderr
        assert f"registered: pruned-resnet20 version {version} (models:/pruned-resnet20/{version})" in done.stdout

    _, _, _, inputs, expected = reference(cifar_exp, best)
    mlflow.set_tracking_uri(registry_server)
    client = mlflow.MlflowClient(registry_server)
    for version in ("1", "2"):
        model = mlflow.pyfunc.load_model(f"models:/pruned-resnet20/{version}")
        got = model.predict(inputs.numpy())
        got = torch.as_tensor(got["logits"] if version == "2" else got)  # ONNX's pyfunc answers by output name
        assert torch.allclose(got, expected, atol=1e-4 * max(1.0, expected.abs().max().item()))
        tags = client.get_model_version("pruned-resnet20", version).tags
        trial = read_trials(cifar_exp)[best]
        assert tags["source_trial"] == best and tags["experiment"] == "exp-cifar"
        assert float(tags["accuracy"]) == pytest.approx(trial.metrics["accuracy"])
        assert float(tags["cost.macs"]) == trial.metrics["cost/macs"]
        assert tags["budgets"] == "macs<=60%"
        assert json.loads(tags["profile"]) == dict(trial.profile)


@pytest.mark.integration
@pytest.mark.usefixtures("restore_tracking_uri")
def test_register_defaults_to_the_searchs_own_sqlite_store(cifar_exp, tmp_path):
    import mlflow.pytorch

    done = prunetune("export", cifar_exp, "--trial", "half0002", "--format", "torchscript", "--out", tmp_path / "m.pt",
                     "--register", "tiny-ts", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    uri = f"sqlite:///{cifar_exp.parent / 'mlflow.db'}"
    assert f"registered: tiny-ts version 1 (models:/tiny-ts/1) at {uri}" in done.stdout
    assert (cifar_exp.parent / "mlartifacts" / "exp-cifar").is_dir()  # beside the database,
    assert not (tmp_path / "mlruns").exists()  # not in the working directory

    _, _, _, inputs, expected = reference(cifar_exp, "half0002")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model("models:/tiny-ts/1")
    assert torch.allclose(model(inputs), expected, atol=1e-5)
