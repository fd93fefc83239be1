"""prunetune against the tools people use today: NVIDIA ModelOpt FastNAS and Torch-Pruning's
global pruning, on Fashion-MNIST, one base model per seed, one budget, one confirmation.

Every method starts from the same dense model (prunetune's base, trained once per seed and
cached) and must reach the same budget, MACs <= ``--budget`` of dense, counted by one counter
for all (``prunetune.budgets``' ``macs``: torch-pruning's ``count_ops_and_params``). Each
method hands over one pruned model, which is then confirmed the same way for everyone: BatchNorm
recalibrated, fine-tuned ``--confirm-steps`` steps with the search's recipe and training seed,
evaluated once on the test split (10,000 images), which no method selects on.

- ``fastnas``: ModelOpt 0.47 ``mtp.prune(mode="fastnas")``: per-layer sensitivity map scored by
  validation accuracy (BatchNorm re-estimated from 50 training batches before each score),
  then a binary search to the FLOPs target; no fine-tune inside. Its channel divisor is set per
  layer to give each layer ``--fastnas-grid`` choices (default 8): its default divisor 32
  leaves nothing to prune on these narrow networks (4 choices at most), and 1 makes every
  channel count a candidate (560 scored models on vgg11 at width 0.25, about two hours per seed
  here). Its BatchNorm queue is 50 batches of 26 images, about the 1,280 images prunetune's
  recalibration uses, and it scores on the same 2,000 validation images as prunetune's trials.
  Its FLOPs counter leaves out BatchNorm, ReLU and pooling, so where its pick breaks the budget
  by the common counter, or leaves much of it unused, its target is bisected (``--fastnas-refits``
  reruns of its binary search from its saved sensitivity map) to the largest pick within the
  budget by the common counter. Its wall time is its first search, as a user runs it; the
  refits' time is printed in the note.
- ``tp-global``: Torch-Pruning ``MetaPruner(global_pruning=True)`` with its default magnitude
  importance (L2, group mean), the classifier left alone, no layer pruned by more than 90%
  (prunetune's space has the same floor, ``space.low`` 0.1); its global ratio bisected to the
  largest that meets the budget. No accuracy is evaluated.
- prunetune's ``uniform``, ``sensitivity``, ``rl+warm`` and ``random`` through the real search
  path (Ray Tune trials, ``confirm: top 1`` with the same steps), as
  ``benchmarks/search_vs_baselines.py`` configures them.

Printed per method: MACs and parameters of dense, confirmed test accuracy (mean, sd and per seed),
wall time of the search and of the confirmation, and candidate evaluations (accuracy
evaluations of a candidate model; prunetune's count trials, the confirmation not included).
A peer that is not installed is named and left out (``pip install -e '.[peers]'``). The exit code
is non-zero only on an error, never on a lost comparison.

Every outcome is appended to a JSON-lines file under ``--storage`` named by the settings that
make outcomes comparable; a later run with the same settings skips what is there (an interrupted
run resumes, ``--first-seed`` adds seeds) and prints the table over all of them.

Run: ``python -m benchmarks.vs_peers`` (defaults: vgg11 at width 0.25, 3 seeds; see --help).
``--quick`` is a smoke run of a few minutes on 1 seed.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.record import JsonLinesRecord

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

PEERS = ("fastnas", "tp-global")
OURS = ("uniform", "sensitivity", "rl+warm", "random")
FASTNAS_BATCHES = 50  # ModelOpt re-estimates BatchNorm from a 50-batch queue before each score
FASTNAS_BATCH_SIZE = 26  # ... 1,300 images: about prunetune's recalibration (20 batches of 64)
MAX_PRUNING = 0.9  # no group below 10% of its channels, as prunetune's space.low 0.1


@dataclass
class Outcome:
    """One method on one seed: the confirmed pruned model's figures."""

    accuracy: float  # test accuracy after the common confirmation
    macs: float  # of dense, one counter
    params: float  # of dense
    search_s: float
    confirm_s: float
    evaluations: int  # accuracy evaluations of candidate models during the search
    note: str = ""


