"""A user's mistake gets one line on stderr, exit code 2, and leaves nothing written: no results
folder, no base model trained, nothing that blocks the corrected rerun. Each case is one of
the classes of issue 15 (names, checks before the first write, silent wrong results,
tracebacks); the commands run in-process through ``cli.main``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from prunetune.search.cli import main
from tests.conftest import TINY

USER = "tests.search.searchers.usersearcher"  # a user's searcher module (searcher: module:Class)


def _untrained(tmp_path: Path) -> dict:
    """The tiny config without a base checkpoint: a check that came too late would train one."""
    return {**TINY, "storage_path": str(tmp_path / "results"), "tracking": {"enabled": False}}


def _refused(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("prunetune: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _search_refused(capsys, tmp_path: Path, config: dict, *extra: str) -> str:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    err = _refused(capsys, "search", str(path), *extra)
    assert not (tmp_path / "results").exists(), sorted(p.name for p in (tmp_path / "results").rglob("*"))
    return err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": ".."}, "an experiment name is one folder name"),
        ({"name": "."}, "an experiment name is one folder name"),
        ({"name": "base"}, "none of base"),
        ({"name": "../x"}, "an experiment name is one folder name"),
        ({"trials": True}, "'trials': Input should be a valid integer (got True)"),
        ({"trials": 2.5}, "'trials'"),
        ({"space": {"levels": []}}, "'space.levels': List should have at least 1 item"),
        ({"budgets": [{"cost": "macs", "max": 0.5, "relativ": True}]}, "'budgets.0.relativ'; did you mean 'relative'?"),
        ({"data": {"nme": "digits"}}, "'data.nme'; did you mean 'name'?"),
        ({"data": {"name": "digits", "mode": "fast"}}, "'data.mode'"),
        ({"data": {"name": "digits", "augment": "heavy"}}, "use standard, none or a mapping such as {crop: pad"),
        ({"data": {"name": "digits", "augment": {"crop": "rotate"}}}, "data.augment.crop: Input should be 'pad'"),
        ({"data": {"name": "digits", "augment": {"scale": [0.5, 2]}}}, "scale must be (low, high)"),
        ({"evaluate": {"val_images": 0}}, "'evaluate.val_images'"),
        ({"finetune": {**TINY["finetune"], "distill": {"alpha": 2}}}, "'finetune.distill.alpha'"),
        ({"finetune": {**TINY["finetune"], "warmup": -3}}, "'finetune.warmup'"),
        ({"finetune": {**TINY["finetune"], "label_smoothing": 1}}, "'finetune.label_smoothing'"),
        ({"base": {**TINY["base"], "distill": {"alpha": 0.5}}}, "the base model has no teacher to distill from"),
        ({"data": {"name": "fashion_mnist", "root": "/nowhere"}}, "apt-get install dataset-fashion-mnist"),
        ({"space": {"overrides": {"stem.0": {"lowx": 0.5}}}}, "space.overrides.stem.0 has unknown key 'lowx'"),
        ({"searcher": {"options": {"seed": 3}}}, "searcher 'random' got unknown option 'seed'"),
        ({"searcher": {"options": {"nonsense": 1}}}, "got unknown option 'nonsense' in searcher.options"),
        ({"method": "tapr"}, "unknown search method 'tapr' (did you mean 'taper'?); choose one of: search, taper"),
        (
            {"scheduler": "ashaa"},
            "unknown scheduler 'ashaa' (did you mean 'asha'?); choose one of: asha, fifo, hyperband",
        ),
        (
            {"searcher": "no_such_module_here:Mine"},
            "searcher 'no_such_module_here:Mine': cannot import module 'no_such_module_here'",
        ),
        ({"searcher": f"{USER}:Missing"}, f"searcher '{USER}:Missing': module '{USER}' has no 'Missing'"),
        ({"searcher": f"{USER}:NotASearcher"}, "is a class NotASearcher, not a ProfileSearcher subclass"),
        (
            {"searcher": {"name": f"{USER}:LocalSearcher", "options": {"explore": 2}}},
            f"searcher '{USER}:LocalSearcher' option explore=2: must be <= 1",
        ),
        ({"base": {**TINY["base"], "lr": float("inf")}}, "'base.lr': Input should be a finite number"),
        ({"base": {**TINY["base"], "lr": float("nan")}}, "'base.lr': Input should be a finite number"),
        ({"finetune": {**TINY["finetune"], "lr": float("inf")}}, "'finetune.lr': Input should be a finite number"),
        ({"base": {**TINY["base"], "momentum": float("nan")}}, "'base.momentum': Input should be a finite number"),
        (
            {"finetune": {**TINY["finetune"], "weight_decay": float("inf")}},
            "'finetune.weight_decay': Input should be a finite number",
        ),
    ],
)
def test_a_config_mistake_is_one_line_before_any_write(capsys, tmp_path, change, expected):
    assert expected in _search_refused(capsys, tmp_path, {**_untrained(tmp_path), **change})


def test_a_base_recipe_that_diverges_is_one_line_and_trains_nothing(capsys, tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**_untrained(tmp_path), "base": {**TINY["base"], "lr": 1e30}}))
    assert main(["search", str(path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # the base's progress bar is above it
    assert last.startswith("prunetune: error: training the base model diverged") and "lower base.lr (now 1e+30)" in last
    assert not list((tmp_path / "results").rglob("*.pt")) and not (tmp_path / "results" / "tiny").exists()


@pytest.mark.parametrize(
    ("budgets", "expected"),
    [
        (
            [{"cost": "tests.search.costfuncs:negative_meter", "max": 10}],
            "measured -5.0; a cost must be a finite number >= 0",
        ),
        (
            [{"cost": "tests.search.costfuncs:failing_meter", "max": 10}],
            "failing_meter raised RuntimeError: meter unplugged",
        ),
        (
            [{"cost": "macs", "max": 0.5, "relative": True}, {"cost": "macs", "max": 1e5}],
            "several budgets on the same cost",
        ),
        (
            [{"cost": "latency", "max": 1e-6, "options": {"repeats": 2, "warmup": 1}}],
            "cannot be met: the smallest profile",
        ),
    ],
)
def test_a_bad_budget_is_refused_before_the_base_model_is_trained(capsys, tmp_path, budgets, expected):
    assert expected in _search_refused(capsys, tmp_path, {**_untrained(tmp_path), "budgets": budgets})


def test_storage_that_cannot_hold_results_is_refused(capsys, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    for storage in (blocker, blocker / "under"):
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump({**_untrained(tmp_path), "storage_path": str(storage)}))
        assert f"{blocker} is a file" in _refused(capsys, "search", str(path))
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"- a\n- list\n", "holds a list, not a mapping"),
        (b"42\n", "holds a int, not a mapping"),
        (b"name: caf\xe9\n", "is not UTF-8 text"),
        (b"trials: [\n", "is not valid YAML"),
    ],
)
def test_a_config_file_that_is_not_a_mapping_is_one_line(capsys, tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert expected in _refused(capsys, "search", str(path))


def test_a_set_value_yaml_cannot_parse_is_one_line(capsys, tmp_path):
    err = _refused(capsys, "search", "--set", f"storage_path={tmp_path / 'results'}", "--set", "trials=[")
    assert "--set 'trials=[': the value is not valid YAML" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["../../x", "/abs/path", ".."])
def test_command_names_are_checked_like_config_names(capsys, tmp_path, name):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_untrained(tmp_path)))
    profile = tmp_path / "p.json"
    profile.write_text("{}")
    err = _refused(capsys, "apply", "--config", str(path), "--profile", str(profile), "--name", name)
    assert f"--name {name!r}: an experiment name is one folder name" in err
    err = _refused(capsys, "experiment", "criteria", str(path), "--name", name)
    assert f"--name {name!r}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "p.json"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"version": 1, "config": {}})])
def test_a_damaged_manifest_is_one_line(capsys, tmp_path, content):
    experiment = tmp_path / "results" / "demo"
    experiment.mkdir(parents=True)
    (experiment / "prunetune.json").write_text(content)
    err = _refused(capsys, "resume", str(experiment))
    assert "prunetune.json is damaged" in err
    assert sorted(p.name for p in (tmp_path / "results").rglob("*")) == ["demo", "prunetune.json"]


@pytest.mark.integration
def test_a_search_refused_before_its_first_trial_leaves_nothing_that_blocks_its_name(capsys, tiny_config, tmp_path):
    """Random search cannot draw a profile within a budget just above the space's smallest
    corner: Tune has started, but the refusal removes the experiment folder again."""
    from prunetune.search.config import parse_config
    from prunetune.search.run.prepare import build_space

    space = build_space(parse_config(tiny_config), 10)
    corner = space.min_costs()["macs"] / space.cost_model.dense()["macs"]
    tiny_config["budgets"] = [{"cost": "macs", "max": corner * 1.001, "relative": True}]
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    try:
        code = main(["search", str(path)])
    finally:
        import ray

        ray.shutdown()  # the private local Ray it started in this process: later tests start their own
    last = capsys.readouterr().err.strip().splitlines()[-1]  # Ray and MLflow log above it
    assert code == 2 and last.startswith("prunetune: error: random search drew"), last
    results = Path(tiny_config["storage_path"])
    assert not (results / "tiny").exists() and not (results / ".locks").exists()


def _cpus() -> float:
    from prunetune.search.run.resources import local_resources

    return local_resources()["CPU"]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        pytest.param(
            {"gpu": 1},
            "asks for resources 1 CPUs and 1 GPUs",
            id="a GPU on a machine without one",
            marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU"),
        ),
        pytest.param({"cpu": 4096}, "asks for resources 4096 CPUs and 0 GPUs", id="more CPUs than the machine"),
    ],
)
def test_a_trial_no_node_can_hold_is_refused_instead_of_waiting_for_ever(capsys, tmp_path, resources, expected):
    err = _search_refused(capsys, tmp_path, {**_untrained(tmp_path), "resources": resources})
    assert expected in err and f"this machine (a private local Ray) has {_cpus():g} CPUs" in err
    assert "resources.wait_s" in err


def test_a_dead_cluster_address_is_one_line_within_seconds(capsys, tmp_path):
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    err = _search_refused(capsys, tmp_path, _untrained(tmp_path), "--address", f"127.0.0.1:{port}")
    assert time.monotonic() - started < 30
    assert f"no Ray cluster answers at --address '127.0.0.1:{port}'" in err and "ray start --head" in err


@pytest.mark.parametrize("address", ["10.0.0.5:port", "ray://:10001", "host:99999"])
def test_an_address_that_is_not_host_port_is_one_line(capsys, tmp_path, address):
    assert "is not HOST:PORT" in _search_refused(capsys, tmp_path, _untrained(tmp_path), "--address", address)


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_ui_on_a_port_out_of_range_is_one_line(capsys, tmp_path, port):
    (tmp_path / "mlflow.db").touch()  # a results folder with its store: only the port is wrong
    err = _refused(capsys, "ui", str(tmp_path), f"--port={port}")
    assert f"--port {port} is not a port: choose one in 1..65535" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("truncated", "cannot be read"),
        (b"\x8a\x13 random bytes \x00\xff", "cannot be read"),
        ("list", "holds a list, not a state dict of tensors"),
    ],
)
def test_a_damaged_base_checkpoint_is_one_line(capsys, tmp_path, tiny_base, content, expected):
    import torch

    checkpoint = tmp_path / "base.pt"
    if content == "truncated":
        checkpoint.write_bytes(tiny_base.read_bytes()[:2000])
    elif content == "list":
        torch.save([1, 2, 3], checkpoint)
    else:
        checkpoint.write_bytes(content)
    config = {**_untrained(tmp_path), "base": {**_untrained(tmp_path)["base"], "checkpoint": str(checkpoint)}}
    err = _search_refused(capsys, tmp_path, config)
    assert f"checkpoint {str(checkpoint)!r} " in err and expected in err


def _foreign_experiment(tmp_path: Path) -> Path:
    """An experiment folder with a valid manifest and a Tune state file, as another user's would be."""
    from prunetune.search.config import parse_config

    experiment = tmp_path / "results" / "tiny"
    experiment.mkdir(parents=True)
    blob = {
        "version": 1,
        "config": parse_config(_untrained(tmp_path)).model_dump(mode="json"),
        "base_checkpoint": str(tmp_path / "base.pt"),
        "num_classes": 10,
        "dense_costs": {},
        "groups": {},
    }
    (experiment / "prunetune.json").write_text(json.dumps(blob))
    return experiment


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _as_another_user(monkeypatch, folder: Path) -> None:
    import os

    uid = folder.stat().st_uid + 4242  # the folder's owner is now someone else than "us"
    monkeypatch.setattr(os, "getuid", lambda: uid)


