"""Does a search beat the baselines? Confirmed test accuracy of every method at one budget.

Task (``--data``): ``fashion`` (the default, the real task: Fashion-MNIST from Debian's
``dataset-fashion-mnist``, 28 px, 55,000 train, 5,000 validation held out of train, 10,000
test; the dense models train ``--base-steps`` 2,400 steps) or ``shapes`` (the fast mode: ten
procedural classes, 16 px; train 2000, val 500, test 500 from separate streams; 600 base
steps), on two architectures, resnet20 at width 0.5 and vgg11 at width 0.25, under one MACs
budget (``--budget``, default 30% of dense). Each method runs through the real search path
(``prepare`` + ``run_search``: Ray Tune trials, BatchNorm recalibration, ``confirm``) except
taper, whose run and confirmation call the trainables directly. Every method's chosen profiles
are confirmed the same way: fine-tuned again from the base for ``--confirm-steps`` steps and
evaluated on the test split. ``--cost params`` puts the budget on parameters instead
(the issue's second budget: ``--cost params --budget 0.15``). For each seed (``--seeds``; the seed sets the base model's
training, the trials' training and the searcher) the figure is the best confirmed test accuracy
among the method's confirmed profiles within the budget: with ``--top`` above 1 that picks among
a few profiles on the test split, so the real-task runs use ``--top 1`` (the search's own pick,
nothing selected on test).

Methods and their compute (optimiser steps, confirmation included, printed per method):

- ``uniform``: one ratio for every group by bisection on the cost model; 1 confirmation.
- ``uniform-eq``: the same profile at equal compute: its confirmation fine-tunes for the profile
  searches' whole step budget (``--trials`` x ``--finetune-steps`` + ``--top`` x
  ``--confirm-steps``, less its own search trial).
- ``sensitivity``: per-group probes at 0 fine-tune steps, greedy allocation; 1 confirmation.
- ``random``, ``rl``, ``exhaustive`` (a seeded sample of a 4-level discrete space): ``--trials``
  trials of ``--finetune-steps``, then the top ``--top`` confirmed.
- ``random+asha``: twice the trials under Tune's ASHA (grace 10 steps), then the top confirmed.
- ``rl+warm``: ``rl`` started from the sensitivity probes' allocation (``warm_start:
  sensitivity``); the probes (0 steps) come on top of ``--trials``.
- ``taper``: one tapering run down to the budget; its hardened, fine-tuned model continued for
  the confirmation length (``taper``), and its profile confirmed from the base like the others'
  (``taper-profile``).

A second table measures how well cheap evaluations predict the result a user gets: for
``--profiles`` random feasible profiles, Spearman's rank correlation between the long
fine-tune's test accuracy and the accuracy after 0 steps without BatchNorm recalibration, 0
steps with it, and the short fine-tune. ``--latency`` adds one run under a measured CPU latency
budget (uniform's ratio then bisected over trials) with the latency noise stated.

Goals (issue 18): the best search beats uniform (at equal compute, ``uniform-eq``, when the run
has it) by more than twice the seed spread on at least one task; RL at least as good as random;
every reported profile within budget.

Run: ``python -m benchmarks.search_vs_baselines`` (shapes: about 1-2 hours per task on 2 CPU
cores; Fashion-MNIST: about an hour per seed of vgg11, more for resnet20; ``--quick`` for a smoke
run of a few minutes). Storage under ``results/benchmarks/baselines``. Every figure is appended
to a JSON-lines record there, named by the settings that make figures comparable: a rerun with
the same settings prints what was measured, runs only what is missing (an interrupted run
resumes, ``--seeds 5`` adds two seeds) and prints the tables from all of it. After a fix to a
method, ``--forget METHOD`` sets its figures and search folders aside, and the run measures it
again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.record import JsonLinesRecord

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

TASKS = {
    "resnet20": {"name": "resnet20", "width": 0.5},
    "vgg11": {"name": "vgg11", "width": 0.25},
}
# The real task (the default) and the fast one. ``base_steps``: the dense model's training.
DATASETS = {
    "fashion": {
        "data": {"name": "fashion_mnist"},  # Debian's dataset-fashion-mnist: 55k train, 5k val, 10k test
        "input_size": 28,
        "base_steps": 2400,
        "label": "Fashion-MNIST 28 px",
        # Beside the dense accuracy, so a reader can place it: full-width nets trained for tens of
        # epochs with augmentation (the data set's benchmark table and the papers that use it).
        "published": "about 93-95% for ResNet- and VGG-class networks trained for tens of epochs",
    },
    "shapes": {
        "data": {"name": "shapes", "options": {"n_train": 2000, "n_val": 500, "n_test": 500}},
        "input_size": 16,
        "base_steps": 600,
        "label": "shapes 16 px",
        "published": "none (generated data)",
    },
}
SEARCHED = ("random", "rl", "rl+warm", "exhaustive", "random+asha")


@dataclass
class Figure:
    """One method's outcome on one task and seed."""

    accuracy: float  # best confirmed test accuracy within the budget
    steps: int  # optimiser steps spent, confirmation included
    within_budget: bool  # every confirmed profile meets the budget
    relative: float  # relative MACs of the best confirmed profile
    search_accuracy: float | None = None


