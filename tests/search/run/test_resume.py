"""Resume, status and faults of a search on a private local Ray (the multi-node cases live in
test_multinode.py): a diverging trial ends errored with its reason, `search` on an existing
experiment resumes it or names what differs, `status` reads it without Ray."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import config_differences, local_storage, prepare

REPO = Path(__file__).resolve().parents[3]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=dict(os.environ),
    )


def test_config_differences_name_each_changed_key_but_not_the_address():
    old = parse_config({"trials": 8, "finetune": {"lr": 0.01}})
    new = parse_config({"trials": 12, "finetune": {"lr": 0.02}, "address": "10.0.0.1:6379"})
    assert config_differences(old, new) == ["finetune.lr: 0.01 -> 0.02", "trials: 8 -> 12"]


def test_a_gpu_share_is_a_fraction_of_one_device_or_whole_devices():
    assert parse_config({"resources": {"gpu": 0.25}}).resources.gpu == 0.25
    assert parse_config({"resources": {"gpu": 2}}).resources.gpu == 2
    with pytest.raises(ConfigError, match=r"resources.gpu.*fraction of one GPU.*got 1.5"):
        parse_config({"resources": {"gpu": 1.5}})


def test_object_storage_keeps_base_and_tracking_in_local_dir(tmp_path):
    config = parse_config({"storage_path": "s3://bucket/prunetune", "local_dir": str(tmp_path / "local")})
    assert local_storage(config) == tmp_path / "local"


def test_an_existing_folder_without_search_state_is_refused_not_resumed(tiny_config, tmp_path):
    (Path(tiny_config["storage_path"]) / "tiny").mkdir(parents=True)
    with pytest.raises(ConfigError, match="has no search state to resume"):
        prepare(parse_config(tiny_config), show_progress=False)


def _snapshot_set(directory: Path, trials: list[str], counter: int, session: str = "2026-01-01_00-00-00") -> Path:
    """A Tune snapshot set in its on-disk formats: experiment state, generator, searcher."""
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / f"experiment_state-{session}.json"
    data = [[json.dumps({"trial_id": t, "status": "TERMINATED"}), "{}"] for t in trials]
    state.write_text(json.dumps({"trial_data": data, "runner_data": {}}))
    (directory / f"search_gen_state-{session}.json").write_bytes(pickle.dumps({"counter": counter}))
    (directory / f"searcher-state-{session}.pkl").write_bytes(pickle.dumps({"completed": counter}))
    return state


def test_a_cut_snapshot_is_put_back_from_the_last_whole_set(tmp_path):
    from prunetune.search.run.snapshots import keep, repair
    from prunetune.search.store.progress import snapshot_states

    staging, experiment = tmp_path / "staging", tmp_path / "experiment"
    _snapshot_set(staging, ["aaaa"], 1)
    state = _snapshot_set(experiment, ["aaaa"], 1)
    assert keep(staging, experiment)
    state.write_text("")  # the driver died while Tune was copying it
    assert snapshot_states(experiment) == {"aaaa": "TERMINATED"}  # status reads the kept set
    assert repair(experiment) == [state.name]
    assert json.loads(state.read_text())["trial_data"][0][0] == json.dumps({"trial_id": "aaaa", "status": "TERMINATED"})
    assert repair(experiment) == []  # nothing left to put back


def test_a_snapshot_copied_half_way_is_made_one_moment_again(tmp_path):
    from prunetune.search.run.snapshots import keep, repair

    staging, experiment = tmp_path / "staging", tmp_path / "experiment"
    _snapshot_set(staging, ["aaaa", "bbbb"], 2)
    experiment.mkdir()
    assert keep(staging, experiment)
    # Tune's copy got the old experiment state but the new searcher files: every file whole,
    # yet the searcher would count a trial the restored search does not have.
    _snapshot_set(experiment, ["aaaa"], 1)
    (experiment / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(pickle.dumps({"counter": 2}))
    assert repair(experiment) == ["experiment_state-2026-01-01_00-00-00.json", "searcher-state-2026-01-01_00-00-00.pkl"]
    state = json.loads((experiment / "experiment_state-2026-01-01_00-00-00.json").read_text())
    assert len(state["trial_data"]) == 2
    assert pickle.loads((experiment / "searcher-state-2026-01-01_00-00-00.pkl").read_bytes()) == {"completed": 2}


def test_a_broken_set_never_replaces_a_whole_one(tmp_path):
    from prunetune.search.run.snapshots import keep
    from prunetune.search.store.progress import kept_dir

    staging, experiment = tmp_path / "staging", tmp_path / "experiment"
    _snapshot_set(staging, ["aaaa"], 1)
    experiment.mkdir()
    assert keep(staging, experiment)
    first = kept_dir(experiment)
    (staging / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"\x80\x04")  # cut pickle
    assert not keep(staging, experiment)
    assert kept_dir(experiment) == first and (first / "searcher-state-2026-01-01_00-00-00.pkl").read_bytes()
    _snapshot_set(staging, ["aaaa", "bbbb"], 2, session="2026-01-02_00-00-00")  # a resumed session
    assert keep(staging, experiment)
    kept = kept_dir(experiment)
    assert kept != first and not first.exists()  # one generation kept, the newest
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        f"{stem}-2026-01-02_00-00-00.{ext}"
        for stem, ext in (("experiment_state", "json"), ("search_gen_state", "json"), ("searcher-state", "pkl"))
    )


def test_trial_folders_the_snapshot_does_not_know_are_set_aside(tmp_path):
    from prunetune.search.run.snapshots import ABANDONED_DIR, set_aside_orphans

    trial = json.dumps({"trial_id": "aaaa", "status": "TERMINATED"})
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [[trial, "{}"]]}))
    for name in ("trial_aaaa", "trial_bbbb"):  # bbbb started after the last snapshot
        (tmp_path / name).mkdir()
    assert set_aside_orphans(tmp_path) == ["trial_bbbb"]
    assert [p.name for p in tmp_path.glob("trial_*")] == ["trial_aaaa"]
    assert (tmp_path / ABANDONED_DIR / "trial_bbbb").is_dir()


@pytest.mark.integration
def test_a_diverging_fine_tune_errors_its_trials_and_search_resumes_or_names_differences(diverged_search):
    out = diverged_search.output  # 2 trials at lr 1e12 (tests/search/conftest.py)
    # The search goes on past errored trials and runs them all; with none finished it failed (exit 1).
    assert out.returncode == 1, out.stderr[-3000:]
    shown = out.stdout + out.stderr  # the frontier on stdout, one line per errored trial on stderr
    assert "2 errored" in shown and shown.count("fine-tune diverged: loss is") >= 2

    experiment = diverged_search.directory
    tmp_path = experiment.parent.parent
    path = tmp_path / "config.yaml"
    status = _cli("status", str(experiment), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "errored   2" in status.stdout and "DivergedError: fine-tune diverged" in status.stdout
    assert "done      0 of 2" in status.stdout and "left      0" in status.stdout  # errored trials are not left

    changed = _cli("search", str(path), "--set", "trials=3", cwd=tmp_path)
    assert changed.returncode == 2 and "trials: 2 -> 3" in changed.stderr and "resume it unchanged" in changed.stderr
    again = _cli("search", str(path), cwd=tmp_path)
    assert again.returncode == 1, again.stderr[-3000:]  # resumed: the same trials rerun, and diverge again
    assert "exists with this config: resuming it" in again.stdout
    assert len(list(experiment.glob("trial_*"))) == 2  # the same trials, no new ones


@pytest.mark.integration
def test_a_uri_storage_path_gets_the_trials_and_local_dir_the_rest(quiet_uri_search):
    out = quiet_uri_search.output  # 2 trials, storage_path file://<tmp>/bucket, local_dir <tmp>/local
    assert out.returncode == 0, out.stderr[-3000:]
    local = quiet_uri_search.directory.parent
    tmp_path = local.parent
    bucket = tmp_path / "bucket"
    assert len(list(bucket.glob("tiny/trial_*/checkpoint_*/model.pt"))) == 2  # through pyarrow's URI filesystem
    assert list(bucket.glob("tiny/experiment_state-*.json"))
    assert (local / "tiny" / "prunetune.json").is_file() and (local / "tiny" / "frontier.csv").is_file()
    status = _cli("status", str(local / "tiny"), cwd=tmp_path)
    assert status.returncode == 2 and f"are in file://{bucket}" in status.stderr
