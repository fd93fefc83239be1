"""Analytic cost model vs counting the pruned model: mismatches (goal: 0) and speed.

For each architecture the cost model is extracted once; then random profiles are pruned with
the trials' pruner (``apply_profile``, ``round_to`` 1 and 8 alternating) and counted with the
``macs``/``params`` cost functions, side by side with ``AnalyticCostModel.evaluate`` on the
same kept channels. Prints one row per architecture: profiles checked, mismatches, the time
per profile of each way and their ratio (counting / analytic; also prune+count / analytic,
what a searcher would otherwise pay to screen one profile).

    .venv/bin/python -m benchmarks.cost_model [--profiles 1000] [--budget-s 180]

Pruning dominates the time, so ``--budget-s`` caps the wall time (split evenly between the
architectures); fewer than ``--profiles`` are checked when it runs out, and the table says so.
"""

from __future__ import annotations

import argparse
import copy
import random
import time

import torch

from prunetune.budgets import get_cost
from prunetune.trainables import Profile, PruneSettings, apply_profile, build_model, extract_cost_model

ARCHITECTURES = [  # (model, input size, label)
    ("resnet20", 32, "resnet20 (CIFAR, 32 px)"),
    ("vgg16", 32, "vgg16 (CIFAR, 32 px)"),
    ("resnet18", 64, "resnet18 (torchvision, 64 px)"),
    ("mobilenet_v2", 64, "mobilenet_v2 (torchvision, 64 px)"),
]


def bench(name: str, size: int, profiles: int, budget_s: float, seed: int = 0) -> dict[str, float]:
    model = build_model(name, num_classes=10, input_size=size)
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    started = time.perf_counter()
    cost_model = extract_cost_model(model, sample)
    extract_s = time.perf_counter() - started
    macs, params = get_cost("macs"), get_cost("params")
    rng = random.Random(seed)
    checked = mismatches = 0
    prune_s = count_s = analytic_s = 0.0
    deadline = time.perf_counter() + budget_s
    while checked < profiles and time.perf_counter() < deadline:
        profile = Profile({g: rng.uniform(max(0.05, 1 / c), 1.0) for g, c in cost_model.channels.items()})
        settings = PruneSettings(criterion="random", round_to=8 if checked % 2 else 1)
        t0 = time.perf_counter()
        pruned = copy.deepcopy(model)
        kept = apply_profile(pruned, profile, sample, settings)
        t1 = time.perf_counter()
        counted = {"macs": macs(pruned, sample), "params": params(pruned, sample)}
        t2 = time.perf_counter()
        analytic = cost_model.evaluate(kept)
        t3 = time.perf_counter()
        prune_s, count_s, analytic_s = prune_s + t1 - t0, count_s + t2 - t1, analytic_s + t3 - t2
        mismatches += analytic != counted
        checked += 1
    return {
        "checked": checked,
        "mismatches": mismatches,
        "extract_s": extract_s,
        "count_ms": 1e3 * count_s / checked,
        "prune_ms": 1e3 * prune_s / checked,
        "analytic_us": 1e6 * analytic_s / checked,
        "ratio": count_s / analytic_s,
        "ratio_with_prune": (count_s + prune_s) / analytic_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1000, help="random profiles per architecture")
    parser.add_argument("--budget-s", type=float, default=180.0, help="wall-time cap for all architectures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = (
        f"{'architecture':<34} {'profiles':>8} {'mismatch':>8} {'extract s':>9} {'count ms':>9} "
        f"{'prune ms':>9} {'analytic us':>11} {'count/analytic':>14} {'(prune+count)/analytic':>22}"
    )
    print(header)
    print("-" * len(header))
    for name, size, label in ARCHITECTURES:
        row = bench(name, size, args.profiles, args.budget_s / len(ARCHITECTURES))
        print(
            f"{label:<34} {row['checked']:>8} {row['mismatches']:>8} {row['extract_s']:>9.2f} "
            f"{row['count_ms']:>9.2f} {row['prune_ms']:>9.1f} {row['analytic_us']:>11.1f} "
            f"{row['ratio']:>13.0f}x {row['ratio_with_prune']:>21.0f}x",
            flush=True,
        )
    print(
        f"goal: 0 mismatches; profiles per architecture capped at {args.profiles} "
        f"or {args.budget_s / len(ARCHITECTURES):.0f} s of wall time"
    )


if __name__ == "__main__":
    main()
