"""``prunetune ui [RESULTS]``: the MLflow UI over the project's store, on 127.0.0.1."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def register(sub) -> None:
    parser = sub.add_parser("ui", help="start the MLflow UI over a results folder's store (127.0.0.1)")
    parser.add_argument(
        "results",
        nargs="?",
        default="results",
        help="results folder (storage_path), an experiment folder in it, or a backend store URI (default: results)",
    )
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    parser.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster whose dashboard to show (default: RAY_ADDRESS)",
    )
    parser.set_defaults(func=run)


def store(results: str) -> tuple[str, Path]:
    """The backend store URI and artifact folder for a results folder (or a URI as given):
    a SQLite store's artifacts lie beside it, where searches put them."""
    from prunetune.budgets.errors import ConfigError
    from prunetune.search.config import is_uri
    from prunetune.search.store.manifest import MANIFEST
    from prunetune.search.tracking.tracker import ARTIFACTS_DIR, artifact_root, embedded_database, embedded_uri

    if is_uri(results):
        return results, artifact_root(results) or Path(ARTIFACTS_DIR).resolve()
    folder = Path(results).resolve()
    if (folder / MANIFEST).is_file():  # an experiment folder: its store is one level up
        folder = folder.parent
    uri = embedded_uri(folder)
    if not embedded_database(uri).is_file():
        raise ConfigError(
            f"no MLflow store at {embedded_database(uri)}; pass the storage_path of a search (default: results)"
        )
    return uri, artifact_root(uri)


def ray_dashboard(address: str) -> str:
    """The dashboard URL of the Ray cluster at ``address``, or why there is none."""
    if address.startswith("http"):
        return address
    from prunetune.search.commands import local_ray_env

    local_ray_env(address)
    import ray

    try:
        context = ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError) as err:
        return f"not reachable at {address} ({str(err).splitlines()[0]})"
    url = context.dashboard_url
    ray.shutdown()
    return f"http://{url}" if url else f"cluster at {address} runs without a dashboard"


def check_port(port: int) -> None:
    """A ConfigError when ``port`` on 127.0.0.1 is taken: the server would fail to bind, and
    the printed URL would lead to whatever holds the port."""
    from prunetune.budgets.errors import ConfigError

    if not 1 <= port <= 65535:  # bind() would raise OverflowError, not OSError
        raise ConfigError(f"--port {port} is not a port: choose one in 1..65535, e.g. --port 5000")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be opened ({err.strerror})"
            raise ConfigError(
                f"port {port} on 127.0.0.1 {why}; choose another with --port, e.g. --port {port + 1}"
            ) from None


def run(args: argparse.Namespace) -> int:
    uri, artifacts = store(args.results)
    check_port(args.port)
    if args.ray_address:
        print(f"Ray dashboard: {ray_dashboard(args.ray_address)}")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        str(artifacts),
        "--workers",
        "1",
    ]
    # MLflow 3 opens in its GenAI view unless the URL asks for model training (runs, charts).
    print(
        f"MLflow UI: http://127.0.0.1:{args.port}/#/experiments?{MODEL_TRAINING_VIEW}  (store {uri}; Ctrl-C stops it)",
        flush=True,
    )
    # Its own session: Ctrl-C reaches this process only, which stops the server and its workers
    # as a group at once, instead of waiting out the server's own graceful shutdown.
    server = subprocess.Popen(command, start_new_session=True)
    # `kill` (SIGTERM) stops the server too, like Ctrl-C, instead of orphaning it; and Ctrl-C
    # works even where this process started with SIGINT ignored (a background job of a shell).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return server.wait()
    except KeyboardInterrupt:
        stop_server(server)
        return 0


def stop_server(server: subprocess.Popen, grace_s: float = 3.0) -> None:
    """End the server we started and its workers (its process group), by its PID: SIGTERM, then
    SIGKILL after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
