"""Scheduler overhead: trivial trials through prunetune's search path vs a bare Ray Tune run.

Both sides run the same no-op trial function (it reports one trial-shaped result and returns)
``--trials`` times, with 1 CPU per trial, ``--concurrency`` trials at a time and reused actors.

- *bare*: ``tune.Tuner`` with the no-op trainable, basic variant generation, Tune's defaults.
- *prunetune*: the Tuner that ``prunetune.search.run.tuner.build_tuner`` assembles for a real search (the
  random searcher behind a ConcurrencyLimiter, the snapshot keeper callback, the CLI reporter,
  trial naming) with only the trial function swapped through its ``trainable`` argument, and
  the experiment snapshot period ``run_search`` sets (``prunetune.search.run.tuner.SNAPSHOT_PERIOD_S``). Run once
  with MLflow tracking off and once with it on (the default: one MLflow run per trial, SQLite).

All sides share one Ray session (start-up excluded) and alternate order over ``--repeats``;
the table gives the median ``Tuner.fit`` time and its ratio to bare. Goal: within 1.2x.
Run: ``python -m benchmarks.scheduler_overhead --trials 1000`` (long on 2 cores: see --trials).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

GOAL = 1.2


def noop_trial(config: dict) -> None:
    """A trial that does nothing but report what a real trial reports at its end."""
    from ray import tune

    tune.report({"accuracy": 0.5, "loss": 1.0, "cost/macs": 1.0, "rel/macs": 0.5, "meets/macs": 1.0,
                 "feasible": 1.0, "finetune_steps": 0, "done": True})


def bare(trials: int, concurrency: int, storage: Path) -> float:
    from ray import tune

    os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)  # Tune's default snapshot period ("auto")
    tuner = tune.Tuner(
        tune.with_resources(noop_trial, {"cpu": 1}),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency, reuse_actors=True,
                                    metric="accuracy", mode="max"),
        run_config=tune.RunConfig(name="bare", storage_path=str(storage), verbose=0),
    )
    return _fit(tuner)


def prunetune(trials: int, concurrency: int, storage: Path, base: str, tracking: bool, name: str, period: str | None = None) -> float:
    from ray import tune

    from prunetune.search.config import parse_config
    from prunetune.search.store.manifest import write_manifest
    from prunetune.search.run.prepare import prepare
    from prunetune.search.run.tuner import SNAPSHOT_PERIOD_S, build_tuner

    config = parse_config({
        "name": name, "storage_path": str(storage), "trials": trials, "concurrency": concurrency,
        "model": {"name": "resnet20", "width": 0.25, "input_size": 8}, "data": {"name": "digits"},
        "base": {"checkpoint": base}, "budgets": [{"cost": "macs", "max": 0.6, "relative": True}],
        "searcher": {"name": "random"}, "tracking": {"enabled": tracking},
    })
    prepared = prepare(config, show_progress=False)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = period or SNAPSHOT_PERIOD_S  # as run_search sets it
    write_manifest(prepared)
    tuner = build_tuner(prepared, trainable=tune.with_resources(noop_trial, {"cpu": config.resources.cpu}))
    return _fit(tuner)


def _fit(tuner) -> float:
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    assert not results.errors, results.errors
    return elapsed


def _base_checkpoint(storage: Path) -> str:
    from prunetune.trainables import DataSpec, ModelSpec, Recipe, ensure_base_checkpoint

    model = ModelSpec("resnet20", 0.25, 8)
    return str(ensure_base_checkpoint(model, DataSpec("digits"), Recipe(steps=10), storage / "base", show_progress=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-tracking-side", action="store_true", help="skip the MLflow-tracking side")
    parser.add_argument("--snapshot-period", default=None,
                        help="TUNE_GLOBAL_CHECKPOINT_S for the prunetune sides (default: what run_search sets)")
    args = parser.parse_args(argv)
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        base = _base_checkpoint(storage)
        ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
        sides = {
            "bare Ray Tune": lambda i: bare(args.trials, args.concurrency, storage / f"bare{i}"),
            "prunetune (tracking off)": lambda i: prunetune(args.trials, args.concurrency, storage, base, False, f"off{i}", args.snapshot_period),
        }
        if not args.no_tracking_side:
            sides["prunetune (MLflow tracking on)"] = lambda i: prunetune(args.trials, args.concurrency, storage, base, True, f"on{i}", args.snapshot_period)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(sides[name](repeat))
                print(f"repeat {repeat}: {name}: {times[name][-1]:.1f} s", flush=True)
        ray.shutdown()
    bare_s = statistics.median(times["bare Ray Tune"])
    print(f"{args.trials} no-op trials, concurrency {args.concurrency}, reused actors, {args.repeats} repeat(s), "
          f"prunetune snapshot period {args.snapshot_period or 'as run_search sets'!r}; goal <= {GOAL}x")
    print("| path | fit s (median) | ms per trial | vs bare |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {1000 * median / args.trials:.0f} | **{median / bare_s:.2f}x** |")


if __name__ == "__main__":
    main()