@dataclass
class Row:
    figures: list[Figure] = field(default_factory=list)

    def mean(self) -> float:
        return statistics.fmean(f.accuracy for f in self.figures)

    def spread(self) -> float:
        return statistics.stdev([f.accuracy for f in self.figures]) if len(self.figures) > 1 else 0.0


def base_config(args, task: str, seed: int, name: str, **changes) -> dict:
    config = {
        "name": name,
        "model": model_spec(args, task),
        "data": {**DATASETS[args.data]["data"], "seed": 0},
        "base": {"steps": args.base_steps, "lr": 0.05, "batch_size": 64},
        "prune": {"criterion": "l1"},
        "space": {"low": 0.1, "high": 1.0},
        "finetune": {"steps": args.finetune_steps, "lr": 0.01, "batch_size": 64},
        "budgets": [{"cost": args.cost, "max": args.budget, "relative": True}],
        "searcher": {"name": "random", "seed": seed},
        "trials": args.trials,
        "concurrency": 2,
        "resources": {"cpu": 1},
        "storage_path": str(args.storage),
        "tracking": {"enabled": False},
        "seed": seed,
        "confirm": {"top": args.top, "steps": args.confirm_steps, "seeds": 1},
    }
    for key, value in changes.items():
        config[key] = (
            {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) else value
        )
    return config


def model_spec(args, task: str) -> dict:
    return {**TASKS[task], "input_size": DATASETS[args.data]["input_size"]}


def run_name(args, task: str, method: str, seed: int) -> str:
    prefix = "" if args.data == "shapes" else f"{args.data}-"  # shapes runs keep their earlier names
    suffix = "" if args.cost == "macs" else f"-{args.cost}"
    return f"{prefix}{task}-{method.replace('+', '-')}-s{seed}-b{args.budget:g}{suffix}"


