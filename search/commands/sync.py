"""``prunetune sync RESULTS``: backfill MLflow from a search's results folder."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "sync", help="write a search's results to MLflow (after a tracking outage); never duplicates runs"
    )
    parser.add_argument("results", help="the experiment folder `prunetune search` printed as 'results:'")
    parser.add_argument("--tracking-uri", help="MLflow to write to (default: the search's own tracking URI)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.tracking.sync import sync

    result = sync(args.results, args.tracking_uri)
    points = f" and {_count(result.points, 'taper point')}" if result.points else ""
    print(
        f"synced {_count(result.trials, 'trial')}{points} to {result.uri}: study {result.experiment!r}, "
        f"search run {result.parent_run_id}"
    )
    print(
        f"corrected {_count(result.corrected, 'trial run')} to match the folder"
        + (f"; deleted {_count(result.duplicates, 'duplicate run')}" if result.duplicates else "")
    )
    if result.damaged:
        print(f"left out {_count(len(result.damaged), 'damaged trial')}:")
        for damage in result.damaged:
            print(f"  {damage.line()}")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
