"""Searcher quality: random vs RL at equal trials, ranked against the exhaustive table.

A fixed small problem: resnet20 (width 0.5, 16 px) on ``shapes``, the ``--groups`` groups
with the largest MACs share searched over ``--levels`` (every other group kept at 1.0), under a
50% MACs budget. The exhaustive searcher proposes the whole feasible set once and every profile
is evaluated, giving the table of true accuracies. Then the random and RL searchers each get the
same trial budget (``--fraction`` of the feasible set), for 3 seeds: the best feasible accuracy
each found, its rank in the exhaustive table (1 = the best profile), and the share of its
proposals that break the budget.

Profiles are evaluated in-process (not through Tune, to keep this fast) with the trainable's own
code path: ``prunetune.trainables.trial.pruned_model`` (load the base, prune with torch-pruning), then
``--finetune-steps`` steps of ``train_batches`` and ``evaluate`` on the validation split, seeded
like a trial, so a profile's accuracy is the same whichever searcher proposes it (computed once
and cached). Costs come from the exact analytic cost model. Searchers are driven sequentially
(suggest, result, suggest...), as Tune does with ``concurrency: 1``.

Run: ``python -m benchmarks.searcher_quality`` (about 5-10 minutes on 2 cores, most of it the
exhaustive table; the base model is trained once and cached under ``results/benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

BUDGET = 0.5


def _config(args, overrides: dict | None = None, checkpoint: str | None = None):
    from prunetune.search.config import parse_config

    return parse_config(
        {
            "name": "searcher-quality",
            "model": {"name": "resnet20", "width": 0.5, "input_size": 16},
            "data": {"name": "shapes"},
            "base": {"steps": args.base_steps, "batch_size": 64, "checkpoint": checkpoint},
            "finetune": {"steps": args.finetune_steps, "lr": 0.01, "batch_size": 64},
            "space": {"levels": args.levels, "overrides": overrides or {}},
            "budgets": [{"cost": "macs", "max": BUDGET, "relative": True}],
            "tracking": {"enabled": False},
        }
    )


def problem(args):
    """The search space (largest-share groups free, the rest fixed at 1.0) and trial setup."""
    from prunetune.search.run.prepare import build_space
    from prunetune.search.setup import specs, trial_setup
    from prunetune.trainables import ensure_base_checkpoint

    model, data, recipe = specs(_config(args))
    checkpoint = ensure_base_checkpoint(model, data, recipe, Path(args.storage) / "base", show_progress=False)
    full = build_space(_config(args, checkpoint=str(checkpoint)), num_classes=10)
    dense = full.cost_model.dense()["macs"]
    smallest = min(args.levels)
    share = {g.name: dense - full.costs({g.name: smallest})["macs"] for g in full.groups}
    free = sorted(share, key=share.get, reverse=True)[: args.groups]
    fixed = {name: {"levels": [1.0]} for name in full.names if name not in free}
    config = _config(args, overrides=fixed, checkpoint=str(checkpoint))
    return build_space(config, num_classes=10), trial_setup(config), free


def evaluate_profile(setup, profile: dict[str, float]) -> float:
    """What a trial does for ``profile`` (prune, fine-tune, evaluate), without Tune."""
    import torch

    from prunetune.trainables import Profile, evaluate
    from prunetune.trainables.train import train_batches
    from prunetune.trainables.trial import calibration_batch, pruned_model

    torch.set_num_threads(1)
    torch.manual_seed(setup.seed)
    data = setup.open_data(torch.device("cpu"))
    model = pruned_model(setup, Profile(profile), data.num_classes, calibration_batch(data))
    if setup.finetune.steps:
        train_batches(model, data.train_batches(setup.finetune.batch_size, setup.seed), setup.finetune)
    accuracy, _ = evaluate(model, data.eval_batches("val"))
    return accuracy


def exhaustive_table(space, setup, workers: int) -> dict[tuple, float]:
    """Every feasible profile, as the exhaustive searcher proposes them, with its accuracy."""
    from ray.tune.search import Searcher

    from prunetune.search.searchers import get_searcher

    searcher = get_searcher("exhaustive")(space, seed=0)
    profiles = []
    while (config := searcher.suggest(f"e{len(profiles)}")) not in (None, Searcher.FINISHED):
        profiles.append(config["profile"])
    with ProcessPoolExecutor(workers) as pool:
        accuracies = list(pool.map(evaluate_profile, [setup] * len(profiles), profiles, chunksize=4))
    return {_key(space, p): a for p, a in zip(profiles, accuracies)}


def _key(space, profile: dict[str, float]) -> tuple:
    return tuple(round(profile[name], 4) for name in space.names)


@dataclass
class Run:
    searcher: str
    seed: int
    best: float
    rank: int
    violating: float
    wall_s: float


def run_searcher(name: str, seed: int, trials: int, space, setup, table: dict, cache: dict, options: dict) -> Run:
    """Drive searcher ``name`` for ``trials`` trials, one at a time, with trial-like results."""
    from prunetune.search.searchers import get_searcher

    started = time.perf_counter()
    searcher = get_searcher(name)(space, seed=seed, **options)
    dense = space.cost_model.dense()["macs"]
    best, violating = None, 0
    for i in range(trials):
        profile = searcher.suggest(f"{name}{seed}-{i}")["profile"]
        key = _key(space, profile)
        if key not in table and key not in cache:
            cache[key] = evaluate_profile(setup, profile)
        accuracy = table.get(key, cache.get(key))
        macs = space.costs(profile)["macs"]
        feasible = space.feasible(profile)
        violating += not feasible
        if feasible and (best is None or accuracy > best):
            best = accuracy
        searcher.on_trial_complete(
            f"{name}{seed}-{i}",
            {
                "accuracy": accuracy,
                "cost/macs": macs,
                "rel/macs": macs / dense,
                "limit/macs": BUDGET * dense,
                "meets/macs": float(feasible),
                "feasible": float(feasible),
            },
        )
    ranked = sorted(table.values(), reverse=True)
    rank = 1 + sum(a > best for a in ranked) if best is not None else len(ranked) + 1
    return Run(
        name, seed, best if best is not None else float("nan"), rank, violating / trials, time.perf_counter() - started
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--base-steps", type=int, default=300)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--storage", default="results/benchmarks")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    space, setup, free = problem(args)
    table = exhaustive_table(space, setup, args.workers)
    exhaustive_s = time.perf_counter() - started
    trials = max(1, round(args.fraction * len(table)))
    ranked = sorted(table.values(), reverse=True)
    print(
        f"problem: resnet20 w0.5 16px on shapes, groups {', '.join(free)} over levels {args.levels}, "
        f"MACs <= {BUDGET:.0%}, {args.finetune_steps} fine-tune steps per profile"
    )
    print(
        f"exhaustive: {len(table)} feasible profiles evaluated in {exhaustive_s:.0f} s; best accuracy {ranked[0]:.3f}, "
        f"median {statistics.median(ranked):.3f}"
    )
    print(
        f"evaluation: in-process, the trainable's prune + fine-tune + evaluate path (not through Tune); "
        f"{trials} trials per search ({args.fraction:.0%} of the feasible set)"
    )
    cache: dict = {}
    runs = [
        run_searcher(name, seed, trials, space, setup, table, cache, options)
        for name, options in (("random", {}), ("rl", {}))
        for seed in args.seeds
    ]
    print(format_table(runs, len(table)))
    print(verdict(runs))
    print(f"total wall time {time.perf_counter() - started:.0f} s")


def format_table(runs: list[Run], feasible: int) -> str:
    lines = [
        f"| searcher | seed | best feasible acc | rank of best (of {feasible}) | violating proposals | wall s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.searcher} | {r.seed} | {r.best:.3f} | {r.rank} | {r.violating:.0%} | {r.wall_s:.1f} |" for r in runs
    ]
    for name in dict.fromkeys(r.searcher for r in runs):
        mine = [r for r in runs if r.searcher == name]
        lines.append(
            f"| {name} | median | {statistics.median(r.best for r in mine):.3f} | "
            f"{statistics.median(r.rank for r in mine):g} | {statistics.median(r.violating for r in mine):.0%} | |"
        )
    return "\n".join(lines)


def verdict(runs: list[Run]) -> str:
    median = {name: statistics.median(r.best for r in runs if r.searcher == name) for name in ("random", "rl")}
    outcome = "beats" if median["rl"] > median["random"] else "does NOT beat"
    return (
        f"goal: RL beats random at equal trials on the median best accuracy -> RL {outcome} random "
        f"({median['rl']:.3f} vs {median['random']:.3f})"
    )


if __name__ == "__main__":
    main()
