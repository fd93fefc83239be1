"""Episodes per hour: zero-fine-tune RL search on the searcher-quality problem, through Tune.

The problem is ``benchmarks.searcher_quality``'s (imported, not copied): resnet20 (width 0.5,
16 px) on ``shapes``, its 5 largest-MACs groups over levels 0.25/0.5/0.75/1.0, MACs <= 50%.
The RL searcher (``searcher: rl``, default options plus ``fidelity: [[0, 0]]``, so every
episode is a trial that prunes and evaluates with 0 fine-tune steps) runs ``--trials`` trials
through the real search path (``build_tuner``: ConcurrencyLimiter, reused actors, the
``prune_and_finetune`` trainable with its checkpoint per trial), ``--concurrency`` at a time,
MLflow tracking off. Episodes per hour = trials / ``Tuner.fit`` wall time (Ray start-up and the
first base-model training excluded).

For what bounds it, the same work is also timed in-process, one episode at a time: the
searcher's own time (``suggest`` + ``on_trial_complete``, PPO updates included) and a trial's
prune + BN recalibration + evaluate (``pruned_model`` + ``evaluate``, caches warm).
The gap is the CPU bound over the episodes per hour through Tune; goal: within 1.5x.
Run: ``python -m benchmarks.episodes_per_hour`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from benchmarks import searcher_quality  # noqa: E402 - after the Ray environment

OPTIONS = {"fidelity": [[0, 0]]}
GOAL = 1.5  # the CPU bound within this factor of the episodes per hour through Tune


def search_config(args, storage: Path):
    """The searcher-quality problem as a search config for the RL searcher at 0 fine-tune steps."""
    from prunetune.search.config import parse_config

    space, setup, free = searcher_quality.problem(args)
    fixed = {name: {"levels": [1.0]} for name in space.names if name not in free}
    blob = searcher_quality._config(args, overrides=fixed, checkpoint=setup.base_checkpoint).model_dump(mode="json")
    blob.update(name="episodes", storage_path=str(storage), trials=args.trials, concurrency=args.concurrency)
    blob["searcher"] = {"name": "rl", "seed": 0, "options": OPTIONS}
    blob["tracking"] = {"enabled": False}
    return parse_config(blob)


def through_tune(prepared) -> float:
    """Wall time of ``Tuner.fit`` for the whole search."""
    from prunetune.search.run.tuner import build_tuner, init_ray, snapshot_period
    from prunetune.search.store.manifest import write_manifest

    snapshot_period()  # what run_search sets
    init_ray(None, num_cpus=prepared.config.concurrency)
    write_manifest(prepared)
    tuner = build_tuner(prepared)
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    assert not results.errors, results.errors
    return elapsed


def in_process(prepared, episodes: int) -> tuple[float, float]:
    """Seconds per episode spent in the searcher, and in a trial's prune + evaluate."""
    import torch

    from prunetune.search.searchers import get_searcher
    from prunetune.trainables import Profile, evaluate
    from prunetune.trainables.train import recalibrate_bn
    from prunetune.trainables.trial import calibration_batch, pruned_model

    torch.set_num_threads(1)  # a 1-CPU trial's thread count
    setup, space = prepared.setup, prepared.space
    searcher = get_searcher("rl")(space, seed=0, max_trials=episodes, **OPTIONS)
    data = setup.open_data(torch.device("cpu"))
    calibration = data.sample(setup.evaluate.images(), setup.seed)[0]
    dense = space.cost_model.dense()["macs"]
    searcher_s = trial_s = 0.0
    for i in range(episodes):
        started = time.perf_counter()
        profile = searcher.suggest(f"e{i}")["profile"]
        suggested = time.perf_counter()
        model = pruned_model(setup, Profile(profile), data.num_classes, calibration_batch(data))
        recalibrate_bn(model, calibration, setup.evaluate, seed=setup.seed)  # as run_trial does before evaluating
        accuracy, _ = evaluate(model, data.eval_batches("val"))
        evaluated = time.perf_counter()
        macs = space.costs(profile)["macs"]
        searcher.on_trial_complete(
            f"e{i}",
            {
                "accuracy": accuracy,
                "cost/macs": macs,
                "rel/macs": macs / dense,
                "meets/macs": 1.0,
                "feasible": 1.0,
                "limit/macs": 0.5 * dense,
            },
        )
        searcher_s += (suggested - started) + (time.perf_counter() - evaluated)
        trial_s += evaluated - suggested
    return searcher_s / episodes, trial_s / episodes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--base-steps", type=int, default=300)
    parser.add_argument("--storage", default="results/benchmarks")
    args = parser.parse_args(argv)
    args.finetune_steps = 0
    import ray

    from prunetune.search.run.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(search_config(args, Path(tmp)), show_progress=False)
        searcher_s, trial_s = in_process(prepared, min(args.trials, 32))
        fit_s = through_tune(prepared)
        ray.shutdown()
    per_hour = args.trials / fit_s * 3600
    bound = args.concurrency * 3600 / (trial_s + searcher_s)  # the driver's searcher shares the cores
    print(
        f"problem: searcher-quality (resnet20 w0.5 16px, shapes, {args.groups} groups x {len(args.levels)} levels, "
        "MACs <= 50%); "
        f"rl searcher, fidelity [[0, 0]]; {args.trials} trials, concurrency {args.concurrency}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| measure | value |")
    print("|---|---:|")
    print(
        f"| episodes per hour through Tune | **{per_hour:,.0f}** "
        f"({args.trials} in {fit_s:.1f} s, {1000 * fit_s / args.trials:.0f} ms each) |"
    )
    print(f"| in-process: searcher ms per episode (suggest + result, PPO updates included) | {1000 * searcher_s:.1f} |")
    print(
        f"| in-process: trial ms per episode (prune + BN recalibration + evaluate, 1 thread) | {1000 * trial_s:.1f} |"
    )
    print(f"| CPU bound: {args.concurrency} cores / (trial + searcher), no scheduling cost | {bound:,.0f} per hour |")
    gap = bound / per_hour
    print(
        f"| gap: CPU bound / through Tune (goal <= {GOAL}x) | **{gap:.2f}x** ({'met' if gap <= GOAL else 'not met'}) |"
    )


if __name__ == "__main__":
    main()