def method_config(args, method: str, task: str, seed: int) -> dict:
    name = run_name(args, task, method, seed)
    if method == "uniform":
        return base_config(
            args, task, seed, name, searcher={"name": "uniform", "seed": seed}, trials=1, confirm={"top": 1}
        )
    if method == "uniform-eq":  # the uniform profile given the profile searches' whole step budget as one fine-tune
        equal = args.trials * args.finetune_steps + args.top * args.confirm_steps - args.finetune_steps
        return base_config(
            args,
            task,
            seed,
            name,
            searcher={"name": "uniform", "seed": seed},
            trials=1,
            confirm={"top": 1, "steps": equal},
        )
    if method == "sensitivity":
        return base_config(
            args, task, seed, name, searcher={"name": "sensitivity", "seed": seed}, trials=200, confirm={"top": 1}
        )
    if method == "exhaustive":
        return base_config(
            args,
            task,
            seed,
            name,
            searcher={"name": "exhaustive", "seed": seed, "options": {"mode": "sampled"}},
            space={"levels": [0.25, 0.5, 0.75, 1.0]},
        )
    if method == "rl+warm":  # the RL searcher started from the sensitivity probes' allocation
        return base_config(
            args,
            task,
            seed,
            name,
            searcher={"name": "rl", "seed": seed, "options": {"warm_start": "sensitivity"}},
            trials=args.trials + sensitivity_probes(args, task),
        )
    if method == "random+asha":
        return base_config(
            args, task, seed, name, trials=2 * args.trials, scheduler={"name": "asha", "grace_steps": 10}
        )
    return base_config(args, task, seed, name, searcher={"name": method, "seed": seed})


def sensitivity_probes(args, task: str) -> int:
    """The warm start's probes on ``task``'s model, at most 1 + groups x 3 ratios (a group too
    thin for a ratio has fewer): extra trials, so ``rl+warm`` gets at least ``--trials``
    episodes like ``rl``. Probes run 0 fine-tune steps, so the step counts stay comparable."""
    import torch

    from prunetune.trainables import build_model, find_groups

    spec = model_spec(args, task)
    model = build_model(spec["name"], num_classes=10, input_size=spec["input_size"], width=spec["width"])
    return 1 + 3 * len(find_groups(model, torch.zeros(1, 3, spec["input_size"], spec["input_size"])))


def run_method(args, method: str, task: str, seed: int) -> Figure:
    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare, run_search

    config = parse_config(method_config(args, method, task, seed))
    outcome = run_search(prepare(config, show_progress=False))
    return figure_of(outcome.records, args.budget, args.cost)


def figure_of(records, budget: float, cost: str = "macs") -> Figure:
    chosen = [r for r in records if r.confirmed]
    steps = sum(r.finetune_steps * max(r.seeds, 1) for r in records)
    if not chosen:
        return Figure(math.nan, steps, False, math.nan)
    best = max(chosen, key=lambda r: r.accuracy if r.feasible else -1.0)
    within = all(r.feasible and r.relative[cost] <= budget + 1e-9 for r in chosen)
    return Figure(best.accuracy, steps, within, best.relative[cost], best.search_accuracy)


def dense_accuracy(args, task: str, seed: int) -> float:
    """The dense base model's test accuracy (the base every method of this seed prunes)."""
    import torch

    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare
    from prunetune.trainables.base import load_base
    from prunetune.trainables.train import evaluate

    config = parse_config(base_config(args, task, seed, run_name(args, task, "dense", seed), confirm={"top": 0}))
    setup = prepare(config, show_progress=False).setup
    data = setup.open_data(torch.device("cpu"))
    model = load_base(setup.model, data.num_classes, setup.base_checkpoint)
    return evaluate(model, data.eval_batches("test"))[0]


