"""``prunetune search CONFIG``: run a profile search and print its frontier."""

from __future__ import annotations

import argparse
import math
import sys

from prunetune.search.commands import add_config_args, local_ray_env, print_results
from prunetune.search.commands._console import add_console_args, exit_code, print_dense, start_console


def register(sub) -> None:
    parser = sub.add_parser("search", help="run a profile search from a YAML config")
    add_config_args(parser)
    parser.add_argument("--address", help="join a running Ray cluster (default: a private local Ray)")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="resume an experiment folder owned by another user (resuming unpickles its state)",
    )
    add_console_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.budgets.errors import PrunetuneError
    from prunetune.search.config import load_config

    config = load_config(args.config, args.set + ([f"address={args.address}"] if args.address else []))
    local_ray_env(config.address)
    start_console(args)
    from prunetune.search.run import prepare, run_search
    from prunetune.search.run.prepare import writable_storage
    from prunetune.search.store.lock import ExperimentLock

    # Held from before the first check that may write (the base model) to the last file: a
    # second driver of this name is refused instead of merging its trials into this one.
    with ExperimentLock(writable_storage(config) / config.name, "prunetune search"):
        prepared = prepare(config, trust=args.trust)
        if prepared.resume:
            print(f"experiment {config.name!r} exists with this config: resuming it ({prepared.experiment_dir})")
        how = prepared.method.describe(prepared.config)  # lengths given in epochs resolved to steps
        print(f"profile space: {len(prepared.space)} groups of {config.model.name} on {config.data.name}; {how}")
        print_dense(prepared)
        try:
            outcome = run_search(prepared)
        except PrunetuneError:
            if not prepared.resume:
                discard_unstarted(prepared)
            raise
    print_outcome(prepared, outcome)
    return exit_code(prepared, outcome)


def discard_unstarted(prepared) -> None:
    """Remove what a new search refused before its first trial wrote (its folder, its MLflow
    parent run), so the corrected rerun is a fresh search, not a resume of nothing. The cached
    base model stays: it is valid whatever the search's mistake."""
    import shutil

    directory = prepared.experiment_dir
    if not directory.is_dir() or any(directory.glob("trial_*")):
        return
    _delete_parent_runs(directory)
    shutil.rmtree(directory, ignore_errors=True)


def _delete_parent_runs(directory) -> None:
    from prunetune.search.tracking.tracker import LocalState

    try:
        runs = LocalState.load(directory).parent_runs
    except (OSError, ValueError, TypeError):
        return
    if not runs:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for uri, run_id in runs.items():
        try:
            MlflowClient(uri).delete_run(run_id)
        except (MlflowException, OSError) as err:  # the server is gone: say so, do not hide the real error
            print(
                f"prunetune: warning: could not delete the unstarted search's MLflow run {run_id} at {uri}: {err}",
                file=sys.stderr,
            )


def print_outcome(prepared, outcome) -> None:
    from prunetune.search.run.console import was_interrupted
    from prunetune.search.run.tuner import reference
    from prunetune.search.store.frontier import format_table
    from prunetune.search.tracking.tracker import tracking_uri

    cost = prepared.frontier_cost
    print()
    print(
        f"Frontier: accuracy vs {cost} ({len(outcome.frontier)} of "
        f"{sum(not r.confirmed for r in outcome.records)} finished trials; "
        f"{len(outcome.errors)} errored) in {outcome.wall_s:.0f} s"
    )
    print(format_table(outcome.frontier, cost, reference(prepared, outcome.records), partial=was_interrupted()))
    print_confirmed(prepared, outcome)
    print_best(outcome)
    print_results(outcome.errors, prepared.experiment_dir, outcome.files, "frontier")
    if prepared.config.tracking.enabled:
        uri = tracking_uri(prepared.config, prepared.storage)
        print(
            f"MLflow:   {uri}  (browse: prunetune ui {prepared.storage})"
            if uri.startswith("sqlite:")
            else f"MLflow:   {uri}"
        )


def print_best(outcome) -> None:
    """The search's best profile by the one definition (search/store/best.py), as ``status``,
    ``export --best`` and MLflow name it."""
    from prunetune.search.store.best import best_of

    best = best_of(outcome.records)
    if best is not None:
        print(f"best:     {best.describe()}")


def print_confirmed(prepared, outcome) -> None:
    """What the confirmation trials measured: each confirmed profile's test accuracy beside the
    validation accuracy its short search trial reported (nothing without ``confirm``)."""
    confirmed = sorted((r for r in outcome.records if r.confirmed and r.reference is None), key=lambda r: -r.accuracy)
    if not confirmed:
        return
    settings = prepared.config.confirm
    print(
        f"Confirmed on the test split: {len(confirmed)} profile(s) fine-tuned again for {settings.steps} steps "
        f"x {settings.seeds} seed(s); the frontier above is at validation accuracy, the best by test accuracy"
    )
    for r in confirmed:
        searched = f"val {r.search_accuracy:.4f}" if r.search_accuracy is not None else "val ?"
        print(
            f"  {r.trial_id:<12} test {r.accuracy:.4f}   search trial {r.confirms}: {searched} "
            f"after {prepared.config.finetune.steps} steps"
        )
    from prunetune.search.store.frontier import references

    for line in against_uniform(confirmed, references(outcome.records), prepared.frontier_cost):
        print(line)


def against_uniform(confirmed: list, uniform: list, cost: str) -> list[str]:
    """One line per uniform reference (``confirm.uniform``): its test accuracy and cost, and the
    best confirmed search profile that costs no more, with the difference in points."""
    lines = []
    for ref in uniform:
        share = ref.relative.get(cost)
        at = f"{share:.1%} {cost}" if share is not None else f"{ref.costs.get(cost, float('nan')):,.0f} {cost}"
        broken = "" if ref.feasible else " (breaks a budget)"
        rivals = [
            r
            for r in confirmed
            if r.feasible and r.costs.get(cost, math.inf) <= ref.costs.get(cost, math.inf) * (1 + 1e-9)
        ]
        best = max(rivals, key=lambda r: r.accuracy, default=None)
        verdict = (
            "no confirmed search profile costs as little"
            if best is None
            else (
                f"best search profile at no more cost: {best.accuracy:.4f} "
                f"({100 * (best.accuracy - ref.accuracy):+.2f} points)"
            )
        )
        lines.append(f"  uniform      test {ref.accuracy:.4f}   at {at}{broken}, {ref.seeds} seed(s); {verdict}")
    return lines