def test_resuming_another_users_folder_needs_trust(capsys, monkeypatch, tmp_path):
    experiment = _foreign_experiment(tmp_path)
    (experiment / "tuner.pkl").write_bytes(b"a pickle that would run code")
    before = _listing(tmp_path)
    _as_another_user(monkeypatch, experiment)
    owner = experiment.stat().st_uid
    err = _refused(capsys, "resume", str(experiment))
    assert f"{experiment} belongs to " in err and f"(uid {owner})" in err and "pass --trust" in err
    assert _listing(tmp_path) == before
    # --trust gets past the owner check to the next one (without the made-up Tune state)
    (experiment / "tuner.pkl").unlink()
    assert "has no Tune state to resume" in _refused(capsys, "resume", str(experiment), "--trust")


def test_a_search_that_would_resume_another_users_folder_needs_trust(capsys, monkeypatch, tmp_path):
    experiment = _foreign_experiment(tmp_path)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(_untrained(tmp_path)))
    before = _listing(tmp_path)
    _as_another_user(monkeypatch, experiment)
    err = _refused(capsys, "search", str(path))
    assert f"{experiment} belongs to " in err and "pass --trust" in err
    assert _listing(tmp_path) == before
    assert "has no search state to resume" in _refused(capsys, "search", str(path), "--trust")


