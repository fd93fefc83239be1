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
    done, errored = progress.having("done"), progress.having("errored")
    reference = experiment_reference(manifest)
    state = "finished" if progress.finished else "not finished"
    print(f"experiment {progress.name} ({state}): {progress.directory}")
    print(describe_dense(reference, list(dict.fromkeys([b.key for b in config.budgets] + ["macs", "params"]))))
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
        share = f", {best.accuracy / reference.dense_accuracy:.1%} of dense" if reference.dense_accuracy else ""
        print(f"best      accuracy {best.accuracy:.4f} (meets every budget{share}) in trial_{best.trial_id}")
    if not progress.finished and (progress.left or progress.having("running")):
        print(f"If the search was interrupted: prunetune resume {progress.directory}")
    return 0