def run_taper(args, task: str, seed: int) -> tuple[Figure, Figure]:
    """One taper run down to the budget. Two figures: its hardened, fine-tuned model continued
    for ``--confirm-steps`` (the method's own output), and its profile confirmed from the base
    like every other method's."""
    import shutil
    import tempfile

    import torch

    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare
    from prunetune.trainables import Profile, TaperSettings, rebuild_from_checkpoint, run_trial
    from prunetune.trainables.taper_trial import run_taper as taper
    from prunetune.trainables.train import evaluate, train_batches
    from prunetune.trainables.trial import Confirmation

    name = run_name(args, task, "taper", seed)
    config = parse_config(base_config(args, task, seed, name, confirm={"top": 0}))
    prepared = prepare(config, show_progress=False)
    setup, points = prepared.setup, []
    keep = Path(tempfile.mkdtemp(prefix="taper-point-"))
    settings = TaperSettings(levels=(args.budget,), finetune_steps=args.finetune_steps, cost=args.cost)

    def report(metrics: dict, directory: Path) -> None:
        shutil.copytree(directory, keep, dirs_exist_ok=True)
        points.append({**metrics, "profile": json.loads((directory / "profile.json").read_text())})

    taper(setup, settings, report)
    point = points[-1]
    taper_steps = int(point["taper_step"]) + args.finetune_steps
    # The method's own model: its hardened point, fine-tuned further.
    data = setup.open_data(torch.device("cpu"))
    model = rebuild_from_checkpoint(setup, keep, data.num_classes)
    recipe = setup.finetune.replace(steps=args.confirm_steps)
    torch.manual_seed(setup.seed)
    train_batches(model, data.train_batches(recipe.batch_size, setup.seed), recipe)
    own = evaluate(model, data.eval_batches("test"))[0]
    shutil.rmtree(keep, ignore_errors=True)
    relative = f"rel/{args.cost}"
    within = bool(point["feasible"]) and point[relative] <= args.budget + 1e-9
    continued = Figure(own, taper_steps + args.confirm_steps, within, point[relative], point["accuracy"])
    # Its profile from the base, as every method's profiles are confirmed.
    final: list[dict] = []
    run_trial(
        setup,
        Profile(point["profile"]),
        lambda metrics, _: final.append(metrics),
        steps=args.confirm_steps,
        confirm=Confirmation("taper"),
    )
    done = final[-1]
    from_base = Figure(
        done["test/accuracy"],
        taper_steps + args.confirm_steps,
        bool(done["feasible"]) and done[relative] <= args.budget + 1e-9,
        done[relative],
        point["accuracy"],
    )
    return continued, from_base


# --- cheap vs final rank correlation ------------------------------------------------------


def correlation(args, task: str) -> dict[str, float]:
    """Spearman's rho between cheap accuracies and the long fine-tune's test accuracy."""
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare
    from prunetune.search.searchers import get_searcher
    from prunetune.trainables import Profile, recalibrate_bn
    from prunetune.trainables.train import evaluate, train_batches
    from prunetune.trainables.trial import calibration_batch, pruned_model

    config = parse_config(base_config(args, task, 0, f"{args.data}-{task}-correlation-b{args.budget:g}"))
    prepared = prepare(config, show_progress=False)
    setup = prepared.setup
    data = setup.open_data(torch.device("cpu"))
    calibration = data.sample(setup.evaluate.images(), 0)[0]
    searcher = get_searcher("random")(prepared.space, seed=123)
    columns: dict[str, list[float]] = {
        "0 steps, no BN recalibration": [],
        "0 steps, BN recalibrated": [],
        f"{args.finetune_steps} steps (the search's trials)": [],
        "final": [],
    }

    def fine_tuned(model, steps: int):
        torch.manual_seed(0)
        recipe = setup.finetune.replace(steps=steps)
        train_batches(model, data.train_batches(recipe.batch_size, 0), recipe)
        return model

    for index in range(args.profiles):
        profile = Profile(searcher.suggest(f"p{index}")["profile"])
        torch.manual_seed(0)
        model = pruned_model(setup, profile, data.num_classes, calibration_batch(data))
        columns["0 steps, no BN recalibration"].append(evaluate(model, data.eval_batches("val"))[0])
        recalibrate_bn(model, calibration, setup.evaluate)
        columns["0 steps, BN recalibrated"].append(evaluate(model, data.eval_batches("val"))[0])
        fine_tuned(model, args.finetune_steps)
        columns[f"{args.finetune_steps} steps (the search's trials)"].append(
            evaluate(model, data.eval_batches("val"))[0]
        )
        model = pruned_model(setup, profile, data.num_classes, calibration_batch(data))
        recalibrate_bn(model, calibration, setup.evaluate)
        fine_tuned(model, args.confirm_steps)
        columns["final"].append(evaluate(model, data.eval_batches("test"))[0])
    final = np.array(columns.pop("final"))
    return {name: float(spearmanr(values, final).statistic) for name, values in columns.items()} | {
        "final accuracy range": f"{final.min():.3f}-{final.max():.3f}"
    }