def test_a_state_file_of_another_users_inside_ones_own_folder_needs_trust(capsys, tmp_path):
    import os

    experiment = _foreign_experiment(tmp_path)
    state = experiment / "trial_0" / "searcher-state.pkl"
    state.parent.mkdir()
    state.write_bytes(b"planted")
    try:
        os.chown(state, os.getuid() + 4242, -1)
    except PermissionError:
        pytest.skip("only root can give a file to another user")
    err = _refused(capsys, "resume", str(experiment))
    assert f"{state} belongs to uid {os.getuid() + 4242}" in err and "pass --trust" in err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ratios": [0.5, 0.5]}, "'ratios' is a list; it must map each group name to a keep ratio in (0, 1]"),
        ({"ratios": "layer1.0.conv1=0.5"}, "'ratios' is a str"),
        (
            {"ratios": {"layer1.0.conv1": "half"}},
            "ratios['layer1.0.conv1'] is 'half' (a str); a keep ratio is a number",
        ),
        ({"ratios": {"layer1.0.conv1": True}}, "ratios['layer1.0.conv1'] is True (a bool)"),
        ({"ratios": {"layer1.0.conv1": None}}, "ratios['layer1.0.conv1'] is None"),
        ({"architecture": "resnet20"}, "'architecture' is a str, not a mapping"),
        ({"architecture": ["resnet20"]}, "'architecture' is a list, not a mapping"),
        ({"architecture": {"name": 20}}, "architecture['name'] is 20 (a int); expected a str"),
        ({"architecture": {"name": "resnet20", "width": "wide"}}, "architecture['width'] is 'wide' (a str)"),
        ({"dataset": 7}, "'dataset' is a int, not a mapping"),
    ],
)
def test_apply_with_a_profile_field_of_the_wrong_type_is_one_line(capsys, tmp_path, change, expected):
    from prunetune.search.artifacts.library import FORMAT, VERSION

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_untrained(tmp_path)))
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "name": "p",
        "ratios": {"layer1.0.conv1": 0.5},
        "groups": {"layer1.0.conv1": 4},
        "architecture": {"name": "resnet20", "width": 0.25, "input_size": 8},
        "criterion": "l1",
        "dataset": {"name": "digits"},
    }
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({**blob, **change}))
    err = _refused(capsys, "apply", "--config", str(config), "--profile", str(profile))
    assert f"profile file {profile}: {expected}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "p.json"]


