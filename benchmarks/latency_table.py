"""How well a per-layer latency table predicts whole-model latency, and what the cache saves.

For each architecture and runtime: the per-layer table is measured (each conv+BN+ReLU and
linear layer alone, at a grid of its neighbours' channel counts), its constant fitted on the
dense model and ``--fit`` random profiles, then random profiles (ratios uniform in [0.3, 1])
are pruned with the trials' pruner and measured whole with the ``latency`` cost (the same
runtime, CI-of-median protocol). Printed side by side per row: Spearman's rho between predicted
and measured latency, the median relative error of the prediction, and MACs' rho for
comparison; then, for one architecture, the measurements a second pass over the same profiles
takes with the cache (0 is the goal).

    .venv/bin/python -m benchmarks.latency_table [--profiles 50] [--onnx-profiles 10] [--grid 4] [--rounds 3]

Goals: Spearman >= 0.9 and median relative error <= 10% (CPU eager and ONNX Runtime).
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
from dataclasses import replace

import torch
from scipy import stats

from benchmarks.latency_budget import compare, print_rows
from prunetune.budgets import get_cost
from prunetune.budgets.latency_table import LatencyTable, steps_past
from prunetune.trainables import Profile, PruneSettings, PruningStructure, apply_profile, build_model, target_channels
from prunetune.trainables.latency_table import build_latency_table, grid_counts, group_timings, layer_shapes

ARCHITECTURES = [("resnet20", 32), ("mobilenet_v2", 96), ("resnet18", 64)]
LOW = 0.3
PROTOCOL = {"warmup": 3, "repeats": 10, "max_repeats": 60, "width": 0.05, "threads": 1}


def profiles(groups: dict[str, int], count: int, seed: int) -> list[Profile]:
    rng = random.Random(seed)
    return [Profile({g: rng.uniform(LOW, 1.0) for g in groups}) for _ in range(count)]


def measure_profiles(model, sample, chosen, latency, rounds: int, seed: int):
    """Kept channels, MACs and per-round measured latency of each profile (the dense model
    first). Each round visits the models in a fresh random order, so drift in this shared
    machine's load spreads over all profiles instead of biasing some."""
    macs = get_cost("macs")
    structure = PruningStructure.trace(copy.deepcopy(model), sample)  # traced once, pruned copies after
    settings = PruneSettings("l1")
    models, kept_all = [model], [{}]
    for profile in chosen:
        models.append(structure.pruned_copy(profile, settings).eval())
        kept_all.append(target_channels(structure.channels, profile, settings))
    counted = [macs(m, sample) for m in models]
    per_round = [[0.0] * len(models) for _ in range(rounds)]
    rng = random.Random(seed)
    for timings in per_round:
        order = list(range(len(models)))
        rng.shuffle(order)
        for i in order:
            timings[i] = latency(models[i], sample)
    return kept_all, per_round, counted


def table_in_rounds(model, sample, latency, counts, rounds: int) -> LatencyTable:
    """The table measured ``rounds`` times, each entry the median of its rounds."""
    tables = [build_latency_table(model, sample, latency, counts) for _ in range(rounds)]
    layers = tuple(
        replace(layer, ms=tuple(statistics.median(t.layers[i].ms[j] for t in tables) for j in range(len(layer.ms))))
        for i, layer in enumerate(tables[0].layers)
    )
    return replace(tables[0], layers=layers)


def bench(name: str, size: int, runtime: str, count: int, fit: int, grid: int, rounds: int, seed: int) -> dict:
    model = build_model(name, num_classes=10, input_size=size).eval()
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    latency = get_cost("latency", runtime=runtime, **PROTOCOL)
    groups, _ = layer_shapes(model, sample)
    start = time.perf_counter()
    counts = {g: grid_counts(c, LOW, 1.0, grid) for g, c in groups.items()}
    table = table_in_rounds(model, sample, latency, counts, rounds)
    table_s = time.perf_counter() - start
    kept, per_round, macs = measure_profiles(model, sample, profiles(groups, count + fit, seed), latency, rounds, seed)
    ms = [statistics.median(column) for column in zip(*per_round)]
    table = table.fitted(kept[: fit + 1], ms[: fit + 1])  # dense + the fit profiles
    held = range(fit + 1, len(ms))
    predicted = [table.predict(kept[i]) for i in held]
    measured = [ms[i] for i in held]
    return {
        "rho": stats.spearmanr(predicted, measured).statistic,
        "error": statistics.median(abs(p - m) / m for p, m in zip(predicted, measured)),
        "macs_rho": stats.spearmanr([macs[i] for i in held], measured).statistic,
        # The noise ceiling: how well one round of measurements ranks the profiles like another.
        "repeat_rho": stats.spearmanr(per_round[0], per_round[-1]).statistic if rounds > 1 else float("nan"),
        "profiles": len(measured),
        "dense_ms": ms[0],
        "table_s": table_s,
        "table": table,
    }