# --- latency budget ---------------------------------------------------------------------------


def latency_run(args, method: str, seed: int) -> tuple[Figure, float]:
    """``method`` under a CPU latency budget; returns its figure and the latency noise (CV)."""
    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare, run_search

    changes = {
        "budgets": [{"cost": "latency", "max": args.latency, "relative": True}],
        "model": {**TASKS["resnet20"], "input_size": args.latency_input_size},
        "concurrency": 1,
    }  # one trial measures at a time: the other core stays quiet
    config = method_config(args, method, "resnet20", seed)
    config.update(changes, name=f"{config['name']}-latency{args.latency:g}-{args.latency_input_size}px")
    if method == "uniform":  # bisected over trials on measured latency: up to `probes` (6) more trials
        config["trials"] = 1 + 6
    if method == "sensitivity":
        config["searcher"]["options"] = {"probes": 6}
    outcome = run_search(prepare(parse_config(config), show_progress=False))
    chosen = [r for r in outcome.records if r.confirmed]
    steps = sum(r.finetune_steps * max(r.seeds, 1) for r in outcome.records)
    if not chosen:
        return Figure(math.nan, steps, False, math.nan), latency_noise(outcome.records)
    best = max(chosen, key=lambda r: r.accuracy if r.feasible else -1.0)
    return Figure(
        best.accuracy,
        steps,
        all(r.feasible for r in chosen),
        best.relative.get("latency", math.nan),
        best.search_accuracy,
    ), latency_noise(outcome.records)


def latency_noise(records) -> float:
    """Coefficient of variation of measured latency between trials of one profile (the
    confirmation re-measures its source's profile)."""
    by_profile: dict[tuple, list[float]] = {}
    for r in records:
        if "latency" in r.costs:
            by_profile.setdefault(tuple(sorted(r.profile.items())), []).append(r.costs["latency"])
    spreads = [statistics.stdev(v) / statistics.fmean(v) for v in by_profile.values() if len(v) > 1]
    return statistics.fmean(spreads) if spreads else math.nan


# --- report -----------------------------------------------------------------------------------


def print_table(task: str, rows: dict[str, Row], args, dense: Row | None = None) -> None:
    data, cost = DATASETS[args.data], {"macs": "MACs", "params": "params"}[args.cost]
    print(f"\n## {task} on {data['label']}, {cost} <= {args.budget:.0%} of dense: confirmed test accuracy")
    if dense is not None:
        seeds = " ".join(f"{f.accuracy:.4f}" for f in dense.figures)
        print(f"dense test accuracy {dense.mean():.4f} ({seeds}); published: {data['published']}")
    print(f"{'method':<14} {'mean':>7} {'spread':>7} {'per seed':<26} {'steps':>7} {cost:>6} {'in budget':>9}")
    for method, row in rows.items():
        seeds = " ".join(f"{f.accuracy:.3f}" for f in row.figures)
        steps = statistics.fmean(f.steps for f in row.figures)
        macs = statistics.fmean(f.relative for f in row.figures)
        within = all(f.within_budget for f in row.figures)
        print(
            f"{method:<14} {row.mean():>7.4f} {row.spread():>7.4f} {seeds:<26} "
            f"{steps:>7.0f} {macs:>6.1%} {str(within):>9}"
        )


