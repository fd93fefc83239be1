"""``prunetune search CONFIG``: run a profile search and print its frontier."""

from __future__ import annotations

import argparse

from prunetune.search.commands import add_config_args, local_ray_env, print_results


def register(sub) -> None:
    parser = sub.add_parser("search", help="run a profile search from a YAML config")
    add_config_args(parser)
    parser.add_argument("--address", help="join a running Ray cluster (default: a private local Ray)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.config import load_config

    config = load_config(args.config, args.set + ([f"address={args.address}"] if args.address else []))
    local_ray_env(config.address)
    from prunetune.search.run import prepare, run_search
    from prunetune.search.run.prepare import writable_storage
    from prunetune.search.store.lock import ExperimentLock

    # Held from before the first check that may write (the base model) to the last file: a
    # second driver of this name is refused instead of merging its trials into this one.
    with ExperimentLock(writable_storage(config) / config.name, "prunetune search"):
        prepared = prepare(config)
        if prepared.resume:
            print(f"experiment {config.name!r} exists with this config: resuming it ({prepared.experiment_dir})")
        how = prepared.method.describe(config)
        print(f"profile space: {len(prepared.space)} groups of {config.model.name} on {config.data.name}; {how}")
        outcome = run_search(prepared)
    print_outcome(prepared, outcome)
    return 0


def print_outcome(prepared, outcome) -> None:
    from prunetune.search.store.frontier import format_table
    from prunetune.search.tracking.tracker import tracking_uri

    cost = prepared.frontier_cost
    print()
    print(
        f"Frontier: accuracy vs {cost} ({len(outcome.frontier)} of {len(outcome.records)} finished trials; "
        f"{len(outcome.errors)} errored) in {outcome.wall_s:.0f} s"
    )
    print(format_table(outcome.frontier, cost))
    print_results(outcome.errors, prepared.experiment_dir, outcome.files, "frontier")
    if prepared.config.tracking.enabled:
        uri = tracking_uri(prepared.config, prepared.storage)
        print(f"MLflow:   {uri}  (browse: prunetune ui {prepared.storage})" if uri.startswith("sqlite:") else f"MLflow:   {uri}")
