"""A per-layer latency table: a profile's latency predicted without building or timing it.

For one device, runtime, architecture, input size and batch, each prunable layer (a conv with
its BatchNorm and ReLU, or a linear layer) was timed alone at a grid of its input and output
channel counts (the counts of the groups on either side of it, its neighbours). A profile's
predicted latency is the sum, over layers, of each layer's time at the profile's kept channels
(interpolated linearly between grid points), plus a constant fitted on whole-model
measurements (what the table leaves out: adds, pooling, the runtime's per-call overhead).

:class:`LatencyTable` is torch-free and picklable, like the exact analytic cost model, so a
searcher can screen profiles by predicted latency before any trial;
:func:`prunetune.trainables.latency_table.build_latency_table` measures one. Confirmation
always measures the real model.
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

__all__ = ["LatencyTable", "TableLayer"]


@dataclass(frozen=True)
class TableLayer:
    """One layer's times (ms) over a grid of channel counts.

    ``axes`` names the groups whose kept channels set the layer's size (none: a layer no
    profile changes; one: e.g. a depthwise conv whose input and output are one group, or a
    layer with one fixed side; two: input group, output group). ``counts[i]`` are the grid's
    channel counts along axis ``i``, ascending; ``ms`` is the grid flattened row-major."""

    name: str
    axes: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    ms: tuple[float, ...]

    def predict(self, kept: Mapping[str, int]) -> float:
        if not self.axes:
            return self.ms[0]
        if len(self.axes) == 1:
            return _interpolate(self.counts[0], self.ms, kept[self.axes[0]])
        rows, cols = self.counts
        row = [
            _interpolate(cols, self.ms[i * len(cols) : (i + 1) * len(cols)], kept[self.axes[1]])
            for i in range(len(rows))
        ]
        return _interpolate(rows, row, kept[self.axes[0]])


def _interpolate(xs: Sequence[int], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear in ``xs`` (ascending); held flat beyond the ends."""
    if len(xs) == 1 or x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x) - 1
    share = (x - xs[i]) / (xs[i + 1] - xs[i])
    return ys[i] + share * (ys[i + 1] - ys[i])


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer times of one architecture on one device and runtime, and the fitted constant.

    ``about`` records what it was measured for (device fingerprint, runtime, architecture,
    input size, batch); :meth:`predict` takes kept channels per group (groups not named stay
    at their dense ``channels``)."""

    channels: Mapping[str, int]
    layers: tuple[TableLayer, ...]
    constant: float = 0.0
    about: Mapping[str, object] | None = None

    def layer_sum(self, kept: Mapping[str, int]) -> float:
        full = {name: int(kept.get(name, dense)) for name, dense in self.channels.items()}
        return sum(layer.predict(full) for layer in self.layers)

    def predict(self, kept: Mapping[str, int]) -> float:
        """Predicted latency (ms) at ``kept`` channels: the layers' sum plus the constant."""
        return self.layer_sum(kept) + self.constant

    def fitted(self, kept: Sequence[Mapping[str, int]], measured: Sequence[float]) -> LatencyTable:
        """This table with its constant set to the median gap between whole-model measurements
        and the layers' sum, over the profiles ``kept`` (the dense model's ``{}`` counts too)."""
        gaps = [m - self.layer_sum(k) for k, m in zip(kept, measured, strict=True)]
        return replace(self, constant=statistics.median(gaps))

    def steps(self, group: str, round_to: int) -> list[tuple[int, float]]:
        """Per kept count of ``group`` on its grid, the table's summed time of the layers it
        sizes, others dense: where rounding that group to ``round_to`` would change latency."""
        axis_counts = sorted(
            {c for layer in self.layers for a, cs in zip(layer.axes, layer.counts) if a == group for c in cs}
        )
        return [(c, self.layer_sum({group: c})) for c in axis_counts if c % round_to == 0 or c == axis_counts[-1]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LatencyTable:
        blob = json.loads(text)
        layers = tuple(
            TableLayer(
                layer["name"],
                tuple(layer["axes"]),
                tuple(tuple(c) for c in layer["counts"]),
                tuple(layer["ms"]),
            )
            for layer in blob["layers"]
        )
        return cls(blob["channels"], layers, blob["constant"], blob.get("about"))