def test_a_profile_of_the_right_types_loads_for_apply(tmp_path):
    from prunetune.search.artifacts.apply import load_profiles
    from prunetune.search.artifacts.library import FORMAT, VERSION

    profile = tmp_path / "p.json"
    profile.write_text(
        json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "name": "p",
                "ratios": {"a": 0.5, "b": 1},
                "groups": {"a": 4, "b": 8},
                "architecture": {"name": "resnet20", "width": 1, "input_size": 8},
                "criterion": "l1",
                "dataset": {"name": "digits"},
            }
        )
    )
    [loaded] = load_profiles([profile])
    assert loaded.profile.ratios == {"a": 0.5, "b": 1.0} and loaded.source == "resnet20 on digits"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"width": 1000}, "model.width 1000 with model.input_size 8 needs about 3,035.4 GiB to train resnet20"),
        ({"input_size": 100000}, "model.width 0.25 with model.input_size 100000 needs about "),
    ],
)
def test_a_model_too_big_for_memory_is_refused_before_it_is_built(capsys, monkeypatch, tmp_path, model, expected):
    prepare = importlib.import_module("prunetune.search.run.prepare")  # the module, not run.prepare()
    monkeypatch.setattr(prepare, "available_memory", lambda: 8 * 2**30)  # a laptop's free memory
    config = {**_untrained(tmp_path), "model": {**TINY["model"], **model}}
    err = _search_refused(capsys, tmp_path, config)
    assert expected in err and "but this machine has 8.0 GiB available; lower model.width or model.input_size" in err


