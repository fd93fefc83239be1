"""Measuring a per-layer latency table (:class:`prunetune.budgets.latency_table.LatencyTable`).

Each conv (with its BatchNorm and ReLU) and linear layer of the dense model is timed alone, in
the latency cost's runtime and on its device, at a grid of the channel counts its input and
output groups can keep. Which group sizes which side of a layer is read by probing: the model
is pruned to a few random profiles and each layer's channel counts are matched to the groups'
kept counts. Layers of the same shape at the same counts are timed once (a ResNet stage's
blocks share them), and through the latency cost's cache when it has one, so a table is
measured once per device, runtime, architecture, input size and batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunetune.budgets.analytic import channels_kept
from prunetune.budgets.latency_table import LatencyTable, TableLayer
from prunetune.trainables.groups import PruneSettings, apply_profile, find_groups
from prunetune.trainables.profiles import Profile

__all__ = ["LayerShape", "build_latency_table", "grid_counts", "group_timings", "layer_shapes"]

MIN_PROBES, MAX_PROBES = 3, 24  # random profiles that tell which group sizes each layer


@dataclass(frozen=True)
class LayerShape:
    """What a layer's time depends on, besides its channel counts."""

    name: str
    kind: str  # "conv" or "linear"
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    depthwise: bool = False
    spatial: tuple[int, ...] = ()
    in_group: str | None = None
    out_group: str | None = None
    dense_in: int = 0
    dense_out: int = 0

    @property
    def axes(self) -> tuple[str, ...]:
        if self.depthwise or (self.in_group and self.in_group == self.out_group):
            return (self.in_group,) if self.in_group else ()
        return tuple(g for g in (self.in_group, self.out_group) if g)

    def snippet(self, c_in: int, c_out: int) -> tuple[nn.Module, torch.Tensor]:
        """The layer alone at ``c_in`` -> ``c_out`` channels, and an input for it."""
        if self.kind == "linear":
            return nn.Linear(c_in, c_out), torch.randn(1, c_in)
        groups = c_in if self.depthwise else 1
        conv = nn.Conv2d(c_in, c_out, self.kernel, self.stride, self.padding, groups=groups, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU()), torch.randn(1, c_in, *self.spatial)


