"""Prune step: applying a profile with the cached structure vs tracing the model from scratch.

What a trial pays to get its pruned model. *Scratch* is what every trial did before the
structure cache: a fresh model with the base weights (build + ``load_state_dict`` from memory),
traced into torch-pruning's ``DependencyGraph``, then pruned. *Cached* is what a trial does now:
``PruningStructure.copy()`` of the structure traced once per worker, then pruned. The pruning
itself (importance per group, removing channels) is the same code in both; the table splits
each time into the structure part (load + trace vs copy) and the pruning part, so it shows
what the cache removes and what is left. Both results are checked to be identical.

Each repeat draws one random profile (every group's ratio from 0.25..1.0) and runs both paths
on it, alternating which goes first; the table shows medians over repeats and the spread
(max/min of the ratio) as the noise. One thread, as a 1-CPU trial runs.
Run: ``python -m benchmarks.prune_step`` (about 2-4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass

import torch

from prunetune.trainables import PruneSettings, Profile, PruningStructure, build_model

MODELS = (  # name, width, input size, label
    ("resnet20", 1.0, 32, "resnet20 (CIFAR, 32 px)"),
    ("vgg16", 1.0, 32, "vgg16 (CIFAR, 32 px)"),
    ("resnet50", 1.0, 224, "resnet50 (torchvision, 224 px)"),
    ("mobilenet_v2", 1.0, 224, "mobilenet_v2 (torchvision, 224 px)"),
)
GOAL = 0.2


@dataclass
class Timing:
    structure_s: float  # scratch: build + load weights + trace; cached: copy
    prune_s: float

    @property
    def total_s(self) -> float:
        return self.structure_s + self.prune_s


def scratch(name, width, size, state, sample, profile, settings) -> tuple[Timing, torch.nn.Module]:
    """Build the model, load the base weights, trace it, prune it: the old per-trial path."""
    started = time.perf_counter()
    model = build_model(name, num_classes=10, input_size=size, width=width)
    model.load_state_dict(state)
    structure = PruningStructure.trace(model, sample)
    traced = time.perf_counter()
    structure.prune(profile, settings)
    return Timing(traced - started, time.perf_counter() - traced), structure.model


def cached(base: PruningStructure, profile, settings) -> tuple[Timing, torch.nn.Module]:
    """Copy the structure traced once, prune the copy: the per-trial path now."""
    started = time.perf_counter()
    structure = base.copy()
    copied = time.perf_counter()
    structure.prune(profile, settings)
    return Timing(copied - started, time.perf_counter() - copied), structure.model


def _identical(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def measure(name: str, width: float, size: int, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    dense = build_model(name, num_classes=10, input_size=size, width=width)
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    sample = torch.randn(1, 3, size, size)
    started = time.perf_counter()
    base = PruningStructure.trace(dense, sample)
    trace_once_s = time.perf_counter() - started
    draw = random.Random(seed)
    settings = PruneSettings("l1")
    runs, identical = [], True
    for repeat in range(repeats):
        profile = Profile({group: draw.uniform(0.25, 1.0) for group in base.channels})
        if repeat % 2:
            new, new_model = cached(base, profile, settings)
            old, old_model = scratch(name, width, size, state, sample, profile, settings)
        else:
            old, old_model = scratch(name, width, size, state, sample, profile, settings)
            new, new_model = cached(base, profile, settings)
        identical &= _identical(old_model, new_model)
        runs.append((old, new))
    ratios = [new.total_s / old.total_s for old, new in runs]
    med = lambda values: statistics.median(values)  # noqa: E731
    return {
        "groups": len(base.channels),
        "trace_once_s": trace_once_s,
        "scratch_structure": med([o.structure_s for o, _ in runs]),
        "copy": med([n.structure_s for _, n in runs]),
        "prune_scratch": med([o.prune_s for o, _ in runs]),
        "prune_cached": med([n.prune_s for _, n in runs]),
        "scratch": med([o.total_s for o, _ in runs]),
        "cached": med([n.total_s for _, n in runs]),
        "ratio": med(ratios),
        "spread": (min(ratios), max(ratios)),
        "structure_ratio": med([n.structure_s / o.structure_s for o, n in runs]),
        "identical": identical,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{args.repeats} random profiles per model (ratios 0.25..1.0, l1), medians; one thread; goal <= {GOAL}x")
    print("| model | groups | scratch s (load+trace / prune) | cached s (copy / prune) | cached / scratch "
          "(spread) | copy / (load+trace) | identical |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, width, size, label in MODELS:
        if name not in args.models:
            continue
        r = measure(name, width, size, args.repeats, args.seed)
        print(f"| {label} | {r['groups']} | {r['scratch']:.3f} ({r['scratch_structure']:.3f} / {r['prune_scratch']:.3f}) "
              f"| {r['cached']:.3f} ({r['copy']:.3f} / {r['prune_cached']:.3f}) "
              f"| **{r['ratio']:.2f}x** ({r['spread'][0]:.2f}-{r['spread'][1]:.2f}) | {r['structure_ratio']:.2f}x "
              f"| {'yes' if r['identical'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
