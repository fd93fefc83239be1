"""A real multi-node Ray cluster on loopback: one head and two one-CPU worker nodes.

Started with ``ray start`` like a user's cluster, every node on 127.0.0.2 (``ray start`` swaps
127.0.0.1 for the machine's other interface) with its own short ``--temp-dir``, dashboard agent
port and working directory, token auth off on every node. Stopped by PID (SIGKILL: SIGTERM
leaves gcs_server and raylet running), never with ``ray stop``, which would stop other people's
clusters on this machine. tests/conftest.py loads this module as a pytest plugin, so a test
takes ``ray_cluster`` as an argument like any fixture.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NODE_IP = "127.0.0.2"
RAY = str(Path(sys.executable).parent / "ray")
ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}

# Runs in a subprocess so the test process never joins the cluster (other tests start their
# own local Ray in this process). Waits for ``want`` live nodes, prints what Ray reports.
_NODES_SCRIPT = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.time() + 60
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]) or time.time() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "socket": n["RayletSocketName"],
                   "cpus": n["Resources"].get("CPU", 0)} for n in alive]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str, str]]:
    """Every process on this machine: pid -> (parent pid, name, command line + cwd). Linux /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            text = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            with contextlib.suppress(OSError):
                text += " " + os.readlink(entry / "cwd")
        except (OSError, ValueError):
            continue  # gone meanwhile
        table[int(entry.name)] = (ppid, name, text)
    return table


def env() -> dict[str, str]:
    """The environment for every Ray process, driver and CLI call of the cluster."""
    blob = {**os.environ, **ENV}
    blob.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # "0" refuses any multi-node cluster
    return blob


@dataclass
class Node:
    name: str
    directory: Path  # --temp-dir and working directory: every process of the node points here
    node_id: str = ""
    pids: set[int] = field(default_factory=set)

    def processes(self) -> dict[int, str]:
        """This node's live processes (pid -> name): those naming or running in its directory,
        every PID seen before (agents rename themselves and outlive their raylet), and all
        their descendants."""
        table = _processes()
        found = {pid for pid, (_, _, text) in table.items() if str(self.directory) in text}
        found |= self.pids & table.keys()
        grew = True
        while grew:
            children = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
            found |= children
            grew = bool(children)
        return {pid: table[pid][1] for pid in found}

    def remember(self) -> None:
        self.pids |= set(self.processes())

    def kill(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class LocalCluster:
    address: str
    head: Node
    workers: list[Node]
    reported: list[dict]  # what Ray reports about its nodes: id, ip, socket, cpus
    device: Node | None = None  # a node offering a custom resource and no CPU (a deployment device)

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.workers, *([self.device] if self.device else [])]

    def worker(self, node_id: str) -> Node:
        return next(n for n in self.workers if n.node_id == node_id)


def _ray_start(node: Node, *args: str) -> str:
    node.directory.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [
            RAY,
            "start",
            f"--node-ip-address={NODE_IP}",
            f"--temp-dir={node.directory}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=node.directory,
        env=env(),
    )
    node.remember()
    assert out.returncode == 0, f"ray start ({node.name}) failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out.stdout


def start_cluster(root: Path, workers: int = 2, device: str | None = None) -> LocalCluster:
    """Head (no CPUs), ``workers`` one-CPU nodes and, with ``device``, a node with no CPU that
    offers one unit of the custom resource ``device`` (where a measuring actor runs)."""
    port = free_port()
    head = Node("head", root / "h")
    # The head takes no trials (0 CPUs): trials land on the one-CPU worker nodes only.
    _ray_start(
        head,
        "--head",
        f"--port={port}",
        "--num-cpus=0",
        "--include-dashboard=false",
        f"--ray-client-server-port={free_port()}",
    )
    address = f"{NODE_IP}:{port}"
    nodes = [Node(f"worker{i + 1}", root / f"w{i + 1}") for i in range(workers)]
    cluster = LocalCluster(address, head, nodes, [])
    for node in nodes:
        _ray_start(node, f"--address={address}", "--num-cpus=1")
    if device:
        cluster.device = Node("device", root / "d")
        _ray_start(cluster.device, f"--address={address}", "--num-cpus=0", f"--resources={json.dumps({device: 1})}")
    out = subprocess.run(
        [sys.executable, "-c", _NODES_SCRIPT, address, str(len(cluster.nodes))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        cwd=root,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    cluster.reported = json.loads(out.stdout.strip().splitlines()[-1])
    for node in cluster.nodes:
        match = [r for r in cluster.reported if str(node.directory) in r["socket"]]
        assert match, f"node {node.name} did not join: {cluster.reported}"
        node.node_id = match[0]["id"]
        node.remember()
    return cluster


@pytest.fixture(scope="module")
def ray_cluster():
    """Head + two one-CPU workers on 127.0.0.2, shared by the tests of one module."""
    root = Path(tempfile.mkdtemp(prefix="pt8", dir="/tmp"))  # short: unix socket paths are limited
    cluster = None
    try:
        cluster = start_cluster(root)
        for reported in cluster.reported:  # no traffic may leave the loopback interface
            assert ipaddress.ip_address(reported["ip"]).is_loopback, reported
        yield cluster
    finally:
        nodes = (
            cluster.nodes if cluster else [Node("head", root / "h"), Node("w1", root / "w1"), Node("w2", root / "w2")]
        )
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)
