"""``prunetune compare STUDY_OR_RUN ...``: overlay the frontiers of several searches."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("compare", help="overlay the frontiers of several searches (studies or search run ids) from MLflow")
    parser.add_argument("names", nargs="+", metavar="STUDY_OR_RUN", help="a study (every search in it) or a search's parent run id")
    parser.add_argument("--tracking-uri", help="MLflow to read (default: MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db)")
    parser.add_argument("--cost", help="the cost on the x axis, relative to dense (default: the first search's frontier cost)")
    parser.add_argument("--out", type=Path, help="folder for compare.{png,html,csv,json,txt} (default: ./compare-<timestamp>)")
    parser.set_defaults(func=run)


def default_uri() -> str:
    import os

    from prunetune.search.tracking.tracker import embedded_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(Path("results"))


def run(args: argparse.Namespace) -> int:
    from prunetune.budgets.errors import ConfigError
    from prunetune.search.tracking.compare import compare
    from prunetune.search.tracking.tracker import embedded_database

    uri = args.tracking_uri or default_uri()
    database = embedded_database(uri)
    if database is not None and not database.is_file():
        raise ConfigError(f"no MLflow store at {uri}; pass --tracking-uri (the URI `prunetune search` printed as 'MLflow:')")
    out = args.out or Path(f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    result = compare(uri, args.names, out, args.cost)
    print(result.table)
    print()
    print(f"compared {len(result.searches)} searches: " + ", ".join(f"{s.label} ({len(s.trials)} trials)" for s in result.searches))
    for kind, path in result.files.items():
        print(f"compare {kind}: {path}")
    print(f"MLflow run: {result.run_id} at {uri}")
    return 0