@dataclass
class Row:
    outcomes: list[Outcome] = field(default_factory=list)

    def accuracies(self) -> list[float]:
        return [o.accuracy for o in self.outcomes]

    def mean(self) -> float:
        return statistics.fmean(self.accuracies())

    def spread(self) -> float:
        return statistics.stdev(self.accuracies()) if len(self.outcomes) > 1 else 0.0

    def average(self, attribute: str) -> float:
        return statistics.fmean(getattr(o, attribute) for o in self.outcomes)


def missing_peers() -> dict[str, str]:
    """Peers that cannot run here, with the reason (a missing package)."""
    missing = {}
    try:
        import modelopt.torch.prune  # noqa: F401
    except ImportError as error:
        missing["fastnas"] = f"nvidia-modelopt is not installed ({error}); pip install -e '.[peers]'"
    try:
        import torch_pruning  # noqa: F401
    except ImportError as error:  # a dependency of prunetune itself: only a broken install
        missing["tp-global"] = f"torch-pruning is not importable ({error})"
    return missing


# --- the common ground: base model, counter, confirmation -----------------------------------


def setup_for(args, seed: int):
    """prunetune's prepared search for ``seed`` (its base model trained once and cached): the
    base every method prunes, and the data and recipe the confirmation uses."""
    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare

    config = search_config(args, "uniform", seed)
    config["name"] = f"fashion-{args.task}-peers-base-s{seed}"
    return prepare(parse_config(config), show_progress=False).setup


def search_config(args, method: str, seed: int) -> dict:
    from benchmarks.search_vs_baselines import method_config

    config = method_config(args, method, args.task, seed)
    config["name"] = f"peers-{config['name']}"  # search_vs_baselines may share the storage (and base models)
    config["confirm"] = {"top": 1, "steps": args.confirm_steps, "seeds": 1}
    return config


def counted(model, setup) -> tuple[float, float]:
    """MACs and parameters of ``model`` by the one counter every method is judged with."""
    from prunetune.budgets import get_cost
    from prunetune.trainables.trial import example_input

    example = example_input(setup)
    return get_cost("macs")(model, example), get_cost("params")(model, example)


def dense_model(setup):
    from prunetune.trainables.base import load_base

    return load_base(setup.model, 10, setup.base_checkpoint)


def confirm_model(setup, model, steps: int) -> float:
    """The confirmation every peer's model gets, as prunetune's confirmation trials run it
    (``run_trial`` with ``confirm``): BatchNorm recalibrated, ``steps`` steps of the search's
    recipe with its training seed, then the test split."""
    import torch

    device = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a confirmation trial's one CPU (two threads beside a busy core crawl)
    try:
        return _confirmed(setup, model, steps, device)
    finally:
        torch.set_num_threads(threads)


def _confirmed(setup, model, steps: int, device) -> float:
    import torch

    from prunetune.trainables.train import evaluate, recalibrate_bn, train_batches
    from prunetune.trainables.trial import dense_teacher

    torch.manual_seed(setup.seed)
    data = setup.open_data(device)
    recipe = setup.finetune.replace(steps=steps)
    recalibrate_bn(model, data.sample(setup.evaluate.images(), setup.seed)[0], setup.evaluate, seed=setup.seed)
    teacher = dense_teacher(setup, data.num_classes, device) if recipe.distill else None
    train_batches(model, data.train_batches(recipe.batch_size, setup.seed), recipe, teacher=teacher)
    return evaluate(model, data.eval_batches("test"))[0]


def classifier_of(model):
    """The last Linear layer: its outputs are the classes, never pruned."""
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


# --- the peers ----------------------------------------------------------------------------------


