"""Prune step: the precomputed dense ranking and index selection vs tracing from scratch.

What a trial pays to get its pruned model, three ways, on the same profiles in one run:

- *scratch*: what every trial did before the structure cache: a fresh model with the base
  weights (build + ``load_state_dict`` from memory), traced into torch-pruning's
  ``DependencyGraph``, then pruned group by group (``ranking: sequential``).
- *cached*: the structure traced once per worker, ``PruningStructure.copy()`` (model and graph)
  and the same sequential prune (the trial path of issue 9).
- *precomputed*: the trial path now: ``PruningStructure.pruned_copy()`` under ``ranking:
  dense``: each group ranked once per worker on the dense weights, and the groups' layers mapped
  once into dense index space, so a trial copies the model without its tensors and selects the
  kept indices. The once-per-worker work (trace, mapping, ranking) is timed apart.

The criterion is ``l1``, whose dense ranking differs from the sequential one (later groups are
scored on layers earlier groups shrank), so the check is the one that holds by construction:
the precomputed model equals the sequential prune given the same dense ranking as explicit
scores; cached equals scratch. Each repeat draws one random profile (every group's ratio from
0.25..1.0) and runs the three paths in a rotating order; medians over repeats, the spread
(min-max of the ratio) as the noise. One thread, as a 1-CPU trial runs.
Run: ``python -m benchmarks.prune_step`` (about 3-5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

import torch

from prunetune.trainables import Profile, PruneSettings, PruningStructure, build_model

MODELS = (  # name, width, input size, label
    ("resnet20", 1.0, 32, "resnet20 (CIFAR, 32 px)"),
    ("vgg16", 1.0, 32, "vgg16 (CIFAR, 32 px)"),
    ("resnet50", 1.0, 224, "resnet50 (torchvision, 224 px)"),
    ("mobilenet_v2", 1.0, 224, "mobilenet_v2 (torchvision, 224 px)"),
)
GOAL = 0.2  # precomputed / scratch
DENSE = PruneSettings("l1")
SEQUENTIAL = DENSE.replace(ranking="sequential")


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def scratch(name, width, size, state, sample, profile) -> tuple[float, float, torch.nn.Module]:
    """Build the model, load the base weights, trace it, prune it sequentially: the old per-trial
    path. Returns (load + trace s, prune s, model)."""
    started = time.perf_counter()
    model = build_model(name, num_classes=10, input_size=size, width=width)
    model.load_state_dict(state)
    structure = PruningStructure.trace(model, sample)
    traced = time.perf_counter()
    structure.prune(profile, SEQUENTIAL)
    return traced - started, time.perf_counter() - traced, structure.model


def cached(base: PruningStructure, profile) -> tuple[float, float, torch.nn.Module]:
    """Copy the structure traced once (model and graph), prune the copy sequentially."""
    started = time.perf_counter()
    structure = base.copy()
    copied = time.perf_counter()
    structure.prune(profile, SEQUENTIAL)
    return copied - started, time.perf_counter() - copied, structure.model


def _identical(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def measure(name: str, width: float, size: int, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    dense = build_model(name, num_classes=10, input_size=size, width=width)
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    sample = torch.randn(1, 3, size, size)
    trace_s, base = _timed(lambda: PruningStructure.trace(dense, sample))
    members_s, _ = _timed(base._dense_plans)
    ranks_s, ranks = _timed(lambda: base.dense_scores(DENSE.criterion, DENSE.seed))
    draw = random.Random(seed)
    rows, identical = [], {"cached": True, "precomputed": True}
    for repeat in range(repeats):
        profile = Profile({group: draw.uniform(0.25, 1.0) for group in base.channels})
        paths = {  # profile bound per repeat (each lambda runs within its repeat)
            "scratch": lambda profile=profile: scratch(name, width, size, state, sample, profile),
            "cached": lambda profile=profile: cached(base, profile),
            "precomputed": lambda profile=profile: (0.0, *_timed(lambda: base.pruned_copy(profile, DENSE))),
        }
        order = list(paths)[repeat % 3 :] + list(paths)[: repeat % 3]
        row = {path: paths[path]() for path in order}
        identical["cached"] &= _identical(row["cached"][2], row["scratch"][2])
        reference = base.copy()
        reference.prune(profile, SEQUENTIAL, scores=ranks)
        identical["precomputed"] &= _identical(row["precomputed"][2], reference.model)
        rows.append({path: (first, second) for path, (first, second, _) in row.items()})
    med = statistics.median
    total = lambda row, path: sum(row[path])  # noqa: E731
    ratios = {path: [total(r, path) / total(r, "scratch") for r in rows] for path in ("cached", "precomputed")}
    return {
        "groups": len(base.channels),
        "once": (trace_s, members_s, ranks_s),
        "scratch": (
            med([total(r, "scratch") for r in rows]),
            med([r["scratch"][0] for r in rows]),
            med([r["scratch"][1] for r in rows]),
        ),
        "cached": (
            med([total(r, "cached") for r in rows]),
            med([r["cached"][0] for r in rows]),
            med([r["cached"][1] for r in rows]),
        ),
        "precomputed": med([total(r, "precomputed") for r in rows]),
        "ratio": {path: (med(values), min(values), max(values)) for path, values in ratios.items()},
        "identical": identical,
    }


def _row(label: str, r: dict) -> str:
    s, c, p = r["scratch"], r["cached"], r["precomputed"]
    (cm, _, _), (pm, plo, phi) = r["ratio"]["cached"], r["ratio"]["precomputed"]
    met = "met" if pm <= GOAL else "not met"
    once = " / ".join(f"{t:.3f}" for t in r["once"])
    same = "yes" if all(r["identical"].values()) else f"NO ({', '.join(k for k, v in r['identical'].items() if not v)})"
    return (
        f"| {label} | {r['groups']} | {s[0]:.3f} ({s[1]:.3f} / {s[2]:.3f}) | {c[0]:.3f} ({c[1]:.3f} / {c[2]:.3f}) "
        f"| {cm:.2f}x | {p:.3f} | **{pm:.2f}x** ({plo:.2f}-{phi:.2f}) | <= {GOAL}x: {met} | {once} | {same} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"{args.repeats} random profiles per model (ratios 0.25..1.0, l1), medians; one thread; "
        f"goal: precomputed / scratch <= {GOAL}x; load average at start {_load()}"
    )
    print(
        "| model | groups | scratch s (load+trace / prune) | cached s (copy / prune) | cached / scratch "
        "| precomputed s | precomputed / scratch (spread) | goal | once per worker s (trace / map / rank) | identical |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for name, width, size, label in MODELS:
        if name in args.models:
            print(_row(label, measure(name, width, size, args.repeats, args.seed)), flush=True)
    print(f"load average at end {_load()}")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
