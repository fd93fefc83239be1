"""Whether the cluster can run one trial, checked before any trial is queued; and a bounded
connection to a cluster.

Tune queues a trial whose resources no node has and waits for it for ever: an autoscaler might
add such a node. prunetune checks instead. A request that no node can hold is a ConfigError
naming the request and the largest node, unless ``resources.wait_s`` says the cluster
autoscales: then the driver asks the autoscaler for such a node (``request_resources``), says
it is waiting and for how long, and refuses the search when none came. A private local Ray is
checked before the base model is trained (it will have this machine's CPUs and GPUs); a cluster
after the driver joins it, before the manifest is written.

An address that accepts no connection is refused after :data:`CONNECT_TIMEOUT_S`, instead of
Ray's minutes of retries.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from prunetune.budgets.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0
POLL_S = 5.0  # how often a waiting driver looks for a new node
_DEFAULT_PORTS = {"ray://": 10001, "": 6379}  # Ray Client's and the GCS's default ports

Resources = Mapping[str, float]


def trial_request(cpu: float, gpu: float) -> dict[str, float]:
    """The resources Ray must find on one node for one trial (zero amounts left out)."""
    return {key: amount for key, amount in (("CPU", cpu), ("GPU", gpu)) if amount > 0}


def fits(request: Resources, node: Resources) -> bool:
    return all(node.get(key, 0.0) >= amount for key, amount in request.items())


def _describe(resources: Resources) -> str:
    return f"{resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs"


def _largest(nodes: Sequence[Resources]) -> str:
    if not nodes:
        return "has no alive node"
    best = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
    return f"has at most {_describe(best)} on one node" if len(nodes) > 1 else f"has {_describe(best)}"


def unschedulable(request: Resources, nodes: Sequence[Resources], where: str) -> ConfigError:
    """The error for a trial request that none of ``nodes`` can hold."""
    return ConfigError(
        f"a trial asks for resources {_describe(request)} (resources.cpu, resources.gpu) but {where} "
        f"{_largest(nodes)}, so it would wait for ever; lower the request (--set resources.cpu=..., "
        f"--set resources.gpu=...), join a cluster that has such a node (--address), or, if the "
        f"cluster autoscales, set resources.wait_s to how long to wait for one"
    )


def local_resources() -> dict[str, float]:
    """What a private local Ray will have: this machine's CPUs (container limits included, as
    Ray counts them) and the GPUs torch sees."""
    import torch
    from ray._private.utils import get_num_cpus

    return {"CPU": float(get_num_cpus()), "GPU": float(torch.cuda.device_count())}


def check_local(cpu: float, gpu: float) -> None:
    """A ConfigError when a private local Ray could never run one trial of this size."""
    request = trial_request(cpu, gpu)
    if not fits(request, local_resources()):
        raise unschedulable(request, [local_resources()], "this machine (a private local Ray)")


def alive_nodes() -> list[dict[str, float]]:
    """The total resources of every alive node of the Ray cluster this driver joined."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node["Alive"]]


def await_fit(
    request: Resources,
    wait_s: float,
    where: str,
    *,
    nodes: Callable[[], Sequence[Resources]] = alive_nodes,
    ask: Callable[[Resources], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once a node of the cluster can hold ``request``; wait at most ``wait_s`` for one,
    asking the autoscaler once (``ask``, default Ray's ``request_resources``), then raise the
    :func:`unschedulable` error. ``wait_s`` 0 refuses at once."""
    current = nodes()
    if any(fits(request, node) for node in current):
        return
    if wait_s <= 0:
        raise unschedulable(request, current, where)
    (ask or _ask_autoscaler)(request)
    print(
        f"waiting up to {wait_s:g} s (resources.wait_s) for {where} to add a node with {_describe(request)}",
        file=sys.stderr,
        flush=True,
    )
    deadline = clock() + wait_s
    while clock() < deadline:
        sleep(min(POLL_S, max(0.0, deadline - clock())))
        current = nodes()
        if any(fits(request, node) for node in current):
            return
    raise unschedulable(request, current, f"{where}, after waiting {wait_s:g} s,")


def _ask_autoscaler(request: Resources) -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[dict(request)])  # a no-op on a cluster without an autoscaler


def check_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A ConfigError when nothing accepts a connection at ``address`` within ``timeout_s``.

    ``auto`` (the cluster this machine's ``ray start`` joined) and a private local Ray
    (no address) are Ray's to find."""
    if not address or address in ("auto", "local"):
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        raise ConfigError(
            f"no Ray cluster answers at --address {address!r} ({host}:{port}: {reason} within {timeout_s:g} s); "
            f"start it (`ray start --head`) or correct the address, e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001"
        ) from None


def _host_port(address: str) -> tuple[str, int]:
    scheme = "ray://" if address.startswith("ray://") else ""
    rest = address.removeprefix(scheme)
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", str(_DEFAULT_PORTS[scheme]))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, ray://10.0.0.5:10001, or auto)")
    return host.strip("[]"), int(port)
