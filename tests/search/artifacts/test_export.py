"""Export, fine-tune and registry: search/export.py, search/results.py, search/finetune.py,
search/model_registry.py, their CLI commands, and trainables/export.py.

A finished "experiment" is built without Ray: prepare() writes the manifest (on the session's
tiny base, or a base it trains), then each trial folder gets a checkpoint and a result.json
written the way the trainable writes them (same checkpoint helper, same metric keys). The CLI is called in this
process through ``cli.main`` (what the console script runs); the exported artifacts are reloaded
together in one fresh Python process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from prunetune.search.artifacts.export import ExportError, StateDictFormat, export_trial, register_format
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import prepare
from prunetune.search.store.manifest import read_manifest, write_manifest
from prunetune.search.store.trials import find_trial, read_trials
from prunetune.trainables import Profile, load_pruned, rebuild_from_checkpoint, save_trial_checkpoint, train_batches
from prunetune.trainables.trial import measure_point, pruned_model

REPO = Path(__file__).resolve().parents[3]
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


def build_experiment(root: Path, raw: dict, trials: dict[str, float] = TRIALS) -> Path:
    """A finished experiment folder under ``root`` with ``trials`` (id -> keep ratio), plus
    ``broken01``: a trial that reported once and left no checkpoint."""
    prepared = prepare(parse_config({**raw, "storage_path": str(root)}), show_progress=False)
    write_manifest(prepared)
    setup, n = prepared.setup, prepared.num_classes
    data = setup.open_data(torch.device("cpu"))
    for trial_id, ratio in trials.items():
        profile = Profile({g.name: ratio for g in prepared.space.groups})
        torch.manual_seed(0)
        model = pruned_model(setup, profile, n)
        train_batches(model, data.train_batches(setup.finetune.batch_size, seed=0), setup.finetune)
        metrics = measure_point(setup, model, n, data, torch.device("cpu"))
        folder = prepared.experiment_dir / f"trial_{trial_id}"
        (folder / "checkpoint_000000").mkdir(parents=True)
        save_trial_checkpoint(folder / "checkpoint_000000", model, profile, {"step": setup.finetune.steps})
        report = {
            **metrics,
            "done": True,
            "trial_id": trial_id,
            "checkpoint_dir_name": "checkpoint_000000",
            "config": {"profile": dict(profile.ratios)},
        }
        (folder / "result.json").write_text(
            json.dumps({"accuracy": 0.0, "trial_id": trial_id}) + "\n" + json.dumps(report) + "\n"
        )
    broken = prepared.experiment_dir / "trial_broken01"
    broken.mkdir()
    (broken / "result.json").write_text(json.dumps({"accuracy": 0.1, "loss": 2.0, "trial_id": "broken01"}) + "\n")
    return prepared.experiment_dir


@pytest.fixture(scope="module")
def tv_exp(tmp_path_factory) -> Path:
    """Only the trial the round trips export: a torchvision model's trials cost seconds each."""
    return build_experiment(tmp_path_factory.mktemp("tv"), TORCHVISION, {"half0002": TRIALS["half0002"]})


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
    "torch_export": "m = torch.export.load(path).module(); y = m(x).detach()",
    "onnx": (
        "import onnxruntime as ort; s = ort.InferenceSession(path, providers=['CPUExecutionProvider']); "
        "y = torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0])"
    ),
}


OUT_NAMES = {"state_dict": "model", "torchscript": "model.pt", "torch_export": "model.pt2", "onnx": "model.onnx"}
CASES = [
    (which, fmt) for which in ("cifar", "torchvision") for fmt in ("state_dict", "torch_export", "torchscript", "onnx")
]
# Run by a new Python process: loads each artifact listed in the JSON file argv[1], runs it on
# its inputs and saves the outputs (or the traceback, beside them as <y>.error). TorchScript and
# ONNX load first, before the state_dict cases import prunetune into that process.
RELOAD = """
import json, sys, traceback, warnings
import torch
warnings.simplefilter("ignore")
with open(sys.argv[1]) as f:
    cases = json.load(f)
for case in sorted(cases, key=lambda c: c["fmt"] == "state_dict"):
    try:
        scope = {"torch": torch, "path": case["path"], "x": torch.load(case["x"])}
        exec(case["loader"], scope)
        torch.save(scope["y"], case["y"])
    except Exception:
        with open(case["y"] + ".error", "w") as f:
            f.write(traceback.format_exc())
"""


