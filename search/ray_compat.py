"""The few places prunetune reaches past Ray's public API (Tune's and RLlib's), in one adapter.

Ray 2.60 has no public way to do these things, and each is needed:

- give a restored Tuner fresh callbacks (``Tuner.restore`` takes no ``run_config``; Tune
  unpickles the callbacks as they were when the search started): :func:`replace_callbacks`;
- find the staging folder a killed driver's snapshot came from (a restored run on the same
  Ray session reuses it): :func:`snapshot_staging_dir`;
- find the staging folder the running driver writes its snapshots to:
  :func:`driver_staging_dir`;
- read every report with a checkpoint that a running trial has made so far (a taper run's
  frontier points, before the trial ends): :func:`reported_checkpoints`;
- make a restored search create new trials in the folder it was restored from:
  :func:`new_trials_follow_a_moved_experiment`;
- snapshot the experiment often while that is cheap, and less often as each snapshot grows
  with the search: :func:`snapshots_within_share`;
- sample the RL searcher's policy without RLlib switching every submodule to ``eval()`` and
  back on each action: :func:`forward_exploration`.

Each function fails loudly, with :class:`RayInternalsChanged` naming what moved, instead of
misbehaving quietly, and ``tests/search/test_ray_compat.py`` exercises every one against the
installed Ray, so an upgrade that breaks one fails there first. Ray is imported lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RayInternalsChanged(RuntimeError):
    """An internal of Ray Tune that prunetune relies on is gone or changed shape."""

    def __init__(self, what: str, err: Exception | None = None):
        import ray

        detail = f": {type(err).__name__}: {err}" if err else ""
        super().__init__(
            f"Ray {ray.__version__} changed {what}{detail}; prunetune supports Ray 2.60 (see search/ray_compat.py)"
        )


def replace_callbacks(tuner, callbacks: list) -> None:
    """Make a restored ``tuner`` run with ``callbacks`` instead of the unpickled ones."""
    try:
        tuner._local_tuner.get_run_config().callbacks = callbacks
    except AttributeError as err:
        raise RayInternalsChanged("Tuner._local_tuner.get_run_config()", err) from err


def driver_staging_dir(trial) -> Path:
    """The driver-side staging folder Tune writes its experiment snapshots to."""
    try:
        return Path(trial.storage.experiment_driver_staging_path)
    except AttributeError as err:
        raise RayInternalsChanged("Trial.storage.experiment_driver_staging_path", err) from err


def snapshot_staging_dir(trial_data: list) -> Path | None:
    """The staging folder of the driver that wrote an experiment snapshot, on this machine in
    the Ray session this process is connected to; ``trial_data`` is the snapshot's
    ``trial_data`` list. None when Ray is not initialised or the snapshot holds no trial."""
    import cloudpickle
    import ray

    if not ray.is_initialized() or not trial_data:
        return None
    try:
        trial = json.loads(trial_data[0][0])
        storage = cloudpickle.loads(bytes.fromhex(trial["storage"]["value"]))
        return Path(storage.experiment_driver_staging_path)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as err:
        raise RayInternalsChanged("the experiment snapshot's trial storage", err) from err


def reported_checkpoints(trial) -> list[tuple[dict[str, Any], Any]]:
    """``(metrics, checkpoint)`` for every report with a checkpoint that ``trial`` has made so
    far (Tune keeps all of them unless ``CheckpointConfig.num_to_keep`` is set), oldest first."""
    try:
        results = trial.run_metadata.checkpoint_manager.best_checkpoint_results
        return [(r.metrics, r.checkpoint) for r in results]
    except AttributeError as err:
        raise RayInternalsChanged("Trial.run_metadata.checkpoint_manager.best_checkpoint_results", err) from err


def new_trials_follow_a_moved_experiment() -> None:
    """Make a restored search create its new trials in the folder it was restored from.

    Tune moves restored trials to a renamed or moved experiment folder, but the search
    algorithm's saved state carries the old folder, so every trial it suggests after the
    restore is written under the old name (into another experiment, if one now has that name).
    After Tune's ``resume`` this points the search algorithm at the restored run's storage.
    Patches ``TuneController.resume`` once for the process; ``prunetune resume`` calls it.
    """
    import copy

    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.resume
    if getattr(original, "_prunetune_follows_moves", False):
        return

    def resume(self, *args, **kwargs):
        original(self, *args, **kwargs)
        try:
            experiment = getattr(self._search_alg, "_experiment", None)
            if experiment is not None:  # the spec holds its own reference: trials are made from it
                experiment.storage = experiment.spec["storage"] = copy.copy(self._storage)
        except (AttributeError, KeyError, TypeError) as err:
            raise RayInternalsChanged("TuneController._search_alg._experiment.spec['storage']", err) from err

    resume._prunetune_follows_moves = True
    TuneController.resume = resume


def snapshots_within_share(floor_s: float | None, share: float = 0.05) -> None:
    """Make Tune's ``"auto"`` experiment snapshot period start at ``floor_s`` seconds and grow
    only as far as keeps snapshotting within ``share`` of the driver's time.

    Each snapshot serialises every trial so far, so its cost grows with the search. Tune's own
    ``"auto"`` waits ``max(10 s, 19 x the last snapshot's time)``: 5% of the time, but ten
    seconds of finished trials lost to a killed driver even in a small search. This keeps the
    proportional rule with a shorter floor: ``max(floor_s, (1 - share) / share x the last
    snapshot's time)``. A numeric ``TUNE_GLOBAL_CHECKPOINT_S`` is left as it is. Patches Tune's
    snapshot manager once for the process; later calls change the floor and share, and
    ``floor_s=None`` gives Tune's own rule back.
    """
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as Manager

    Manager._prunetune_period = None if floor_s is None else (floor_s, share)
    if getattr(Manager, "_prunetune_patched", False):
        return
    original_init = Manager.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        try:
            if self._auto_checkpoint_enabled and Manager._prunetune_period is not None:
                self._checkpoint_period = Manager._prunetune_period[0]
        except AttributeError as err:
            raise RayInternalsChanged("_ExperimentCheckpointManager._auto_checkpoint_enabled", err) from err

    original_update = Manager._update_auto_checkpoint_time

    def _update_auto_checkpoint_time(self, time_taken: float) -> None:
        if Manager._prunetune_period is None:
            original_update(self, time_taken)
        elif self._auto_checkpoint_enabled:
            floor, part = Manager._prunetune_period
            self._checkpoint_period = max(floor, time_taken * (1 - part) / part)

    Manager.__init__ = __init__
    Manager._update_auto_checkpoint_time = _update_auto_checkpoint_time
    Manager._prunetune_patched = True


def forward_exploration(module, batch: dict[str, Any]) -> dict[str, Any]:
    """RLlib's exploration forward pass of a torch RL ``module`` that its caller keeps in eval
    mode: the public ``TorchRLModule.forward_exploration`` minus its ``eval()``/``train()``
    round trip over every submodule per call, a third of an RL rollout's time."""
    try:
        forward = module._forward_exploration
    except AttributeError as err:
        raise RayInternalsChanged("RLModule._forward_exploration", err) from err
    return forward(batch)
