"""``prunetune status RESULTS_DIR``: what a search has done, what errored and what is left."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("status", help="show what a search has done, running and left (no Ray needed)")
    parser.add_argument("results", help="the experiment folder `prunetune search` printed as 'results:'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.store.progress import read_progress

    progress = read_progress(args.results)
    done, errored = progress.having("done"), progress.having("errored")
    print(f"experiment {progress.name}: {progress.directory}")
    print(f"done      {len(done)} of {progress.configured} configured trials")
    print(f"errored   {len(errored)}")
    for trial in errored:
        print(f"  trial_{trial.trial_id}: {trial.reason}")
    print(f"running   {len(progress.having('running'))}")
    print(f"pending   {len(progress.having('pending'))}")
    print(f"left      {progress.left}")
    best = progress.best
    if best is None:
        print("best      no feasible trial yet")
    else:
        print(f"best      accuracy {best.accuracy:.4f} (feasible) in trial_{best.trial_id}")
    if progress.left and progress.having("running"):
        print(f"If the search was interrupted: prunetune resume {progress.directory}")
    return 0