@dataclass(frozen=True)
class RoundTrip:
    trial: object
    out: Path
    result: object  # export_trial's answer, or the exception it raised
    listing: list[str]  # the export's folder right after export_trial
    expected: torch.Tensor
    outputs: Path  # the fresh process's outputs (<outputs>.error instead if it failed)


@pytest.fixture(scope="module")
def round_trips(cifar_exp, tv_exp, tmp_path_factory) -> dict[tuple[str, str], RoundTrip]:
    """Every format of both models exported, each to its own folder; then all eight artifacts
    reloaded and run in ONE new Python process (nothing of this one shared)."""
    experiments = {"cifar": cifar_exp, "torchvision": tv_exp}
    references = {which: reference(experiment, "half0002") for which, experiment in experiments.items()}
    io = tmp_path_factory.mktemp("reload")
    cases, spec = {}, []
    for which, fmt in CASES:
        folder = tmp_path_factory.mktemp(f"{which}-{fmt}")
        manifest, trial, _, inputs, expected = references[which]
        out = folder / OUT_NAMES[fmt]
        try:
            result = export_trial(manifest, trial, fmt, out)
        except Exception as err:  # noqa: BLE001 - raised again by this case's own test
            result = err
        listing = sorted(p.name for p in folder.iterdir())
        x, y = io / f"{which}-{fmt}-x.pt", io / f"{which}-{fmt}-y.pt"
        if not isinstance(result, Exception):
            torch.save(inputs, x)
            spec.append({"fmt": fmt, "loader": LOADERS[fmt], "path": str(out), "x": str(x), "y": str(y)})
        cases[which, fmt] = RoundTrip(trial, out, result, listing, expected, y)
    (io / "cases.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, str(io / "cases.json")], capture_output=True, text=True, cwd=io, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return cases


@pytest.mark.parametrize(("which", "fmt"), CASES)
def test_round_trip_reloads_in_a_fresh_process_with_the_trials_outputs(which, fmt, round_trips):
    case = round_trips[which, fmt]
    trial, out, result, expected = case.trial, case.out, case.result, case.expected
    if isinstance(result, Exception):
        raise result

    assert result.path == out and out.exists()
    assert case.listing == [out.name]  # no temp file left beside it
    assert result.costs == {"macs": trial.metrics["cost/macs"], "params": trial.metrics["cost/params"]}
    error = case.outputs.with_name(case.outputs.name + ".error")
    if error.exists():
        pytest.fail(f"reloading the {fmt} export in a fresh process failed:\n{error.read_text()[-2000:]}")
    got = torch.load(case.outputs)
    scale = expected.abs().max().item()
    assert got.shape == expected.shape  # batch of 5: the exported batch size was 2
    assert torch.allclose(got, expected, atol=1e-4 * max(1.0, scale), rtol=0)


def test_state_dict_folder_rebuilds_without_pickles_and_records_its_source(cifar_exp, tmp_path):
    manifest, trial, model, inputs, expected = reference(cifar_exp, "small003")
    export_trial(manifest, trial, "state_dict", tmp_path / "m")

    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "export.json",
        "model.pt",
        "preprocessing.json",
        "profile.json",
    ]
    info = json.loads((tmp_path / "m" / "export.json").read_text())
    assert info["architecture"] == {
        "model": "resnet20",
        "width": 0.25,
        "input_size": 8,
        "num_classes": 10,
        "round_to": 1,
        "min_channels": 1,
        "criterion": "l1",
        "in_channels": 3,
    }
    assert info["source"]["trial_id"] == "small003" and info["source"]["experiment"] == "exp-cifar"
    assert info["accuracy"] == trial.metrics["accuracy"] and info["costs"]["macs"] == trial.metrics["cost/macs"]
    assert info["budgets"] == ["macs<=60%"] and set(info["profile"].values()) == {0.3}
    torch.load(tmp_path / "m" / "model.pt", weights_only=True)  # plain tensors only
    rebuilt = load_pruned(tmp_path / "m")
    assert not rebuilt.training
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_onnx_carries_a_dynamic_batch_and_the_export_info(round_trips):
    import onnx

    exported = round_trips["cifar", "onnx"]  # half0002 exported to ONNX (an ONNX export takes seconds)
    if isinstance(exported.result, Exception):
        raise exported.result

    proto = onnx.load(str(exported.out))
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["prunetune"])["source"]["trial_id"] == "half0002"


