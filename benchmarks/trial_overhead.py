"""Trial efficiency: the same prune + fine-tune in a plain loop vs inside Ray Tune trials.

Efficiency = plain-loop time / in-Tune time for the same work (1.0 = Tune adds nothing). Both
sides run one profile ``--trials`` times, one at a time, with the same setup object: the loop
calls what the trainable calls (load base, prune, fine-tune, evaluate, measure costs); the Tune
side runs ``prune_and_finetune`` through a Tuner with reused actors. Ray start-up is excluded
(it is paid once per search, not per trial). "steady" times trials after the first, once the
reused worker is up (a long search's case). Run: ``python -m benchmarks.trial_overhead``
(``--steps 20 850`` adds a ~30 s trial, the issue's goal length).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _setup(steps: int, directory: Path):
    from dataclasses import replace

    from prunetune.search.config import parse_config
    from prunetune.search.run.prepare import prepare

    config = parse_config(
        {
            "name": "overhead",
            "storage_path": str(directory),
            "model": {"name": "resnet20", "width": 0.5, "input_size": 16},
            "data": {"name": "digits"},
            "base": {"steps": 100},
            "finetune": {"steps": steps, "batch_size": 64},
            "budgets": [{"cost": "macs", "max": 0.6, "relative": True}],
            "tracking": {"enabled": False},
        }
    )
    prepared = prepare(config, show_progress=False)
    profile = {g.name: 0.6 for g in prepared.space.groups}
    return prepared, replace(prepared.setup), profile


def plain_loop(setup, profile: dict, trials: int) -> float:
    """What one trial does, without Tune: prune, fine-tune, evaluate, measure."""
    import torch

    from prunetune.budgets import measure_costs
    from prunetune.trainables import Profile, evaluate
    from prunetune.trainables.train import train_batches
    from prunetune.trainables.trial import calibration_batch, example_input, pruned_model

    started = time.perf_counter()
    for _ in range(trials):
        torch.manual_seed(setup.seed)
        data = setup.open_data(torch.device("cpu"))  # cached per process, as in a trial worker
        model = pruned_model(setup, Profile(profile), data.num_classes, calibration_batch(data))
        evaluate(model, data.eval_batches("val"))
        train_batches(model, data.train_batches(setup.finetune.batch_size, setup.seed), setup.finetune)
        evaluate(model, data.eval_batches("val"))
        measure_costs(model, example_input(setup), setup.cost_functions())
    return time.perf_counter() - started


def in_tune(setup, profile: dict, trials: int, storage: Path) -> tuple[float, float]:
    """Seconds for the whole ``Tuner.fit``, and per trial once the worker runs: from the first
    trial's last report to the last one's, over the trials after the first (the first pays the
    worker's start-up: importing torch and Tune, loading data, tracing the base)."""
    import ray
    from ray import tune

    from prunetune.trainables import prune_and_finetune

    class ResultTimes(tune.Callback):  # when each trial's report reaches the driver
        def __init__(self):
            self.times: list[float] = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.times.append(time.perf_counter())

    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    times = ResultTimes()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(prune_and_finetune, setup=setup), {"cpu": 1}),
        param_space={"profile": profile},
        tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=0, callbacks=[times]),
    )
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    ray.shutdown()
    assert not results.errors, results.errors
    ends = times.times
    steady = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else float("nan")
    return elapsed, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[20, 300], help="fine-tune steps per trial (short, long)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a Tune trial with 1 CPU gets one thread; match it
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'steps':>6} {'trial s (loop)':>15} {'trial s (Tune)':>15} {'efficiency':>11} "
            f"{'steady s (Tune)':>16} {'steady eff.':>12}"
        )
        for steps in args.steps:
            prepared, setup, profile = _setup(steps, Path(tmp))
            plain_loop(setup, profile, 1)  # warm caches (data, base weights) like a reused actor
            loop_s = plain_loop(setup, profile, args.trials)
            tune_s, steady_s = in_tune(setup, profile, args.trials, Path(tmp) / f"tune{steps}")
            loop = loop_s / args.trials
            print(
                f"{steps:>6} {loop:>15.2f} {tune_s / args.trials:>15.2f} {loop_s / tune_s:>11.3f} "
                f"{steady_s:>16.2f} {loop / steady_s:>12.3f}"
            )


if __name__ == "__main__":
    main()
