"""Trial efficiency: the same prune + fine-tune in a plain loop vs inside Ray Tune trials.

Efficiency = plain-loop time / in-Tune time for the same work (1.0 = Tune adds nothing). Both
sides run one profile ``--trials`` times, one at a time, with the same setup object: the loop
calls what the trainable calls (load base, prune, fine-tune, evaluate, measure costs); the Tune
side runs ``prune_and_finetune`` through a Tuner with reused actors. Ray start-up is excluded
(it is paid once per search, not per trial). Run: ``python -m benchmarks.trial_overhead``.
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

    from search.config import parse_config
    from search.runner import prepare

    config = parse_config({
        "name": "overhead", "storage_path": str(directory),
        "model": {"name": "resnet20", "width": 0.5, "input_size": 16}, "data": {"name": "digits"},
        "base": {"steps": 100}, "finetune": {"steps": steps, "batch_size": 64},
        "budgets": [{"cost": "macs", "max": 0.6, "relative": True}], "tracking": {"enabled": False},
    })
    prepared = prepare(config, show_progress=False)
    profile = {g.name: 0.6 for g in prepared.space.groups}
    return prepared, replace(prepared.setup), profile


def plain_loop(setup, profile: dict, trials: int) -> float:
    """What one trial does, without Tune: prune, fine-tune, evaluate, measure."""
    import torch

    from budgets import measure_costs
    from trainables import Profile, Recipe, evaluate, train_steps
    from trainables.trial import _data_on, example_input, pruned_model

    started = time.perf_counter()
    for _ in range(trials):
        torch.manual_seed(setup.seed)
        splits, tx, ty, vx, vy = _data_on(setup.data, setup.model.input_size, "cpu")
        model = pruned_model(setup, Profile(profile), splits.num_classes, (tx[:64], ty[:64]))
        evaluate(model, vx, vy)
        train_steps(model, tx, ty, setup.finetune, seed=setup.seed)
        evaluate(model, vx, vy)
        measure_costs(model, example_input(setup), setup.cost_functions())
    return time.perf_counter() - started


def in_tune(setup, profile: dict, trials: int, storage: Path) -> float:
    import ray
    from ray import tune

    from trainables import prune_and_finetune

    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(prune_and_finetune, setup=setup), {"cpu": 1}),
        param_space={"profile": profile},
        tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    ray.shutdown()
    assert not results.errors, results.errors
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 300], help="fine-tune steps per trial (short, long)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a Tune trial with 1 CPU gets one thread; match it
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'steps':>6} {'trial s (loop)':>15} {'trial s (Tune)':>15} {'efficiency':>11}")
        for steps in args.steps:
            prepared, setup, profile = _setup(steps, Path(tmp))
            plain_loop(setup, profile, 1)  # warm caches (data, base weights) like a reused actor
            loop_s = plain_loop(setup, profile, args.trials)
            tune_s = in_tune(setup, profile, args.trials, Path(tmp) / f"tune{steps}")
            print(f"{steps:>6} {loop_s / args.trials:>15.2f} {tune_s / args.trials:>15.2f} {loop_s / tune_s:>11.3f}")


if __name__ == "__main__":
    main()