def layer_shapes(
    model: nn.Module, example_input: torch.Tensor, seed: int = 0
) -> tuple[dict[str, int], list[LayerShape]]:
    """The model's groups (name -> channels) and each conv and linear layer's shape with the
    groups that size its input and output (None: a side no profile changes)."""
    groups = {g.name: g.channels for g in find_groups(model, example_input)}
    spatial: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            spatial.setdefault(name, tuple(inputs[0].shape[2:]))

        return hook

    handles = [
        m.register_forward_hook(record(n)) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.eval()(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
    sides = _probe(model, example_input, groups, seed)
    shapes = []
    for name, module in model.named_modules():
        if name not in spatial:
            continue
        in_group, out_group = sides[name]
        if isinstance(module, nn.Linear):
            shapes.append(LayerShape(name, "linear", in_group=in_group, out_group=out_group,
                                     dense_in=module.in_features, dense_out=module.out_features))  # fmt: skip
            continue
        depthwise = module.groups > 1 and module.groups == module.in_channels
        shapes.append(
            LayerShape(name, "conv", tuple(module.kernel_size), tuple(module.stride), tuple(module.padding),
                       depthwise, spatial[name], in_group, out_group, module.in_channels, module.out_channels)
        )  # fmt: skip
    return groups, shapes


def _probe(
    model: nn.Module, example_input: torch.Tensor, groups: Mapping[str, int], seed: int
) -> dict[str, tuple[str | None, str | None]]:
    """Per layer, the groups whose kept count its input and output channels follow."""
    rng = np.random.default_rng(seed)
    dense = dict(model.named_modules())
    candidates: dict[str, list[set[str | None] | None]] = {}
    for probe in range(MAX_PROBES):
        ratios = {g: float(rng.uniform(0.2, 0.95)) for g in groups}
        pruned = copy.deepcopy(model)
        kept = apply_profile(pruned, Profile(ratios), example_input[:1], PruneSettings("l1"))
        for name, module in pruned.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            slot = candidates.setdefault(name, [None, None])
            for side, (now, before) in enumerate(zip(_sides(module), _sides(dense[name]))):
                found: set[str | None] = {g for g, k in kept.items() if k == now}  # the true group is always in
                if now == before:
                    found.add(None)
                slot[side] = found if slot[side] is None else slot[side] & found  # type: ignore[operator]
        # Small groups keep equal counts by chance: probe until every side names one group.
        if probe + 1 >= MIN_PROBES and all(len(s or ()) == 1 for sides in candidates.values() for s in sides):
            break
    return {name: (_pick(sides[0] or set()), _pick(sides[1] or set())) for name, sides in candidates.items()}


def _sides(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return module.in_channels, module.out_channels


def _pick(found: set[str | None]) -> str | None:
    named = sorted(g for g in found if g is not None)
    return named[0] if named else None


def grid_counts(
    channels: int, low: float, high: float, points: int, round_to: int = 1, min_channels: int = 1
) -> tuple[int, ...]:
    """Up to ``points`` kept counts, evenly spread over those the ratios ``[low, high]`` give."""
    reachable = sorted(
        {channels_kept(channels, r, round_to, min_channels) for r in np.linspace(low, high, 4 * channels + 1)}
    )
    if len(reachable) <= points:
        return tuple(reachable)
    picks = np.linspace(0, len(reachable) - 1, points).round().astype(int)
    return tuple(reachable[i] for i in sorted(set(picks)))


def build_latency_table(
    model: nn.Module,
    example_input: torch.Tensor,
    cost,
    counts: Mapping[str, Sequence[int]],
    *,
    about: Mapping[str, object] | None = None,
) -> LatencyTable:
    """Time every layer of ``model`` with the latency cost ``cost`` (its runtime, device,
    batch, threads and cache) at the grid ``counts`` (kept channel counts per group)."""
    groups, shapes = layer_shapes(model, example_input)
    timed: dict[tuple, float] = {}

    def time_at(shape: LayerShape, c_in: int, c_out: int) -> float:
        key = (shape.kind, shape.kernel, shape.stride, shape.padding, shape.depthwise, shape.spatial, c_in, c_out)
        if key not in timed:
            snippet, x = shape.snippet(c_in, c_out)
            timed[key] = cost.measure_interval(snippet, x).value
        return timed[key]

    layers = []
    for shape in shapes:
        axes = shape.axes
        grids = tuple(tuple(counts[g]) for g in axes)
        ms = []
        for point in _points(grids):
            at = dict(zip(axes, point))
            c_in = at.get(shape.in_group, shape.dense_in) if shape.in_group else shape.dense_in
            c_out = at.get(shape.out_group, shape.dense_out) if shape.out_group else shape.dense_out
            if shape.depthwise:
                c_out = c_in
            ms.append(time_at(shape, c_in, c_out))
        layers.append(TableLayer(shape.name, axes, grids, tuple(ms)))
    return LatencyTable(groups, tuple(layers), 0.0, dict(about or {}))


def group_timings(
    model: nn.Module, example_input: torch.Tensor, cost, group: str, counts: Sequence[int]
) -> list[tuple[int, float]]:
    """(count, ms) of the layers ``group`` sizes, every other group dense, at each of ``counts``
    (every count, for :func:`prunetune.budgets.latency_table.steps_past`)."""
    _, shapes = layer_shapes(model, example_input)
    sized = [s for s in shapes if group in s.axes]
    timings = []
    for count in counts:
        total = 0.0
        for shape in sized:
            c_in = count if shape.in_group == group else shape.dense_in
            c_out = c_in if shape.depthwise else (count if shape.out_group == group else shape.dense_out)
            snippet, x = shape.snippet(c_in, c_out)
            total += cost.measure_interval(snippet, x).value
        timings.append((count, total))
    return timings


def _points(grids: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    points: list[tuple[int, ...]] = [()]
    for grid in grids:
        points = [(*p, c) for p in points for c in grid]
    return points
