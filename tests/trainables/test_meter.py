"""The measuring actor on a local Ray whose one node offers a device resource: a measurement
and a per-layer table come back from it, named by its node, and the actor is shared."""

from __future__ import annotations

import pytest
import torch

from prunetune.budgets import get_cost
from prunetune.trainables import build_model
from prunetune.trainables.latency_table import grid_counts, layer_shapes
from prunetune.trainables.meter import measure_elsewhere, measured_table, meter

pytestmark = pytest.mark.integration
DEVICE = "device:local-test"


@pytest.fixture(scope="module")
def device_ray():
    import ray

    ray.init(address="local", num_cpus=1, resources={DEVICE: 1}, include_dashboard=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().get_node_id()
    finally:
        ray.shutdown()


def test_the_measuring_actor_measures_and_tables_on_its_node(device_ray, tmp_path):
    import ray

    model = build_model("resnet20", num_classes=10, input_size=8, width=0.25).eval()
    sample = torch.randn(1, 3, 8, 8)
    cost = get_cost("latency", on=DEVICE, warmup=0, repeats=2, max_repeats=2, cache=str(tmp_path))
    first = measure_elsewhere(cost, model, sample)
    again = measure_elsewhere(cost, model, sample)
    assert first.node == again.node == device_ray and first.repeats == 2 and not first.cached and again.cached
    assert ray.get(meter(DEVICE).check.remote("onnxruntime")) == ""
    assert "runtime 'tensorrt'" in ray.get(meter(DEVICE).check.remote("tensorrt"))
    groups, _ = layer_shapes(model, sample)
    table = measured_table(model, sample, cost, {g: grid_counts(c, 0.5, 1.0, 2) for g, c in groups.items()})
    assert table.about["node"] == device_ray and table.layer_sum({}) > 0
