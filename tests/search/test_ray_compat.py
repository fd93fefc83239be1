"""The Ray internals prunetune relies on (search/ray_compat.py) still work on the installed Ray.

Each adapter function is exercised on a real Tune run, so a Ray upgrade that moves one of them
fails here, with the adapter's name, rather than as a quietly broken resume or missing MLflow
points."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def reporting(config: dict) -> None:
    """Two reports, each with a checkpoint, as a taper trial makes them."""
    from ray import tune

    for level in (1, 2):
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "level.txt").write_text(str(level))
            tune.report({"level": level, "accuracy": 0.1 * level}, checkpoint=tune.Checkpoint.from_directory(directory))


def make_recorder():
    from ray.tune import Callback

    from prunetune.search import ray_compat

    class Recorder(Callback):
        """Calls the adapter from inside Tune's event loop, as prunetune's callbacks do."""

        def __init__(self):
            self.staging: list[Path] = []
            self.reports: list[list[dict]] = []
            self.ended = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.staging.append(ray_compat.driver_staging_dir(trial))
            self.reports.append([metrics for metrics, _ in ray_compat.reported_checkpoints(trial)])

        def on_experiment_end(self, trials, **info):
            self.ended += 1

    return Recorder()


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def test_every_adapter_works_on_a_real_tune_run(tmp_path, local_ray):
    from ray import tune

    from prunetune.search import ray_compat

    recorder = make_recorder()
    tuner = tune.Tuner(
        reporting, run_config=tune.RunConfig(name="compat", storage_path=str(tmp_path), callbacks=[recorder])
    )
    tuner.fit()

    # A running trial's reports with checkpoints, oldest first, and the driver's staging folder.
    assert [[m["level"] for m in reports] for reports in recorder.reports] == [[1, 2]]
    (staging,) = recorder.staging
    assert staging.is_dir() and list(staging.glob("experiment_state-*.json"))

    # The staging folder named by the snapshot is the one the driver wrote to.
    snapshot = sorted((tmp_path / "compat").glob("experiment_state-*.json"))[-1]
    assert ray_compat.snapshot_staging_dir(json.loads(snapshot.read_text())["trial_data"]) == staging

    # A restored Tuner runs with the callbacks given to it, not the unpickled ones.
    restored = tune.Tuner.restore(str(tmp_path / "compat"), trainable=reporting, resume_errored=True)
    fresh = make_recorder()
    ray_compat.replace_callbacks(restored, [fresh])
    restored.fit()
    assert fresh.ended == 1 and recorder.ended == 1


def test_a_moved_internal_is_a_loud_error_naming_it():
    from prunetune.search import ray_compat

    with pytest.raises(ray_compat.RayInternalsChanged, match="Trial.run_metadata.checkpoint_manager"):
        ray_compat.reported_checkpoints(object())
    with pytest.raises(ray_compat.RayInternalsChanged, match="Tuner._local_tuner"):
        ray_compat.replace_callbacks(object(), [])
    with pytest.raises(ray_compat.RayInternalsChanged, match="RLModule._forward_exploration"):
        ray_compat.forward_exploration(object(), {})


def test_the_rl_policy_samples_as_rllib_s_public_exploration_pass_does():
    """The RL searcher's sampling pass, without RLlib's per-call eval()/train() switch, gives
    what the public ``forward_exploration`` gives, and leaves the module in eval mode."""
    import numpy as np
    import torch
    from ray.rllib.core.columns import Columns

    from prunetune.search import ray_compat
    from prunetune.search.searchers._policy import build_engine
    from prunetune.search.searchers.rl import RLSettings

    _, module, _ = build_engine(RLSettings(), (8, 1), seed=0, learner_state=None)
    batch = {Columns.OBS: torch.from_numpy(np.linspace(0, 1, 8, dtype=np.float32)[None])}
    with torch.no_grad():
        ours = ray_compat.forward_exploration(module, batch)[Columns.ACTION_DIST_INPUTS]
    public = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    assert torch.equal(ours, public) and not module.training


def test_snapshots_start_every_second_and_stay_within_their_share_as_they_grow():
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as Manager

    from prunetune.search import ray_compat

    try:
        ray_compat.snapshots_within_share(1.0, 0.05)
        manager = Manager(storage=None, checkpoint_period="auto")
        assert manager._checkpoint_period == 1.0  # Tune's own "auto" starts at 10 s
        manager._update_auto_checkpoint_time(0.01)  # a small search's snapshot
        assert manager._checkpoint_period == 1.0
        manager._update_auto_checkpoint_time(0.5)  # thousands of trials: 19 x 0.5 s, so 5% of the time
        assert manager._checkpoint_period == pytest.approx(9.5)
        assert Manager(storage=None, checkpoint_period="3")._checkpoint_period == 3.0  # a user's number wins
        ray_compat.snapshots_within_share(None)  # Tune's own rule back
        manager = Manager(storage=None, checkpoint_period="auto")
        manager._update_auto_checkpoint_time(0.01)
        assert manager._checkpoint_period == 10.0
    finally:
        ray_compat.snapshots_within_share(None)
