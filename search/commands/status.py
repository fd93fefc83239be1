"""``prunetune status RESULTS_DIR``: what a search has done, what errored and what is left."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("status", help="show what a search has done, running and left (no Ray needed)")
    parser.add_argument("results", help="the experiment folder `prunetune search` printed as 'results:'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.run.methods import get_method
    from prunetune.search.store.dense import describe_dense, experiment_reference
    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.store.progress import read_progress

    manifest = read_manifest(args.results)
    config = manifest.config
    progress = read_progress(manifest.directory, get_method(config.method).trial_count(config))
    done, errored, damaged = progress.having("done"), progress.having("errored"), progress.having("damaged")
    reference = experiment_reference(manifest)
    state = "finished" if progress.finished else "not finished"
    print(f"experiment {progress.name} ({state}): {progress.directory}")
    print(describe_dense(reference, list(dict.fromkeys([b.key for b in config.budgets] + ["macs", "params"]))))
    print(f"done      {len(done)} of {progress.configured} configured trials{_confirmations(config)}")
    print(f"errored   {len(errored)}")
    for trial in errored:
        print(f"  trial_{trial.trial_id}: {trial.reason}")
    if damaged:
        print(f"damaged   {len(damaged)} (left out of every figure below)")
        for trial in damaged:
            print(f"  trial_{trial.trial_id}: {trial.reason}")
    print(f"running   {len(progress.having('running'))}")
    print(f"pending   {len(progress.having('pending'))}")
    print(f"left      {progress.left}")
    print(best_line(manifest))
    if not progress.finished and (progress.left or progress.having("running")):
        print(f"If the search was interrupted: prunetune resume {progress.directory}")
    return 0


def _confirmations(config) -> str:
    if not config.confirm.trials:
        return ""
    return f" ({config.trials} search + up to {config.confirm.trials} confirmation)"


def best_line(manifest) -> str:
    """The search's best profile by the one definition (search/store/best.py), with its figure
    labelled and its cost as a share of the dense model's."""
    from prunetune.search.store.best import best_of, search_records
    from prunetune.search.store.trials import read_trials

    best = best_of(search_records(list(read_trials(manifest.directory).values())))
    if best is None:
        return "best      no feasible trial yet"
    shares = ", ".join(f"{share:.1%} of dense {cost}" for cost, share in best.record.relative.items() if share == share)
    return f"best      {best.describe()} (meets every budget{', ' + shares if shares else ''})"
