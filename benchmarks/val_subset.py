"""How many validation images a trial needs: rank agreement of a seeded subset with the whole split.

A trial evaluates at every report; the searchers only need its accuracy to rank profiles as the
whole validation split would. On Fashion-MNIST (5,000 validation images held out of train), a
base model is trained, ``--profiles`` random profiles are pruned and fine-tuned as trials are,
and each is evaluated on the whole validation split and on seeded subsets of 250 to 4,000
images (the subset a trial uses, ``evaluate.val_images``). Printed per subset size: Spearman and
Kendall rank correlation with the whole split, whether the best profile is the same, the mean
absolute accuracy difference, and the evaluation's share of a trial's time.

    python -m benchmarks.val_subset --profiles 24
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = (250, 500, 1000, 2000, 4000)


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import kendalltau, spearmanr

    from prunetune.trainables import DataSpec, ModelSpec, Profile, Recipe, TrialSetup, ensure_base_checkpoint
    from prunetune.trainables.data.feed import DataLoad
    from prunetune.trainables.data.splits import sample_indices
    from prunetune.trainables.groups import find_groups
    from prunetune.trainables.train import EvalSettings, recalibrate_bn, train_batches
    from prunetune.trainables.trial import calibration_batch, example_input, pruned_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=24)
    parser.add_argument("--base-steps", type=int, default=800)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--out", default="val_subset.json")
    args = parser.parse_args(argv)

    model = ModelSpec("resnet20", 0.5, 28)
    data = DataSpec("fashion_mnist", reading=DataLoad("memory"))
    with tempfile.TemporaryDirectory() as bases:
        checkpoint = ensure_base_checkpoint(model, data, Recipe(args.base_steps, 0.05, 128), Path(bases))
        whole_split = EvalSettings(val_images=None)  # this benchmark picks the subsets itself
        setup = TrialSetup(
            model, data, str(checkpoint), finetune=Recipe(args.finetune_steps, 0.01, 64), evaluate=whole_split
        )
        feed = setup.open_data(torch.device("cpu"))
        val = [(x, y) for x, y in feed.eval_batches("val", 10_000)]
        val_x, val_y = val[0]
        groups = [g.name for g in find_groups(pruned_model(setup, Profile({}), 10), example_input(setup))]
        rng = np.random.default_rng(0)
        whole, subsets, seconds = [], {n: [] for n in SIZES}, {"train": 0.0, "eval_whole": 0.0}
        for index in range(args.profiles):
            profile = Profile({g: float(rng.uniform(0.2, 1.0)) for g in groups})
            torch.manual_seed(index)
            net = pruned_model(setup, profile, 10, calibration_batch(feed))
            recalibrate_bn(net, feed.sample(setup.evaluate.images())[0], setup.evaluate)
            started = time.perf_counter()
            train_batches(net, feed.train_batches(64, seed=index), setup.finetune)
            seconds["train"] += time.perf_counter() - started
            started = time.perf_counter()
            net.eval()
            with torch.inference_mode():
                correct = (net(val_x).argmax(1) == val_y).float()
            seconds["eval_whole"] += time.perf_counter() - started
            whole.append(float(correct.mean()))
            for n in SIZES:
                subsets[n].append(float(correct[sample_indices(len(val_y), n, 0)].mean()))
            print(f"profile {index + 1}/{args.profiles}: whole-split accuracy {whole[-1]:.4f}", flush=True)
    best = int(np.argmax(whole))
    per_image = seconds["eval_whole"] / args.profiles / len(val_y)
    train_per_trial = seconds["train"] / args.profiles
    rows = {}
    print(
        f"\n{args.profiles} profiles of resnet20 w0.5 on fashion_mnist, {args.finetune_steps} fine-tune steps each; "
        f"whole validation split: {len(val_y):,} images"
    )
    print(f"{'val images':>10} {'spearman':>9} {'kendall':>8} {'same best':>10} {'mean |diff|':>12} {'eval share':>11}")
    for n in SIZES:
        rho = spearmanr(whole, subsets[n]).statistic
        tau = kendalltau(whole, subsets[n]).statistic
        same = int(np.argmax(subsets[n])) == best
        diff = float(np.mean(np.abs(np.array(whole) - np.array(subsets[n]))))
        share = n * per_image / (n * per_image + train_per_trial)
        rows[n] = {"spearman": rho, "kendall": tau, "same_best": same, "mean_abs_diff": diff, "eval_share": share}
        print(f"{n:>10,} {rho:>9.3f} {tau:>8.3f} {str(same):>10} {diff:>12.4f} {share:>10.1%}")
    Path(args.out).write_text(json.dumps({"rows": rows, "whole": whole, "profiles": args.profiles}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
