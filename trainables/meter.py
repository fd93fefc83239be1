"""The measuring actor: latency measured on the deployment device, not where a trial trains.

A budget whose cost names a Ray custom resource (``options: {on: device:orin}``) is measured by
one :class:`Meter` actor on a node that offers that resource (``ray start --resources
'{"device:orin": 1}'``). The actor holds one unit of the resource and runs one call at a time
(Ray's default for an actor), so every model is measured alone on its device, for every trial of
every search that asks: it is named by the resource, detached and looked up by name, so the
searches of one cluster share it and its cache (:mod:`prunetune.budgets.latency_cache`, in the
device node's folder). Trials train wherever Ray puts them and send the pruned model here.

Give the device node no CPUs for trials (``--num-cpus=0``) so nothing trains beside a
measurement; the actor itself asks for no CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunetune.budgets.costs import CostFunction
from prunetune.budgets.errors import BudgetError
from prunetune.budgets.latency_table import LatencyTable
from prunetune.budgets.runtimes import get_runtime
from prunetune.budgets.timing import Measurement
from prunetune.trainables.latency_table import build_latency_table

NAMESPACE = "prunetune"
_PREFIX = "prunetune-meter:"


class Meter:
    """Measures costs on this node; created by :func:`meter` only."""

    def __init__(self, resource: str) -> None:
        import ray

        self.resource = resource
        self.node = ray.get_runtime_context().get_node_id()

    def check(self, runtime: str) -> str:
        """``""`` when this node can measure in ``runtime``, else the one-line reason."""
        try:
            get_runtime(runtime).check_available()
        except BudgetError as error:
            return f"the node offering {self.resource!r} cannot measure: {error}"
        return ""

    def node_id(self) -> str:
        return self.node

    def measure(self, cost: Any, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        """``cost``'s figure and interval for ``model``, measured (or read from the cache) here."""
        torch.set_num_threads(max(1, int(getattr(cost, "threads", 1))))
        return cost.measure_interval(model, example_input).with_(node=self.node)

    def table(self, cost: Any, model: nn.Module, example_input: torch.Tensor, counts: dict) -> Any:
        """The per-layer latency table of ``model``, measured here."""
        torch.set_num_threads(max(1, int(getattr(cost, "threads", 1))))
        return build_latency_table(model, example_input, cost, counts, about={"node": self.node})


def meter(resource: str):
    """The measuring actor for ``resource``: the running one, or a new one on a node offering it."""
    import ray

    return (
        ray.remote(Meter)
        .options(
            name=_PREFIX + resource,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            resources={resource: 1},
        )
        .remote(resource)
    )


def measure_elsewhere(cost: CostFunction, model: nn.Module, example_input: torch.Tensor) -> Measurement:
    """Measure ``cost`` (which names a node by ``on``) on its measuring actor and wait for it:
    the ``elsewhere`` link :func:`prunetune.budgets.measure_intervals` takes. Outside Ray (a
    trial run by hand) there is no device to ask: a BudgetError."""
    import ray

    resource = cost.on  # type: ignore[attr-defined]
    if not ray.is_initialized():
        raise BudgetError(f"cost {cost!r} is measured on the Ray node offering {resource!r}; run it in a Ray search")
    try:
        return ray.get(meter(resource).measure.remote(cost, model, example_input.cpu()))
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, BudgetError):
            raise error.cause from None
        raise


def measured_table(model: nn.Module, example_input: torch.Tensor, cost: Any, counts: dict) -> LatencyTable:
    """:func:`~prunetune.trainables.latency_table.build_latency_table`, on the measuring actor
    of the node ``cost.on`` names when it names one (the table is then the device's), else here."""
    if not getattr(cost, "on", None):
        return build_latency_table(model, example_input, cost, counts)
    import ray

    counts = {group: list(grid) for group, grid in counts.items()}
    return ray.get(meter(cost.on).table.remote(cost, model, example_input, counts))