def run_fastnas(args, setup) -> Outcome:
    """ModelOpt FastNAS to the MACs budget, refitted by the common counter."""
    import modelopt.torch.prune as mtp
    import torch

    from prunetune.trainables.train import evaluate
    from prunetune.trainables.trial import example_input

    data = setup.open_data(torch.device("cpu"))
    loader = list(_batches(data, FASTNAS_BATCHES, FASTNAS_BATCH_SIZE, setup.seed))
    dense = dense_model(setup)
    dense_macs, dense_params = counted(dense, setup)
    calls = 0

    def score(model) -> float:  # validation accuracy on the images prunetune's trials evaluate on
        nonlocal calls
        calls += 1
        return evaluate(model, data.eval_batches("val"))[0]

    rules = fastnas_rules(dense, args.fastnas_grid)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = str(Path(folder) / "fastnas.pth")  # its sensitivity map, reused by every refit

        def pick(target: float):
            model = copy.deepcopy(dense)
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                model, _ = mtp.prune(
                    model,
                    mode=[("fastnas", rules)],
                    constraints={"flops": f"{100 * target:.4f}%"},
                    dummy_input=example_input(setup),
                    config={"data_loader": loader, "score_func": score, "checkpoint": checkpoint, "verbose": False},
                )
            return model, counted(model, setup)[0] / dense_macs

        # Its own FLOPs count differs from the common one: refit its target, by bisection, to
        # the largest pick within the budget by the common counter.
        best, (low, high), target = None, (args.budget / 2, min(1.0, 1.5 * args.budget)), args.budget
        for attempt in range(args.fastnas_refits + 1):
            model, relative = pick(target)
            if attempt == 0:  # its own search, as a user runs it; the refits are this benchmark's
                search_s = time.perf_counter() - started
            if relative <= args.budget + 1e-9:
                best, low = (model, relative, target) if best is None or relative > best[1] else best, target
            else:
                high = target
            target = (low + high) / 2
    refit_s = time.perf_counter() - started - search_s
    note = f"its own target {best[2]:.1%}" if best else "no pick within the budget"
    note += f"; refits {refit_s:.0f} s, not counted"
    model = best[0] if best else model
    macs, params = counted(model, setup)
    started = time.perf_counter()
    accuracy = confirm_model(setup, model, args.confirm_steps)
    return Outcome(
        accuracy, macs / dense_macs, params / dense_params, search_s, time.perf_counter() - started, calls, note
    )


