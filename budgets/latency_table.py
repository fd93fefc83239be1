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

For latency-friendly channel counts, :func:`steps_past` reads the times of the layers one group
sizes at every count (:func:`prunetune.trainables.latency_table.group_timings`) and names the
counts just past a step, where rounding down to ``round_to`` channels runs faster on the device;
:func:`profile_steps` picks those a profile sits on.
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

__all__ = ["LatencyTable", "Step", "TableLayer", "profile_steps", "steps_past"]


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


@dataclass(frozen=True)
class Step:
    """A channel count of ``group`` just past a latency step: ``count`` channels take ``ms``,
    the multiple of ``round_to`` below it (``lower``) takes ``lower_ms``."""

    group: str
    count: int
    ms: float
    lower: int
    lower_ms: float

    def __str__(self) -> str:
        saving = 1 - self.lower_ms / self.ms
        return f"{self.group}: {self.count} channels sit just past a step; {self.lower} run {saving:.0%} faster"


def steps_past(group: str, timings: Sequence[tuple[int, float]], round_to: int, tolerance: float = 0.03) -> list[Step]:
    """Counts of ``group`` (not multiples of ``round_to``) just past a latency step: their layers
    take more than the straight line between the multiples of ``round_to`` below and above would
    give, by over ``tolerance`` of the time at the multiple below (a kernel tiled by ``round_to``
    channels runs ``lower + 1`` channels about as slowly as ``lower + round_to``). Rounding such a
    count down changes latency on this device; a smooth ramp has no steps. ``timings`` are
    (count, ms) of the layers the group sizes."""
    at = dict(timings)
    found = []
    for count, ms in sorted(at.items()):
        lower = count - count % round_to
        upper = lower + round_to
        if not count % round_to or lower not in at or upper not in at:
            continue
        straight = at[lower] + (count - lower) / round_to * (at[upper] - at[lower])
        if ms - straight > tolerance * at[lower]:
            found.append(Step(group, count, ms, lower, at[lower]))
    return found


def profile_steps(kept: Mapping[str, int], steps: Sequence[Step]) -> list[Step]:
    """The steps a profile (kept channels per group) sits just past."""
    return [step for step in steps if kept.get(step.group) == step.count]
