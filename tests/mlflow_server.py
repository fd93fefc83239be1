"""A real ``mlflow server`` on 127.0.0.1 for tests: SQLite backend, proxied artifact root.

:func:`start_mlflow_server` returns once ``/health`` answers (bounded wait); :func:`stop` ends
the server by its PID (and its worker children, which share its process group).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    uri: str
    process: subprocess.Popen
    directory: Path
    log: Path


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``url``/health until it answers 200, the process dies, or the bounded wait ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)  # polling interval while waiting for a condition, not a fixed wait
    raise RuntimeError(f"mlflow server at {url} did not answer /health within {timeout_s} s: {log.read_text()[-2000:]}")


def start_mlflow_server(directory: Path, port: int | None = None) -> MlflowServer:
    """A server over ``directory``'s store; ``port`` to start it again where it was."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = directory / "server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{directory / 'mlflow.db'}",
        "--artifacts-destination",
        str(directory / "artifacts"),
        "--workers",
        "1",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", process, directory, log)
    try:
        wait_healthy(server.uri, process, log)
    except RuntimeError:
        stop(server.process)
        raise
    return server


def stop(process: subprocess.Popen) -> None:
    """End a process we started, and the workers in its own session, by its PID."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # its session: started with start_new_session
        try:  # uvicorn waits out open keep-alive connections: up to ~25 s, for nothing a test reads
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
