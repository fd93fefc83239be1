"""Measuring a per-layer latency table: which groups size each layer, and the table's sum.

A stand-in latency that counts a model's conv and linear multiply-adds makes the check exact:
a layer's count is bilinear in its input and output channels, so the table, read at any kept
channels, must give exactly the count of the pruned model when it finds each layer's groups."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunetune.budgets.timing import Measurement
from prunetune.trainables import Profile, PruneSettings, apply_profile, build_model
from prunetune.trainables.latency_table import build_latency_table, grid_counts, layer_shapes


class CountingLatency:
    """Multiply-adds of convs and linears, as if they were milliseconds."""

    def measure_interval(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        total = 0

        def count(module, inputs, output) -> None:
            nonlocal total
            if isinstance(module, nn.Conv2d):
                total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] ** 2
            else:
                total += module.in_features * module.out_features

        hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            model.eval()(example_input[:1])
        for hook in hooks:
            hook.remove()
        return Measurement.exact(float(total))


@pytest.mark.parametrize(("name", "width"), [("resnet20", 0.5), ("mobilenet_v2", 1.0)])
def test_the_table_adds_up_to_the_pruned_model(name, width) -> None:
    model = build_model(name, num_classes=10, input_size=16, width=width).eval()
    sample = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    groups, shapes = layer_shapes(model, sample)
    assert any(len(s.axes) == 2 for s in shapes)  # a conv between two groups
    counts = {g: grid_counts(c, 0.3, 1.0, 3) for g, c in groups.items()}
    table = build_latency_table(model, sample, CountingLatency(), counts)
    pruned = copy.deepcopy(model)
    kept = apply_profile(pruned, Profile(dict.fromkeys(groups, 0.6)), sample, PruneSettings("l1"))
    assert table.layer_sum(kept) == pytest.approx(CountingLatency().measure_interval(pruned, sample).value)
    assert table.layer_sum({}) == pytest.approx(CountingLatency().measure_interval(model, sample).value)


def test_grid_counts_span_the_reachable_counts_on_the_channel_rule() -> None:
    assert grid_counts(64, 0.25, 1.0, 4, round_to=8) == (16, 32, 48, 64)
    assert grid_counts(4, 0.5, 1.0, 6) == (2, 3, 4)


def test_group_timings_time_exactly_the_layers_a_group_sizes() -> None:
    from prunetune.trainables.latency_table import group_timings

    model = build_model("resnet20", num_classes=10, input_size=8, width=0.25).eval()
    sample = torch.randn(1, 3, 8, 8)
    groups, _ = layer_shapes(model, sample)
    group = next(iter(groups))
    table = build_latency_table(model, sample, CountingLatency(), {g: (1, c) for g, c in groups.items()})
    timings = group_timings(model, sample, CountingLatency(), group, [1, 2, groups[group]])
    # Everything the group does not size is the same at every count: the table's sum differs by it.
    rest = {table.layer_sum({group: count}) - ms for count, ms in timings}
    assert len({round(r, 6) for r in rest}) == 1 and timings[0][1] < timings[-1][1]
