"""Scheduler overhead: trivial trials through prunetune's search path vs a bare Ray Tune run.

Both sides run the same no-op trial function (it reports one trial-shaped result and returns)
``--trials`` times, with 1 CPU per trial, ``--concurrency`` trials at a time and reused actors.

- *bare*: ``tune.Tuner`` with the no-op trainable, basic variant generation, Tune's defaults.
- *prunetune*: the Tuner that ``prunetune.search.run.tuner.build_tuner`` assembles for a real search (the
  random searcher behind a ConcurrencyLimiter, the snapshot keeper callback, the CLI reporter,
  trial naming) with only the trial function swapped through its ``trainable`` argument, and
  the experiment snapshot period ``run_search`` sets (``prunetune.search.run.tuner.snapshot_period``). Run once
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
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

GOAL = 1.2  # a prunetune side's fit time vs bare Ray Tune
FLAT_GOAL = 1.2  # per-trial cost of the run's last 100 trials vs trials 100-200
WINDOW = 100
SIDES = {"bare": "bare Ray Tune", "off": "prunetune (tracking off)", "on": "prunetune (MLflow tracking on)"}


def noop_trial(config: dict) -> None:
    """A trial that does nothing but report what a real trial reports at its end."""
    from ray import tune

    tune.report(
        {
            "accuracy": 0.5,
            "loss": 1.0,
            "cost/macs": 1.0,
            "rel/macs": 0.5,
            "meets/macs": 1.0,
            "feasible": 1.0,
            "finetune_steps": 0,
            "done": True,
            "reported_at": time.time(),
        }
    )


def bare(trials: int, concurrency: int, storage: Path) -> Run:
    from ray import tune

    from prunetune.search import ray_compat

    os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)  # Tune's default snapshot period ("auto")
    ray_compat.snapshots_within_share(None)  # ... with Tune's own rule (10 s or more)
    tuner = tune.Tuner(
        tune.with_resources(noop_trial, {"cpu": 1}),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=concurrency, reuse_actors=True, metric="accuracy", mode="max"
        ),
        run_config=tune.RunConfig(name="bare", storage_path=str(storage), verbose=0),
    )
    return _fit(tuner)


def prunetune(
    trials: int, concurrency: int, storage: Path, base: str, tracking: bool, name: str, period: str | None = None
) -> Run:
    from ray import tune

    from prunetune.search.config import parse_config
    from prunetune.search.run.prepare import prepare
    from prunetune.search.run.tuner import build_tuner, snapshot_period
    from prunetune.search.store.manifest import write_manifest

    config = parse_config(
        {
            "name": name,
            "storage_path": str(storage),
            "trials": trials,
            "concurrency": concurrency,
            "model": {"name": "resnet20", "width": 0.25, "input_size": 8},
            "data": {"name": "digits"},
            "base": {"checkpoint": base},
            "budgets": [{"cost": "macs", "max": 0.6, "relative": True}],
            "searcher": {"name": "random"},
            "tracking": {"enabled": tracking},
        }
    )
    prepared = prepare(config, show_progress=False)
    os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    if period:
        os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = period
    snapshot_period()  # as run_search sets it (a --snapshot-period wins, as a user's setting does)
    write_manifest(prepared)
    tuner = build_tuner(prepared, trainable=tune.with_resources(noop_trial, {"cpu": config.resources.cpu}))
    return _fit(tuner)


@dataclass
class Run:
    """One side's ``Tuner.fit``: its wall time and when each trial reported, in order."""

    fit_s: float
    reported: list[float]

    def per_trial_ms(self, start: int, width: int = WINDOW) -> float:
        """Wall milliseconds per trial over trials ``start``..``start + width`` of the run."""
        times = self.reported[start : start + width + 1]
        return 1000 * (times[-1] - times[0]) / (len(times) - 1)


def _fit(tuner) -> Run:
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    assert not results.errors, results.errors
    return Run(elapsed, sorted(r.metrics["reported_at"] for r in results))


