"""The exact analytic cost model: MACs and parameters of any profile without building it.

A pruned model's cost is a sum of per-layer contributions, and every contribution is a
monomial in the kept channel counts of at most two groups: a conv's multiply-adds are
``k_h * k_w * H_out * W_out * in * out / groups``, its parameters ``k_h * k_w * in * out /
groups (+ out)``, a BatchNorm's ``2 * C * H * W`` ops and ``2 * C`` parameters, a ReLU's
``C * H * W`` ops. An :class:`AnalyticCostModel` holds those monomials as :class:`Term` values:
a fixed integer coefficient (kernel size, spatial size, unpruned channel counts folded in) times
the kept channels of the groups it names. :meth:`AnalyticCostModel.evaluate` sums them in a few
microseconds, in plain integers, so the result equals counting the pruned model exactly.

The terms are extracted once from the dense torch model by
:func:`prunetune.trainables.structure.extract_cost_model`; this module needs no torch, so searchers can
screen profiles anywhere. :func:`channels_kept` is the one rule that turns a keep ratio into a
channel count, shared by the pruner and the cost model so both see the same model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ANALYTIC_COSTS", "AnalyticCostModel", "Term", "channels_kept"]

ANALYTIC_COSTS: tuple[str, ...] = ("macs", "params")
"""Cost keys an :class:`AnalyticCostModel` evaluates, as the ``macs``/``params`` costs count."""


def channels_kept(channels: int, ratio: float, round_to: int = 1, min_channels: int = 1) -> int:
    """Channels a group of ``channels`` keeps at keep ratio ``ratio``: the arithmetic only.

    Round ``ratio * channels`` to the nearest multiple of ``round_to`` (at least one
    multiple), then clamp to ``[min_channels, channels]``. Callers validate the ratio first
    (:func:`prunetune.trainables.profiles.kept_channels` raises for a ratio that keeps no channel).
    """
    units = max(1, round(ratio * channels / round_to))
    return int(min(channels, max(min_channels, units * round_to)))


@dataclass(frozen=True)
class Term:
    """One layer's contribution to one cost: ``coef * prod(kept[g] for g in groups)``.

    ``layer`` names where it comes from (``"layer1.0.conv1"``, ``"fc.weight"``), for reading
    and debugging only. ``groups`` may be empty (a layer no profile changes) and may repeat a
    group (a layer whose input and output channels are the same group).
    """

    cost: str
    layer: str
    coef: int
    groups: tuple[str, ...] = ()

    def value(self, kept: Mapping[str, int]) -> int:
        return self.coef * math.prod(kept[g] for g in self.groups)


@dataclass(frozen=True)
class AnalyticCostModel:
    """MACs and parameters of a model as exact functions of each group's kept channels.

    ``channels`` is every prunable group's dense channel count, in the model's group order;
    ``terms`` the per-layer monomials. Built by ``prunetune.trainables.structure.extract_cost_model`` or
    by hand (tests build small synthetic ones). Immutable and picklable: searchers carry it.
    """

    channels: Mapping[str, int]
    terms: tuple[Term, ...]
    _compiled: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", {str(k): int(v) for k, v in self.channels.items()})
        object.__setattr__(self, "terms", tuple(self.terms))
        unknown = sorted({g for t in self.terms for g in t.groups} - set(self.channels))
        if unknown:
            raise ValueError(f"terms name group(s) {unknown} missing from channels")
        object.__setattr__(self, "_compiled", self._compile())

    def _compile(self) -> dict[str, tuple[tuple[int, tuple[int, ...]], ...]]:
        # Terms with the same groups share one coefficient: evaluation touches each
        # distinct monomial once (a ResNet has ~3x fewer monomials than layers' terms).
        index = {name: i for i, name in enumerate(self.channels)}
        merged: dict[str, dict[tuple[int, ...], int]] = {cost: {} for cost in ANALYTIC_COSTS}
        for term in self.terms:
            key = tuple(sorted(index[g] for g in term.groups))
            bucket = merged.setdefault(term.cost, {})
            bucket[key] = bucket.get(key, 0) + term.coef
        return {cost: tuple((c, k) for k, c in bucket.items()) for cost, bucket in merged.items()}

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.channels)

    def evaluate(self, kept: Mapping[str, int]) -> dict[str, float]:
        """Every cost at ``kept`` channels per group (groups not named stay dense).

        Keys are :data:`ANALYTIC_COSTS` (``"macs"``, ``"params"``), values what
        ``budgets.get_cost(key)`` counts on the pruned model.
        """
        unknown = set(kept) - set(self.channels)
        if unknown:
            raise KeyError(f"unknown group(s) {sorted(unknown)}; known: {list(self.channels)[:6]}")
        counts = [int(kept.get(name, dense)) for name, dense in self.channels.items()]
        return {
            cost: float(sum(coef * math.prod(counts[i] for i in key) for coef, key in monomials))
            for cost, monomials in self._compiled.items()
        }

    def evaluate_batch(self, kept: np.ndarray) -> dict[str, np.ndarray]:
        """Every cost of many profiles at once, exactly as :meth:`evaluate` gives them.

        ``kept`` is an integer array ``(n, len(groups))`` of kept channels in group order;
        the sums are taken in int64, so they are exact below 2**63 (and the float64 results
        below 2**53, ~9e15 MACs).
        """
        counts = np.asarray(kept, dtype=np.int64).reshape(-1, len(self.channels))
        result = {}
        for cost, monomials in self._compiled.items():
            total = np.zeros(len(counts), dtype=np.int64)
            for coef, key in monomials:
                term = np.full(len(counts), coef, dtype=np.int64)
                for i in key:
                    term *= counts[:, i]
                total += term
            result[cost] = total.astype(np.float64)
        return result

    def dense(self) -> dict[str, float]:
        """The costs of the unpruned model."""
        return self.evaluate({})

    def by_layer(self, kept: Mapping[str, int], cost: str = "macs") -> dict[str, int]:
        """One cost split by layer at ``kept`` channels (for shares, reports and debugging)."""
        full = {name: int(kept.get(name, dense)) for name, dense in self.channels.items()}
        shares: dict[str, int] = {}
        for term in self.terms:
            if term.cost == cost:
                shares[term.layer] = shares.get(term.layer, 0) + term.value(full)
        return shares
