"""Measuring devices: budgets that name the Ray node their cost is measured on (``on``).

Checked before anything is written or trained: the search must join a cluster (a private
local Ray offers no custom resource), a live node of it must offer each named resource, and
that node's measuring actor must be able to run the budget's runtime (e.g. ``onnxruntime``
installed there). Each failure is one line saying what is missing and how to start such a node.
"""

from __future__ import annotations

from collections.abc import Sequence

from prunetune.budgets import Budget
from prunetune.budgets.errors import BudgetError, ConfigError
from prunetune.search.config import SearchConfig
from prunetune.search.run.joining import init_ray, plugins_of

MEASURE_TIMEOUT_S = 120.0  # a measuring actor that has not started by then is refused


def placed_budgets(budgets: Sequence[Budget]) -> list[Budget]:
    """The budgets measured on a named node (``options.on``)."""
    return [b for b in budgets if b.options.get("on")]


def start_hint(resource: str, address: str) -> str:
    quoted = '{"' + resource + '": 1}'
    return f"start one on the device: ray start --address={address} --resources='{quoted}' --num-cpus=0"


def check_devices(config: SearchConfig) -> None:
    """Join the cluster (when a budget names a node) and refuse, in one line, a resource no live
    node offers or a runtime the measuring node cannot run. Leaves Ray initialised for the run."""
    placed = placed_budgets(config.budgets)
    if not placed:
        return
    if not config.address:
        resource = placed[0].options["on"]
        raise ConfigError(
            f"budget {placed[0].label} is measured on the node offering {resource!r}, but a private local "
            f"Ray has no such node; join a cluster with --address and {start_hint(resource, '<head address>')}"
        )
    import ray

    from prunetune.search.run.resources import alive_nodes
    from prunetune.trainables.meter import meter

    init_ray(config.address, budgets=config.budgets, plugins=plugins_of(config), quiet=True)
    nodes = alive_nodes()
    for budget in placed:
        resource, runtime = budget.options["on"], budget.options.get("runtime", "eager")
        if not any(node.get(resource, 0.0) >= 1 for node in nodes):
            raise ConfigError(
                f"budget {budget.label}: no node of the cluster at {config.address} offers resource "
                f"{resource!r}; {start_hint(resource, config.address)}"
            )
        try:
            refusal = ray.get(meter(resource).check.remote(runtime), timeout=MEASURE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise ConfigError(
                f"budget {budget.label}: the measuring actor on the node offering {resource!r} did not start "
                f"within {MEASURE_TIMEOUT_S:g} s; is another process holding that resource?"
            ) from None
        if refusal:
            raise BudgetError(f"budget {budget.label}: {refusal}")