def verdict(results: dict[str, dict[str, Row]]) -> list[str]:
    lines = []
    beats_somewhere = False
    for task, rows in results.items():
        searched = {m: r for m, r in rows.items() if m not in ("uniform", "uniform-eq")}
        if not searched:
            continue
        best_name = max(searched, key=lambda m: searched[m].mean())
        best = searched[best_name]
        # the goal is judged at equal compute when the run has it (uniform-eq), else against uniform
        for label in [name for name in ("uniform", "uniform-eq") if name in rows]:
            uniform = rows[label]
            gap = best.mean() - uniform.mean()
            spread = max(best.spread(), uniform.spread())
            beats = gap > 2 * spread
            if label == "uniform-eq" or "uniform-eq" not in rows:
                beats_somewhere |= beats
            lines.append(
                f"{task}: best method {best_name} {best.mean():.4f} vs {label} {uniform.mean():.4f}: "
                f"gap {gap:+.4f}, twice the seed spread {2 * spread:.4f} -> {'beats' if beats else 'does not beat'} it"
            )
        for rl in [name for name in ("rl", "rl+warm") if name in rows and "random" in rows]:
            lines.append(
                f"{task}: {rl} {rows[rl].mean():.4f} vs random {rows['random'].mean():.4f} -> "
                f"{'met' if rows[rl].mean() >= rows['random'].mean() else 'not met'} (goal: rl >= random)"
            )
        within = all(f.within_budget for row in rows.values() for f in row.figures)
        lines.append(f"{task}: every confirmed profile within budget: {within} (goal: True)")
    lines.append(
        "goal 'best search beats uniform by > 2x seed spread on at least one task': "
        f"{'met' if beats_somewhere else 'not met'}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.3, help="the budget, relative to dense")
    parser.add_argument("--cost", default="macs", choices=["macs", "params"], help="the budget's cost")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--finetune-steps", type=int, default=40)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--confirm-steps", type=int, default=300)
    parser.add_argument(
        "--data", default="fashion", choices=list(DATASETS), help="fashion (the real task) or shapes (fast)"
    )
    parser.add_argument("--base-steps", type=int, default=None, help="the dense model's steps (default: per data set)")
    parser.add_argument("--profiles", type=int, default=16, help="profiles in the correlation table")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=["uniform", "uniform-eq", "sensitivity", *SEARCHED, "taper"])
    parser.add_argument("--latency", type=float, default=0.0, help="also run under this relative CPU latency budget")
    parser.add_argument(
        "--latency-input-size",
        type=int,
        default=32,
        help="input size of the latency run (at 16 px resnet20's latency is per-layer overhead)",
    )
    parser.add_argument("--latency-only", action="store_true", help="only the latency run (needs --latency)")
    parser.add_argument("--no-correlation", action="store_true", help="leave out the cheap-vs-final correlation table")
    parser.add_argument(
        "--forget",
        nargs="+",
        default=[],
        metavar="METHOD",
        help="measure these methods again (after a fix to them): their recorded figures move to "
        "<record>.superseded.jsonl and their search folders under superseded/, then the run "
        "measures what is missing; to resume an interrupted run afterwards, leave --forget out",
    )
    parser.add_argument("--storage", type=Path, default=Path("results/benchmarks/baselines").resolve())
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, few trials and steps")
    args = parser.parse_args(argv)
    if args.base_steps is None:
        args.base_steps = DATASETS[args.data]["base_steps"]
    if args.quick:
        args.seeds, args.trials, args.confirm_steps, args.profiles, args.base_steps = 1, 4, 60, 4, 200
        args.tasks = args.tasks[:1]
    started = time.time()
    results: dict[str, dict[str, Row]] = {}
    if args.latency_only:
        args.tasks = []
    for task in args.tasks:
        record = Record(args, task)
        if args.forget:
            record.forget(args, task, args.forget)
        done = record.read()
        if done:
            print(f"{task}: {len(done)} figures from {record.path}", file=sys.stderr, flush=True)
        for seed in range(args.seeds):
            if (seed, "dense") not in done:
                done[seed, "dense"] = Figure(dense_accuracy(args, task, seed), args.base_steps, True, 1.0)
                record.append(seed, "dense", done[seed, "dense"])
            for method in args.methods:
                labels = ("taper", "taper-profile") if method == "taper" else (method,)
                if all((seed, label) in done for label in labels):
                    continue
                start_ray()
                if method == "taper":
                    figures = dict(zip(labels, run_taper(args, task, seed)))
                else:
                    figures = {method: run_method(args, method, task, seed)}
                for label, figure in figures.items():
                    done[seed, label] = figure
                    record.append(seed, label, figure)
                    print(
                        f"[{time.time() - started:6.0f} s] {task} {label} seed {seed}: {figure}",
                        file=sys.stderr,
                        flush=True,
                    )
        wanted = [label for m in args.methods for label in (("taper", "taper-profile") if m == "taper" else (m,))]
        rows = results.setdefault(task, {})
        for label in ["dense", *wanted]:
            figures = [done[seed, label] for seed in range(args.seeds) if (seed, label) in done]
            if figures:
                rows[label] = Row(figures)
    for task, rows in results.items():
        dense = rows.pop("dense", None)
        print_table(task, rows, args, dense)
    print("\n## cheap accuracy vs the result a user gets (Spearman's rho with the long fine-tune's test accuracy)")
    for task in [] if args.no_correlation else args.tasks:
        rho = correlation(args, task)
        print(f"{task}: " + "; ".join(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in rho.items()))
    if args.latency:
        print(
            f"\n## resnet20 at {args.latency_input_size} px under a measured CPU latency budget <= {args.latency:.0%} "
            "of dense (1 seed)"
        )
        for method in [m for m in ("uniform", "sensitivity", "random") if m in args.methods]:
            start_ray()
            figure, noise = latency_run(args, method, 0)
            print(
                f"{method:<12} test accuracy {figure.accuracy:.4f}  latency {figure.relative:.1%} of dense  "
                f"steps {figure.steps}"
                f"  within budget {figure.within_budget}  latency noise (CV between re-measurements) {noise:.1%}"
            )
    if results:
        print("\n## verdict")
        for line in verdict({task: rows for task, rows in results.items() if len(rows) > 1}):
            print(line)
    print(f"\nwall time {time.time() - started:.0f} s")
    return 0