def test_the_tiny_model_fits_and_its_estimate_counts_parameters_and_activations():
    from prunetune.search.config import parse_config
    from prunetune.search.run.prepare import dense_training_memory

    params, activations = dense_training_memory(parse_config(TINY))
    assert params == 17534  # resnet20 at width 0.25 with a 10-class head
    assert activations > 64 * 3 * 8 * 8  # at least the batch itself


def test_torchs_out_of_memory_error_while_preparing_is_one_line(capsys, monkeypatch, tmp_path):
    prepare = importlib.import_module("prunetune.search.run.prepare")

    def exhausted(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 1099511627776 bytes.\nmore detail"
        )

    monkeypatch.setattr(prepare, "build_space", exhausted)
    err = _search_refused(capsys, tmp_path, _untrained(tmp_path))
    assert "out of memory preparing resnet20 at model.width 0.25 and model.input_size 8" in err
    assert "DefaultCPUAllocator: not enough memory" in err and "lower model.width or model.input_size" in err


def test_compare_against_a_dead_tracking_server_is_one_line_within_seconds(capsys, tmp_path):
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    err = _refused(capsys, "compare", "demo", "--tracking-uri", uri, "--out", str(tmp_path / "out"))
    assert time.monotonic() - started < 10
    assert err.startswith(f"prunetune: error: cannot reach the tracking server at {uri}: ")
    assert err.endswith("; start it or pass the right --tracking-uri")
    assert list(tmp_path.iterdir()) == []


def test_ones_own_folder_resumes_without_trust(tmp_path):
    from prunetune.search.store.trust import check_owner

    experiment = _foreign_experiment(tmp_path)
    (experiment / "tuner.pkl").write_bytes(b"state")
    (experiment / "trial_0").mkdir()
    (experiment / "trial_0" / "searcher-state.pkl").write_bytes(b"state")
    check_owner(experiment)  # every path is this user's: nothing to refuse


def test_a_bad_option_for_transfers_second_data_set_trains_nothing(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_untrained(tmp_path)))
    err = _refused(capsys, "experiment", "transfer", str(path), "--other", "shapes", "--other-set", "options.n_trian=3")
    assert "dataset 'shapes' has no option n_trian; its options are: n_test, n_train, n_val" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # the first base model was not trained