def _base_checkpoint(storage: Path) -> str:
    from prunetune.trainables import DataSpec, ModelSpec, Recipe, ensure_base_checkpoint

    model = ModelSpec("resnet20", 0.25, 8)
    return str(
        ensure_base_checkpoint(model, DataSpec("digits"), Recipe(steps=10), storage / "base", show_progress=False)
    )


def windows(trials: int) -> list[int]:
    """Where the per-100-trial windows of the table start: 100, then every tenth of the run, and
    the last full window (trials 9,900-10,000 of a 10,000-trial run)."""
    if trials < 2 * WINDOW + 1:
        return []
    step = max(WINDOW, trials // 10 // WINDOW * WINDOW)
    starts = sorted({WINDOW, *range(step, trials - WINDOW, step), trials - WINDOW - 1})
    return [s for s in starts if s + WINDOW < trials]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--sides", nargs="+", choices=SIDES, default=list(SIDES), help="which sides to run (default: all)"
    )
    parser.add_argument(
        "--snapshot-period",
        default=None,
        help="TUNE_GLOBAL_CHECKPOINT_S for the prunetune sides (default: what run_search sets)",
    )
    args = parser.parse_args(argv)
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        base = _base_checkpoint(storage)
        ray.init(
            address="local",
            num_cpus=args.concurrency,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
        run = {
            "bare": lambda i: bare(args.trials, args.concurrency, storage / f"bare{i}"),
            "off": lambda i: prunetune(
                args.trials, args.concurrency, storage, base, False, f"off{i}", args.snapshot_period
            ),
            "on": lambda i: prunetune(
                args.trials, args.concurrency, storage, base, True, f"on{i}", args.snapshot_period
            ),
        }
        runs: dict[str, list[Run]] = {side: [] for side in args.sides}
        for repeat in range(args.repeats):
            order = args.sides if repeat % 2 == 0 else list(reversed(args.sides))
            for side in order:
                runs[side].append(run[side](repeat))
                print(f"repeat {repeat}: {SIDES[side]}: {runs[side][-1].fit_s:.1f} s", flush=True)
        ray.shutdown()
    report(args, runs)


def report(args, runs: dict[str, list[Run]]) -> None:
    """The table of fit times against bare Ray Tune, then per-trial cost along the run."""
    medians = {side: statistics.median(r.fit_s for r in values) for side, values in runs.items()}
    print(
        f"\n{args.trials} no-op trials, concurrency {args.concurrency}, reused actors, {args.repeats} repeat(s), "
        f"prunetune snapshot period {args.snapshot_period or 'as run_search sets'!r}; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("| path | fit s (median) | ms per trial | vs bare | goal |")
    print("|---|---:|---:|---:|---|")
    for side, median in medians.items():
        ratio = f"**{median / medians['bare']:.2f}x**" if "bare" in medians else "-"
        met = (
            ""
            if side == "bare" or "bare" not in medians
            else f"<= {GOAL}x: {'met' if median / medians['bare'] <= GOAL else 'not met'}"
        )
        print(f"| {SIDES[side]} | {median:.1f} | {1000 * median / args.trials:.0f} | {ratio} | {met} |")
    starts = windows(args.trials)
    if not starts:
        return
    # Per-trial cost along the run (first repeat of each side): flat means the last window costs
    # what trials 100-200 did.
    print(
        f"\nms per trial over each window of {WINDOW} trials (first repeat); goal: the last window "
        f"within {FLAT_GOAL}x of trials {WINDOW}-{2 * WINDOW}"
    )
    print("| trials | " + " | ".join(SIDES[side] for side in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for start in starts:
        cells = " | ".join(f"{values[0].per_trial_ms(start):.0f}" for values in runs.values())
        print(f"| {start}-{start + WINDOW} | {cells} |")
    growth = {
        side: values[0].per_trial_ms(starts[-1]) / values[0].per_trial_ms(WINDOW) for side, values in runs.items()
    }
    cells = " | ".join(f"**{g:.2f}x** ({'met' if g <= FLAT_GOAL else 'not met'})" for g in growth.values())
    print(f"| last / {WINDOW}-{2 * WINDOW} | {cells} |")


if __name__ == "__main__":
    main()