def start_ray() -> None:
    """Local Ray, once, when something is left to measure (a rerun from the record starts none)."""
    import ray

    from prunetune.search.run import init_ray

    if not ray.is_initialized():
        init_ray(None)


class Record(JsonLinesRecord):
    """Every figure measured, in a file named by the settings that make figures comparable
    (per task): a rerun resumes and adds seeds."""

    SETTINGS = ("data", "budget", "cost", "trials", "finetune_steps", "top", "confirm_steps", "base_steps")

    def __init__(self, args, task: str):
        settings = {"task": task, **{key: getattr(args, key) for key in self.SETTINGS}}
        super().__init__(args.storage, f"baselines-{args.data}-{task}", settings)

    def read(self) -> dict[tuple[int, str], Figure]:
        return {(o["seed"], o["method"]): Figure(**o["figure"]) for o in self.lines()}

    def append(self, seed: int, method: str, figure: Figure) -> None:
        import dataclasses

        self.add({"seed": seed, "method": method, "figure": dataclasses.asdict(figure)})

    def forget(self, args, task: str, methods: list[str]) -> None:
        """Set aside what is recorded of ``methods`` (``taper`` takes ``taper-profile`` with it):
        their lines go to ``<record>.superseded.jsonl``, their search folders under
        ``superseded/`` (a timestamp keeps earlier ones), so the run measures them afresh."""
        labels = {label for m in methods for label in (("taper", "taper-profile") if m == "taper" else (m,))}
        gone = self.set_aside(lambda line: line["method"] in labels)
        if not gone:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for line in gone:
            folder = Path(args.storage) / run_name(args, task, line["method"], line["seed"])
            if line["method"] != "taper-profile" and folder.is_dir():
                (Path(args.storage) / "superseded").mkdir(exist_ok=True)
                os.replace(folder, Path(args.storage) / "superseded" / f"{folder.name}-{stamp}")
        print(f"{task}: set aside {len(gone)} recorded figures of {', '.join(sorted(labels))}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