def test_a_checkpoint_that_does_not_match_the_trials_costs_is_refused_and_nothing_is_written(cifar_exp, tmp_path):
    manifest, trial, *_ = reference(cifar_exp, "half0002")
    lying = type(trial)(
        trial.trial_id,
        {**trial.metrics, "cost/macs": trial.metrics["cost/macs"] * 0.9},
        trial.profile,
        trial.checkpoint,
        trial.directory,
    )

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


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def prunetune(capsys, monkeypatch):
    """``prunetune ARGS`` through the console script's ``main``, in this process: its exit code
    (argparse's, which it raises as SystemExit, included), stdout and stderr."""
    from prunetune.search.cli import main

    def run(*args, cwd: Path | None = None) -> Done:
        monkeypatch.chdir(cwd or REPO)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri sets it
        capsys.readouterr()  # only this call's output
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return run


def best_feasible(experiment: Path, max_rel_macs: float = 1.0) -> str:
    trials = [
        t for t in read_trials(experiment).values() if t.checkpoint and t.metrics["feasible"] and not t.source_trial
    ]
    trials = [t for t in trials if t.metrics["rel/macs"] <= max_rel_macs]
    return max(trials, key=lambda t: (t.metrics["accuracy"], -t.metrics["cost/macs"])).trial_id


def test_best_is_the_most_accurate_feasible_trial_then_the_cheapest(tmp_path):
    from prunetune.search.store.trials import TrialInfo, best_trial, parse_budget_filter

    def trial(trial_id, accuracy, macs, feasible=1.0, source=None):
        metrics = {"accuracy": accuracy, "feasible": feasible, "cost/macs": macs, "rel/macs": macs / 100}
        return TrialInfo(trial_id, metrics, {}, tmp_path, tmp_path, source)

    trials = {
        t.trial_id: t
        for t in [
            trial("a", 0.90, 80, feasible=0.0),
            trial("b", 0.80, 60),
            trial("c", 0.80, 40),
            trial("d", 0.70, 20),
            trial("b-e9", 0.99, 60, source="b"),
        ]
    }
    assert best_trial(trials).trial_id == "c"  # b ties on accuracy but costs more; a is infeasible
    assert best_trial(trials, parse_budget_filter("macs<=30%")).trial_id == "d"
    assert best_trial(trials, parse_budget_filter("macs<=40")).trial_id == "c"


def test_cli_exports_the_best_feasible_trial_under_a_budget(cifar_exp, tmp_path, prunetune):
    rel = {t: read_trials(cifar_exp)[t].metrics["rel/macs"] for t in TRIALS}
    cap = (rel["half0002"] + rel["small003"]) / 2  # between the two feasible trials: only the small one
    done = prunetune(
        "export",
        cifar_exp,
        "--best",
        "--budget",
        f"macs<={cap * 100:.4f}%",
        "--format",
        "torchscript",
        "--out",
        tmp_path / "best.pt",
    )

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
def test_cli_refuses_a_bad_choice_of_trial_with_one_line(args, message, cifar_exp, tmp_path, prunetune):
    done = prunetune("export", cifar_exp, *args, "--format", "state_dict", "--out", tmp_path / "m")

    assert done.returncode == 2
    assert done.stderr.startswith("prunetune: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
    if "valid trial ids" in message:
        assert all(t in done.stderr for t in TRIALS)


def test_cli_refuses_an_existing_output_unless_forced(cifar_exp, tmp_path, prunetune):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "old.txt").write_text("keep me")
    args = ["export", cifar_exp, "--trial", "half0002", "--format", "state_dict", "--out", tmp_path / "m"]

    refused = prunetune(*args)
    assert refused.returncode == 2 and "already exists; choose another --out or pass --force" in refused.stderr
    assert (tmp_path / "m" / "old.txt").read_text() == "keep me"
    forced = prunetune(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "export.json",
        "model.pt",
        "preprocessing.json",
        "profile.json",
    ]


