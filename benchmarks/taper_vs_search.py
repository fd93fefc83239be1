"""Taper vs random search: one taper run's frontier against the best random profiles at the same
budgets, with the same total number of optimiser steps.

Problem: ResNet-20 at width 0.5 on 16 px digits, MACs levels 0.7 / 0.5 / 0.3 of dense. The taper
run (docs/taper.md) walks down once and fine-tunes each hardened point for ``FINETUNE`` steps;
its compute is its taper steps (one weight step and one gate step each) plus the fine-tunes.
Random search gets the same number of steps, spent as trials of ``FINETUNE`` steps split evenly
over the levels: each trial draws ratios uniformly in [0.2, 1] per group, scales them by a common
factor (bisection on the exact analytic cost) so the profile just meets its level, prunes with
L1, fine-tunes and evaluates. Both run in this process, without Ray Tune (the trainables'
functions are called directly), so the comparison measures the methods, not Tune's overhead.

Run: ``.venv/bin/python -m benchmarks.taper_vs_search`` (about 5-8 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from prunetune.trainables import DataSpec, ModelSpec, Profile, PruneSettings, Recipe, TrialSetup, ensure_base_checkpoint
from prunetune.trainables.profiles import kept_channels
from prunetune.trainables.structure import extract_cost_model
from prunetune.trainables.taper import TaperSettings
from prunetune.trainables.taper_trial import run_taper
from prunetune.trainables.train import evaluate, train_batches
from prunetune.trainables.trial import example_input, pruned_model

LEVELS = (0.7, 0.5, 0.3)
FINETUNE = 40


def base_setup(directory: Path) -> TrialSetup:
    model, data = ModelSpec("resnet20", 0.5, 16), DataSpec("digits")
    checkpoint = ensure_base_checkpoint(model, data, Recipe(300, 0.05, 64), directory, show_progress=False)
    return TrialSetup(model=model, data=data, base_checkpoint=str(checkpoint), finetune=Recipe(FINETUNE, 0.01, 64))


def taper_frontier(setup: TrialSetup) -> tuple[dict[float, dict], int]:
    """Accuracy and cost at each level, and the optimiser steps the run took."""
    points: dict[float, dict] = {}
    run_taper(
        setup, TaperSettings(levels=LEVELS), lambda metrics, _: points.__setitem__(metrics["level"], dict(metrics))
    )
    steps = max(p["taper_step"] for p in points.values()) + FINETUNE * len(points)
    return points, steps


def profile_at(rng: np.random.Generator, cost_model, level: float, prune: PruneSettings) -> Profile:
    """A random profile scaled (common factor, bisection) to the largest cost within ``level``."""
    channels = cost_model.channels
    dense = cost_model.dense()["macs"]
    raw = {name: float(rng.uniform(0.2, 1.0)) for name in channels}

    def macs(scale: float) -> float:
        kept = {
            n: kept_channels(c, min(1.0, max(raw[n] * scale, 1 / c)), min_channels=prune.min_channels)
            for n, c in channels.items()
        }
        return cost_model.evaluate(kept)["macs"]

    low, high = 0.0, 1.0 / min(raw.values())
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if macs(middle) <= level * dense else (low, middle)
    return Profile({n: min(1.0, max(raw[n] * low, 1 / c)) for n, c in channels.items()})


def random_search(setup: TrialSetup, steps: int, seed: int = 0) -> dict[float, list[float]]:
    """Accuracies of random profiles per level, ``steps // FINETUNE`` trials in all."""
    data = setup.open_data(torch.device("cpu"))
    cost_model = extract_cost_model(pruned_model(setup, Profile({}), data.num_classes), example_input(setup))
    rng = np.random.default_rng(seed)
    trials = max(len(LEVELS), steps // FINETUNE)
    accuracies: dict[float, list[float]] = {level: [] for level in LEVELS}
    for index in range(trials):
        level = LEVELS[index % len(LEVELS)]
        profile = profile_at(rng, cost_model, level, setup.prune)
        model = pruned_model(setup, profile, data.num_classes)
        torch.manual_seed(setup.seed)
        train_batches(model, data.train_batches(setup.finetune.batch_size, setup.seed), setup.finetune)
        accuracies[level].append(evaluate(model, data.eval_batches("val"))[0])
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", type=Path, default=Path(tempfile.gettempdir()) / "prunetune-bench-base")
    args = parser.parse_args()
    torch.set_num_threads(1)
    setup = base_setup(args.base_dir)
    data = setup.open_data(torch.device("cpu"))
    dense_acc = evaluate(pruned_model(setup, Profile({}), data.num_classes), data.eval_batches("val"))[0]
    started = time.time()
    points, steps = taper_frontier(setup)
    taper_s = time.time() - started
    started = time.time()
    searched = random_search(setup, steps)
    search_s = time.time() - started
    print(f"ResNet-20 x0.5, 16 px digits; dense accuracy {dense_acc:.4f}; fine-tune {FINETUNE} steps per point/trial")
    print(
        f"taper: {steps} optimiser steps in {taper_s:.0f} s; random search: {sum(map(len, searched.values()))} trials "
        f"= {FINETUNE * sum(map(len, searched.values()))} steps in {search_s:.0f} s"
    )
    print(
        f"{'level':>6} {'taper acc':>10} {'taper macs':>11} {'gated=counted':>14} "
        f"{'random best':>12} {'random mean':>12} {'n':>3}"
    )
    for level in LEVELS:
        p, accs = points[level], searched[level]
        agree = p["gated_macs"] == p["counted_macs"]
        print(
            f"{level:>6.2f} {p['accuracy']:>10.4f} {p['rel/macs']:>11.3f} {str(agree):>14} "
            f"{max(accs):>12.4f} {np.mean(accs):>12.4f} {len(accs):>3}"
        )


if __name__ == "__main__":
    main()
