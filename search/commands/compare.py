"""``prunetune compare STUDY_OR_RUN ...``: overlay the frontiers of several searches."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser(
        "compare", help="overlay the frontiers of several searches (studies or search run ids) from MLflow"
    )
    parser.add_argument(
        "names", nargs="+", metavar="STUDY_OR_RUN", help="a study (every search in it) or a search's parent run id"
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow to read (default: MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db)"
    )
    parser.add_argument(
        "--cost", help="the cost on the x axis, relative to dense (default: the first search's frontier cost)"
    )
    parser.add_argument(
        "--out", type=Path, help="folder for compare.{png,html,csv,json,txt} (default: ./compare-<timestamp>)"
    )
    parser.set_defaults(func=run)


def default_uri() -> str:
    import os

    from prunetune.search.tracking.tracker import embedded_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(Path("results"))


def check_reachable(uri: str, timeout_s: float = 3.0) -> None:
    """An ``http(s)://`` tracking server that accepts no connection is one line within seconds,
    instead of minutes of MLflow's retries and their log lines. Behind a proxy MLflow's requests
    go through the proxy: not probed."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    from prunetune.budgets.errors import ConfigError

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(parts.hostname):
        return
    hint = "start it or pass the right --tracking-uri"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(
            f"cannot reach the tracking server at {uri}: its port is not a number in 0..65535; {hint}"
        ) from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConfigError(f"cannot reach the tracking server at {uri}: {err.strerror or err}; {hint}") from None


def run(args: argparse.Namespace) -> int:
    from prunetune.budgets.errors import ConfigError
    from prunetune.search.tracking.compare import compare
    from prunetune.search.tracking.tracker import embedded_database

    uri = args.tracking_uri or default_uri()
    database = embedded_database(uri)
    if database is not None and not database.is_file():
        raise ConfigError(
            f"no MLflow store at {uri}; pass --tracking-uri (the URI `prunetune search` printed as 'MLflow:')"
        )
    check_reachable(uri)
    out = args.out or Path(f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    result = compare(uri, args.names, out, args.cost)
    print(result.table)
    print()
    print(
        f"compared {len(result.searches)} searches: "
        + ", ".join(f"{s.label} ({len(s.trials)} trials)" for s in result.searches)
    )
    for kind, path in result.files.items():
        print(f"compare {kind}: {path}")
    print(f"MLflow run: {result.run_id} at {uri}")
    return 0