def fitted_table(model, sample, latency, grid: int = 4, fit: int = 5, check: int = 10, seed: int = 0):
    """A table for ``model`` with its constant fitted, and its quality on ``check`` other profiles."""
    groups, _ = layer_shapes(model, sample)
    table = build_latency_table(model, sample, latency, {g: grid_counts(c, LOW, 1.0, grid) for g, c in groups.items()})
    kept, per_round, _ = measure_profiles(model, sample, profiles(groups, fit + check, seed + 1), latency, 1, seed)
    table = table.fitted(kept[: fit + 1], per_round[0][: fit + 1])
    predicted, actual = [table.predict(k) for k in kept[fit + 1 :]], per_round[0][fit + 1 :]
    rho = stats.spearmanr(predicted, actual).statistic
    error = statistics.median(abs(p - a) / a for p, a in zip(predicted, actual))
    return table, f"Spearman {rho:.2f}, median error {error:.0%} on {check} random profiles"


def rounding_report(name: str, size: int, round_to: int = 8, seed: int = 0) -> tuple[int, int, list[str]]:
    """Per group of ``name``: the layers it sizes timed at every count from its floor to dense,
    and the counts just past a step of ``round_to`` (:func:`steps_past`: above the straight line
    between the multiples around them by over 3% of the time at the multiple below)."""
    model = build_model(name, num_classes=10, input_size=size).eval()
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    latency = get_cost("latency", **PROTOCOL)
    groups, _ = layer_shapes(model, sample)
    stepped, examples = 0, []
    for group, channels in groups.items():
        counts = sorted(set(grid_counts(channels, LOW, 1.0, channels)))
        steps = steps_past(group, group_timings(model, sample, latency, group, counts), round_to)
        stepped += bool(steps)
        examples += [str(s) for s in steps[:1]]
    return stepped, len(groups), examples


def cache_saving(name: str, size: int, count: int, seed: int) -> tuple[int, int]:
    """Measurements of a first and a second pass over the same profiles, sharing one cache."""
    model = build_model(name, num_classes=10, input_size=size).eval()
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    groups, _ = layer_shapes(model, sample)
    chosen = profiles(groups, count, seed)
    with tempfile.TemporaryDirectory() as folder:
        latency = get_cost("latency", cache=folder, **PROTOCOL)
        passes = []
        for _ in range(2):
            fresh = 0
            for profile in chosen:
                pruned = copy.deepcopy(model)
                apply_profile(pruned, profile, sample, PruneSettings("l1"))
                fresh += not latency.measure_interval(pruned.eval(), sample).cached
            passes.append(fresh)
    return passes[0], passes[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=50, help="held-out random profiles per architecture (eager)")
    parser.add_argument("--onnx-profiles", type=int, default=10, help="held-out profiles (ONNX Runtime)")
    parser.add_argument("--onnx-archs", default="resnet20,mobilenet_v2", help="architectures run in ONNX Runtime")
    parser.add_argument("--fit", type=int, default=5, help="profiles the constant is fitted on (besides dense)")
    parser.add_argument("--grid", type=int, default=4, help="grid points per group (eager)")
    parser.add_argument(
        "--onnx-grid", type=int, default=2, help="grid points per group (ONNX Runtime: each is an export)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="shuffled measurement rounds (eager)")
    parser.add_argument("--rounding", action=argparse.BooleanOptionalAction, default=True, help="round_to steps")
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True, help="the budget comparison")
    parser.add_argument("--clock", choices=["wall", "thread"], default="thread", help="the latency cost's clock")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    PROTOCOL["clock"] = args.clock  # thread: this shared machine's other work is not counted (docs/latency.md)
    header = (
        f"{'architecture':<22} {'runtime':<12} {'profiles':>8} {'spearman':>8} {'median err':>10} "
        f"{'MACs rho':>8} {'repeat rho':>10} {'dense ms':>8} {'table s':>7}"
    )
    print(header)
    print("-" * len(header))
    tables = {}
    onnx = set(args.onnx_archs.split(","))
    runs = (("eager", args.profiles, args.rounds, args.grid), ("onnxruntime", args.onnx_profiles, 1, args.onnx_grid))
    for runtime, count, rounds, grid in runs:
        for name, size in ARCHITECTURES:
            if count <= 0 or (runtime == "onnxruntime" and name not in onnx):
                continue
            row = bench(name, size, runtime, count, args.fit, grid, rounds, args.seed)
            tables[(name, runtime)] = row["table"]
            print(
                f"{f'{name} ({size} px)':<22} {runtime:<12} {row['profiles']:>8} {row['rho']:>8.3f} "
                f"{row['error']:>10.1%} {row['macs_rho']:>8.3f} {row['repeat_rho']:>10.3f} {row['dense_ms']:>8.2f} "
                f"{row['table_s']:>7.0f}",
                flush=True,
            )
    print(
        "goal: spearman >= 0.9 and median relative error <= 10% (held-out profiles; constant fitted on dense + --fit);"
    )
    print(
        "repeat rho: the first and last measurement rounds of the same profiles against each other (the noise ceiling)"
    )
    first, second = cache_saving("resnet20", 32, 20, args.seed)
    print(f"cache: resnet20, 20 profiles: {first} measurements in the first pass, {second} in the second (goal 0)")
    if args.rounding:
        stepped, total, examples = rounding_report("resnet20", 32)
        print(f"round_to 8 on resnet20 (32 px, eager): {stepped} of {total} groups have counts just past a step (>3%)")
        for line in examples[:6]:
            print("  " + line)
    if args.search:
        print_rows(compare(fitted_table, PROTOCOL))


if __name__ == "__main__":
    main()