def fastnas_rules(model, grid: int) -> dict:
    """ModelOpt rules giving every conv (and its BatchNorm) about ``grid`` channel choices."""
    from torch import nn

    rules: dict[str, dict] = {"nn.Conv2d": {}, "nn.BatchNorm2d": {}, "nn.Linear": {"*": {"feature_divisor": 1}}}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            rules["nn.Conv2d"][name] = {"channel_divisor": max(1, module.out_channels // grid)}
        elif isinstance(module, nn.BatchNorm2d):
            rules["nn.BatchNorm2d"][name] = {"feature_divisor": max(1, module.num_features // grid)}
    return rules


def run_tp_global(args, setup) -> Outcome:
    """Torch-Pruning's global magnitude pruning, its ratio bisected to the MACs budget."""
    import torch_pruning as tp

    from prunetune.trainables.trial import example_input

    dense = dense_model(setup)
    dense_macs, dense_params = counted(dense, setup)

    def pruned(ratio: float):
        model = copy.deepcopy(dense).eval()
        pruner = tp.pruner.MetaPruner(
            model,
            example_input(setup),
            importance=tp.importance.MagnitudeImportance(),
            global_pruning=True,
            pruning_ratio=ratio,
            max_pruning_ratio=MAX_PRUNING,
            ignored_layers=[classifier_of(model)],
        )
        pruner.step()
        return model

    started = time.perf_counter()
    low, high, best, prunes = 0.0, MAX_PRUNING, None, 0
    for _ in range(14):  # the largest kept fraction (smallest ratio) that meets the budget
        middle = (low + high) / 2
        model, prunes = pruned(middle), prunes + 1
        if counted(model, setup)[0] / dense_macs <= args.budget:
            best, high = (middle, model), middle
        else:
            low = middle
    if best is None:
        best = (high, pruned(high))
    ratio, model = best
    macs, params = counted(model, setup)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    accuracy = confirm_model(setup, model, args.confirm_steps)
    note = f"global ratio {ratio:.3f} after {prunes} prunes"
    return Outcome(accuracy, macs / dense_macs, params / dense_params, search_s, time.perf_counter() - started, 0, note)


def _batches(data, count: int, batch_size: int, seed: int):
    batches = data.train_batches(batch_size, seed)
    for _ in range(count):
        yield next(batches)


class _quiet:
    """ModelOpt prints its progress (stdout and a progress bar on stderr); keep the benchmark's
    own lines readable."""

    def __enter__(self):
        import contextlib
        import io

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self._stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


# --- prunetune's methods -------------------------------------------------------------------------


def run_ours(args, method: str, seed: int) -> Outcome:
    """One of prunetune's searches, confirmed by its own confirmation trial (top 1)."""
    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare, run_search

    started = time.perf_counter()
    outcome = run_search(prepare(parse_config(search_config(args, method, seed)), show_progress=False))
    wall = time.perf_counter() - started
    records = outcome.records
    chosen = [r for r in records if r.confirmed]
    evaluations = sum(1 for r in records if r.reference is None)  # a confirmation is merged into its trial
    if not chosen:
        return Outcome(math.nan, math.nan, math.nan, wall, 0.0, evaluations, "nothing confirmed")
    best = chosen[0]  # its trial measured macs and params with the common counter, against the same dense model
    confirm_s = _trial_seconds(best.checkpoint)  # Tune runs the confirmation inside the search
    relative = best.relative
    return Outcome(best.accuracy, relative["macs"], relative["params"], wall - confirm_s, confirm_s, evaluations)


def _trial_seconds(checkpoint: str | None) -> float:
    """``time_total_s`` of the trial whose checkpoint this is (its folder's result.json)."""
    import json

    folder = Path(checkpoint or "/")
    while folder != folder.parent and not (folder / "result.json").is_file():
        folder = folder.parent
    lines = (folder / "result.json").read_text().splitlines() if (folder / "result.json").is_file() else []
    return float(json.loads(lines[-1]).get("time_total_s", 0.0)) if lines else math.nan


# --- report ----------------------------------------------------------------------------------------


def print_table(args, rows: dict[str, Row], dense_accuracy: list[float]) -> None:
    print(
        f"\n## {args.task} (width {_width(args)}) on Fashion-MNIST 28 px, MACs <= {args.budget:.0%} of dense, "
        f"{len(dense_accuracy)} seed(s): confirmed test accuracy after {args.confirm_steps} fine-tune steps"
    )
    print(
        f"dense model, test accuracy: {statistics.fmean(dense_accuracy):.4f} "
        f"({' '.join(f'{a:.4f}' for a in dense_accuracy)})"
    )
    head = f"{'method':<12} {'MACs':>6} {'params':>7} {'mean':>7} {'sd':>7} {'per seed':<22} {'search s':>9}"
    print(head + f" {'confirm s':>9} {'evals':>6}  note")
    for method, row in rows.items():
        per_seed = " ".join(f"{a:.4f}" for a in row.accuracies())
        notes = "; ".join(sorted({o.note for o in row.outcomes if o.note}))
        figures = (
            f"{row.average('macs'):>6.1%} {row.average('params'):>7.1%} {row.mean():>7.4f} {row.spread():>7.4f}",
            f"{per_seed:<22} {row.average('search_s'):>9.0f} {row.average('confirm_s'):>9.0f}",
            f"{row.average('evaluations'):>6.0f}  {notes}",
        )
        print(f"{method:<12} " + " ".join(figures))


def verdict(rows: dict[str, Row]) -> list[str]:
    ours = {m: r for m, r in rows.items() if m in OURS and r.outcomes}
    peers = {m: r for m, r in rows.items() if m in PEERS and r.outcomes}
    if not ours or not peers:
        return ["no verdict: needs at least one prunetune method and one peer"]
    best_name = max(ours, key=lambda m: ours[m].mean())
    best = ours[best_name]
    lines = []
    for name, peer in peers.items():
        gap, spread = best.mean() - peer.mean(), max(best.spread(), peer.spread())
        if len(best.outcomes) < 2 or len(peer.outcomes) < 2:
            word = "one seed: no spread to judge by"
        elif gap > spread:
            word = "above, by more than the seed spread: met"
        elif gap >= 0:
            word = "at or above, within the seed spread: not met"
        else:
            word = "below: not met"
        lines.append(
            f"prunetune's best ({best_name}) {best.mean():.4f} vs {name} {peer.mean():.4f}: gap {gap:+.4f}, "
            f"seed spread {spread:.4f} -> {word}"
        )
    return lines


def _width(args) -> float:
    from benchmarks.search_vs_baselines import TASKS

    return TASKS[args.task]["width"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks.search_vs_baselines import TASKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="vgg11", choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--budget", type=float, default=0.3, help="MACs of dense")
    parser.add_argument("--trials", type=int, default=16, help="trials of random and rl+warm")
    parser.add_argument("--finetune-steps", type=int, default=40, help="fine-tune steps of a search trial")
    parser.add_argument("--confirm-steps", type=int, default=600)
    parser.add_argument("--base-steps", type=int, default=2400)
    parser.add_argument("--fastnas-refits", type=int, default=4, help="reruns of FastNAS's binary search")
    parser.add_argument("--fastnas-grid", type=int, default=8, help="channel choices per layer for FastNAS")
    parser.add_argument("--methods", nargs="+", default=[*PEERS, *OURS], choices=[*PEERS, *OURS])
    parser.add_argument("--storage", type=Path, default=Path("results/benchmarks/peers").resolve())
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, few steps and trials")
    args = parser.parse_args(argv)
    args.data, args.top, args.cost = "fashion", 1, "macs"  # what search_vs_baselines' configs read
    if args.quick:
        args.seeds, args.trials, args.confirm_steps, args.base_steps, args.fastnas_grid = 1, 4, 30, 100, 4
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    missing = missing_peers()
    for name, reason in missing.items():
        print(f"peer {name} left out: {reason}", flush=True)
    methods = [m for m in args.methods if m not in missing]
    record = Record(args)
    done = record.read()
    print(f"outcomes: {record.path} ({len(done)} already measured with these settings, kept)", flush=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if any((seed, method) not in done for seed in seeds for method in methods):
        from prunetune.search.run import init_ray

        init_ray(None)
    for seed in seeds:
        if all((seed, method) in done for method in methods):
            continue
        setup = setup_for(args, seed)
        dense = _test_accuracy(setup)
        for method in methods:
            if (seed, method) in done:
                continue
            if method == "fastnas":
                outcome = run_fastnas(args, setup)
            elif method == "tp-global":
                outcome = run_tp_global(args, setup)
            else:
                outcome = run_ours(args, method, seed)
            done[seed, method] = (dense, outcome)
            record.append(seed, method, dense, outcome)
            print(f"[{time.time() - started:6.0f} s] seed {seed} {method}: {outcome}", file=sys.stderr, flush=True)
    rows: dict[str, Row] = {m: Row() for m in methods}
    dense_accuracy: dict[int, float] = {}
    for (seed, method), (dense, outcome) in sorted(done.items()):
        if method in rows:
            rows[method].outcomes.append(outcome)
            dense_accuracy[seed] = dense
    print_table(args, {m: r for m, r in rows.items() if r.outcomes}, list(dense_accuracy.values()))
    print("\n## verdict (goal: prunetune's best method above every peer by more than the seed spread)")
    for line in verdict(rows):
        print(line)
    for name, reason in missing.items():
        print(f"not compared: {name} ({reason})")
    print(f"\nwall time {time.time() - started:.0f} s")
    return 0


class Record(JsonLinesRecord):
    """Every measured outcome, in a file named by the settings that make outcomes comparable:
    a run adds seeds to earlier runs' and resumes an interrupted one."""

    SETTINGS = ("task", "budget", "trials", "finetune_steps", "confirm_steps", "base_steps", "fastnas_grid")

    def __init__(self, args):
        super().__init__(args.storage, f"vs_peers-{args.task}", {key: getattr(args, key) for key in self.SETTINGS})

    def read(self) -> dict[tuple[int, str], tuple[float, Outcome]]:
        return {(o["seed"], o["method"]): (o["dense"], Outcome(**o["outcome"])) for o in self.lines()}

    def append(self, seed: int, method: str, dense: float, outcome: Outcome) -> None:
        import dataclasses

        self.add({"seed": seed, "method": method, "dense": dense, "outcome": dataclasses.asdict(outcome)})


def _test_accuracy(setup) -> float:
    import torch

    from prunetune.trainables.train import evaluate

    data = setup.open_data(torch.device("cpu"))
    return evaluate(dense_model(setup), data.eval_batches("test"))[0]


if __name__ == "__main__":
    sys.exit(main())
