"""How well MACs stand in for latency: rank correlation over random pruned profiles.

For each architecture, random profiles (plus the dense model) are pruned with the trials' pruner
and measured two ways: MACs (exact, counted) and CPU latency with the ``latency`` cost function
(median of timed forwards at a fixed batch size and thread count). Latency is noisy and this
machine is shared, so every profile is timed in several rounds, each round visiting the
profiles in a fresh random order (drift in load then spreads over all profiles instead of
biasing some); a profile's latency is the median of its round medians.

Prints per architecture: Spearman's rho and Kendall's tau between MACs and latency, the share
of profile pairs that MACs order the wrong way round (A has fewer MACs yet runs slower; pairs
whose latencies are within the measured noise are not counted), and the latency left at about
half the MACs. A rho near 1 means a MAC budget is a fair proxy on this device; lower values mean
budget latency directly (``cost: latency``).

    .venv/bin/python -m benchmarks.latency_vs_macs [--profiles 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import statistics

import torch
from scipy import stats

from prunetune.budgets import get_cost
from prunetune.trainables import Profile, PruneSettings, apply_profile, build_model, find_groups

ARCHITECTURES = [  # (model, input size, batch size, label)
    ("resnet20", 32, 16, "resnet20 (CIFAR, 32 px, batch 16)"),
    ("mobilenet_v2", 96, 4, "mobilenet_v2 (torchvision, 96 px, batch 4)"),
]


def pruned_models(name: str, size: int, count: int, seed: int) -> list[torch.nn.Module]:
    """The dense model and ``count`` random profiles of it (ratios uniform in [0.1, 1])."""
    model = build_model(name, num_classes=10, input_size=size).eval()
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    groups = find_groups(model, sample)
    rng = random.Random(seed)
    models = [model]
    for _ in range(count):
        profile = Profile({g.name: rng.uniform(0.1, 1.0) for g in groups})
        pruned = copy.deepcopy(model)
        apply_profile(pruned, profile, sample, PruneSettings(criterion="l1"))
        models.append(pruned.eval())
    return models


def timed(models: list[torch.nn.Module], sample: torch.Tensor, batch: int, rounds: int, seed: int):
    """Per model: (median latency ms, spread ms) over ``rounds`` shuffled rounds."""
    latency = get_cost("latency", batch_size=batch, threads=1, warmup=3, repeats=15)
    per_round: list[list[float]] = [[] for _ in models]
    spread: list[list[float]] = [[] for _ in models]
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(range(len(models)))
        rng.shuffle(order)
        for index in order:
            median, iqr = latency.measure(models[index], sample)
            per_round[index].append(median)
            spread[index].append(iqr)
    return [statistics.median(v) for v in per_round], [statistics.median(v) for v in spread]


def misordered(macs: list[float], ms: list[float], noise: list[float]) -> tuple[int, int]:
    """Pairs MACs order one way and latency (beyond both profiles' noise) the other way."""
    wrong = counted = 0
    for i, j in itertools.combinations(range(len(macs)), 2):
        if macs[i] == macs[j] or abs(ms[i] - ms[j]) <= noise[i] + noise[j]:
            continue
        counted += 1
        wrong += (macs[i] < macs[j]) != (ms[i] < ms[j])
    return wrong, counted


def bench(name: str, size: int, batch: int, count: int, rounds: int, seed: int) -> dict[str, float]:
    models = pruned_models(name, size, count, seed)
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    count_macs = get_cost("macs")
    macs = [count_macs(m, sample) for m in models]
    ms, noise = timed(models, sample, batch, rounds, seed)
    wrong, counted = misordered(macs, ms, noise)
    rel_macs = [m / macs[0] for m in macs]
    half = min(range(1, len(models)), key=lambda i: abs(rel_macs[i] - 0.5))
    return {
        "profiles": len(models) - 1,
        "rho": stats.spearmanr(macs, ms).statistic,
        "tau": stats.kendalltau(macs, ms).statistic,
        "misordered": wrong / counted if counted else float("nan"),
        "pairs": counted,
        "dense_ms": ms[0],
        "half_macs": rel_macs[half],
        "half_latency": ms[half] / ms[0],
        "noise": statistics.median(n / t for n, t in zip(noise, ms)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=40, help="random profiles per architecture")
    parser.add_argument("--rounds", type=int, default=3, help="shuffled timing rounds per profile")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    header = (
        f"{'architecture':<44} {'profiles':>8} {'spearman':>8} {'kendall':>8} {'misordered':>10} "
        f"{'dense ms':>8} {'at MACs':>7} {'latency':>7} {'IQR/median':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, size, batch, label in ARCHITECTURES:
        row = bench(name, size, batch, args.profiles, args.rounds, args.seed)
        print(
            f"{label:<44} {row['profiles']:>8} {row['rho']:>8.3f} {row['tau']:>8.3f} "
            f"{row['misordered']:>9.1%} {row['dense_ms']:>8.2f} {row['half_macs']:>7.0%} "
            f"{row['half_latency']:>7.0%} {row['noise']:>10.1%}",
            flush=True,
        )
    print("misordered: share of profile pairs (latency gap beyond both IQRs) where fewer MACs ran slower;")
    print("'at MACs' / 'latency': the profile nearest half the dense MACs and its latency relative to dense")


if __name__ == "__main__":
    main()