def test_cli_names_the_package_a_format_is_missing(cifar_exp, tmp_path, prunetune, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as when it is not installed
    done = prunetune("export", cifar_exp, "--trial", "half0002", "--format", "onnx", "--out", tmp_path / "m.onnx")

    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "pip install onnxruntime" in done.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_cli_refuses_a_folder_that_is_not_an_experiment(tmp_path, prunetune):
    done = prunetune("export", tmp_path, "--best", "--format", "onnx", "--out", tmp_path / "m.onnx")

    assert done.returncode == 2 and "is not a prunetune experiment" in done.stderr


def test_finetune_continues_a_trial_and_export_takes_the_result(cifar_exp, tmp_path, prunetune):
    # on a copy: it writes finetuned/small003-e1 into the experiment, which the other tests share
    cifar_exp = shutil.copytree(cifar_exp, tmp_path / cifar_exp.name)
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
    exported = prunetune(
        "export", cifar_exp, "--trial", "small003-e1", "--format", "state_dict", "--out", tmp_path / "ft"
    )
    assert exported.returncode == 0, exported.stderr
    manifest, _, model, inputs, expected = reference(cifar_exp, "small003-e1")
    assert torch.allclose(load_pruned(tmp_path / "ft")(inputs), expected, atol=1e-5)
    assert json.loads((tmp_path / "ft" / "export.json").read_text())["accuracy"] == report["accuracy"]


# --- MLflow registry: the session's mlflow_server (tests/search/conftest.py) ----------------------


@pytest.fixture
def restore_tracking_uri():
    import mlflow

    yield
    mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI, which set_tracking_uri exports


@pytest.mark.integration
@pytest.mark.usefixtures("restore_tracking_uri")
def test_registered_exports_are_fetched_by_name_and_version_and_run(cifar_exp, mlflow_server, tmp_path, prunetune):
    import mlflow

    best = best_feasible(cifar_exp)
    for version, (fmt, out) in enumerate([("state_dict", "m"), ("onnx", "m.onnx")], start=1):
        done = prunetune(
            "export",
            cifar_exp,
            "--best",
            "--budget",
            "macs<=60%",
            "--format",
            fmt,
            "--out",
            tmp_path / out,
            "--register",
            "pruned-resnet20",
            "--tracking-uri",
            mlflow_server,
        )
        assert done.returncode == 0, done.stderr
        assert f"registered: pruned-resnet20 version {version} (models:/pruned-resnet20/{version})" in done.stdout

    _, _, _, inputs, expected = reference(cifar_exp, best)
    mlflow.set_tracking_uri(mlflow_server)
    client = mlflow.MlflowClient(mlflow_server)
    for version in ("1", "2"):
        model = mlflow.pyfunc.load_model(f"models:/pruned-resnet20/{version}")
        got = model.predict(inputs.numpy())
        got = torch.as_tensor(got["logits"] if version == "2" else got)  # ONNX's pyfunc answers by output name
        assert torch.allclose(got, expected, atol=1e-4 * max(1.0, expected.abs().max().item()))
        tags = client.get_model_version("pruned-resnet20", version).tags
        trial = read_trials(cifar_exp)[best]
        assert tags["source_trial"] == best and tags["experiment"] == "exp-cifar"
        assert float(tags["accuracy"]) == pytest.approx(trial.metrics["accuracy"], abs=1e-5)  # a tag keeps 6 digits
        assert float(tags["cost.macs"]) == trial.metrics["cost/macs"]
        assert tags["budgets"] == "macs<=60%"
        assert json.loads(tags["profile"]) == dict(trial.profile)
        # the model carries its input preprocessing, as docs/export.md reads it back
        from prunetune.search.artifacts.preprocess import Preprocessing

        recorded = Preprocessing.from_json(model.metadata.metadata["prunetune.preprocessing"])
        assert recorded.input_size == 8 and json.loads(tags["preprocessing"])["std"] == list(recorded.std)


@pytest.mark.integration
@pytest.mark.usefixtures("restore_tracking_uri")
def test_register_defaults_to_the_searchs_own_sqlite_store(cifar_exp, tmp_path, prunetune):
    import mlflow.pytorch

    done = prunetune(
        "export",
        cifar_exp,
        "--trial",
        "half0002",
        "--format",
        "torchscript",
        "--out",
        tmp_path / "m.pt",
        "--register",
        "tiny-ts",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    uri = f"sqlite:///{cifar_exp.parent / 'mlflow.db'}"
    assert f"registered: tiny-ts version 1 (models:/tiny-ts/1) at {uri}" in done.stdout
    assert (cifar_exp.parent / "mlartifacts" / "exp-cifar").is_dir()  # beside the database,
    assert not (tmp_path / "mlruns").exists()  # not in the working directory

    _, _, _, inputs, expected = reference(cifar_exp, "half0002")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model("models:/tiny-ts/1")
    assert torch.allclose(model(inputs), expected, atol=1e-5)
