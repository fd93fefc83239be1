"""Trainable channel gates, one vector per coupled group, and the differentiable cost they imply.

The taper method (:mod:`prunetune.trainables.taper`) prunes by learning a gate ``g = sigmoid(theta)`` for
every channel of every prunable group. A group's gate multiplies that group's channels wherever
they are produced: after the BatchNorm that follows a producing conv, or after the conv (or
linear layer) itself when no BatchNorm follows. Every producer of a coupled group sees the same
gate vector, so the branches feeding a residual sum are scaled identically and the sum is too:
``g*a + g*b = g*(a + b)``. A depthwise conv tied to its input group is not gated again (its input
already is).

The forward pass uses the hard gate ``theta > 0`` with the gradient of ``sigmoid(theta)``
(straight-through; our choice, see docs/taper.md), so the gated model is always a pruned model:
at its 0/1 gates it computes exactly what the physically pruned model computes, and
:class:`SoftCost` (the analytic cost model with each group's kept channels replaced by the sum of
its gates) equals the pruned model's counted cost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from math import prod

import torch
from torch import nn

from prunetune.budgets.analytic import AnalyticCostModel
from prunetune.trainables.groups import PRUNABLE_TYPES, GroupInfo, ProfileError, build_graph

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _is_depthwise(module: nn.Module) -> bool:
    groups = getattr(module, "groups", 1)
    return groups > 1 and groups == module.in_channels == module.out_channels


def gate_points(
    model: nn.Module, example_input: torch.Tensor, groups: Sequence[GroupInfo]
) -> dict[str, tuple[str, ...]]:
    """Where each group's gate is applied: module names, keyed by group name.

    For every conv/linear that produces a group's channels, the BatchNorm of the same group that
    alone consumes its output, else the producer itself. Gating after the norm keeps the norm from
    undoing the gate, and a zero gate then removes the channel exactly as pruning it does.
    """
    graph = build_graph(model, example_input)
    modules = dict(model.named_modules())
    names = {module: name for name, module in modules.items()}
    points = {}
    for group in groups:
        members = set(group.modules)
        chosen = []
        for name in group.modules:
            module = modules[name]
            if not isinstance(module, PRUNABLE_TYPES) or _is_depthwise(module):
                continue
            outputs = graph.module2node[module].outputs
            follower = outputs[0].module if len(outputs) == 1 else None
            if isinstance(follower, NORM_TYPES) and names.get(follower) in members:
                chosen.append(names[follower])
            else:
                chosen.append(name)
        for name in chosen:
            if _out_channels(modules[name]) != group.channels:
                raise ProfileError(
                    f"group {group.name!r}: layer {name!r} has {_out_channels(modules[name])} channels, "
                    f"not the group's {group.channels}; gates need one channel per group index "
                    "(concatenating architectures are not supported by the taper method)"
                )
        points[group.name] = tuple(sorted(set(chosen), key=list(modules).index))
    return points


def _out_channels(module: nn.Module) -> int:
    if isinstance(module, NORM_TYPES):
        return module.num_features
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


class GroupGates(nn.Module):
    """One logit vector ``theta`` per group; ``values()`` are the gates (hard forward, soft grad).

    :meth:`attach` registers forward hooks that multiply every gate point's output by its group's
    gates. :meth:`fixed` temporarily replaces the gates by given values (hard 0/1 masks), e.g. to
    check the hardened model or in tests. The gates are ordinary parameters with their own
    optimiser; they never appear in the pruned model's state dict.
    """

    def __init__(self, groups: Sequence[GroupInfo], points: Mapping[str, Sequence[str]], init: float = 3.0) -> None:
        super().__init__()
        self.names = tuple(g.name for g in groups)
        self.points = {name: tuple(points[name]) for name in self.names}
        # ParameterDict keys may not contain dots; index by position, name by self.names.
        self.theta = nn.ParameterList(nn.Parameter(torch.full((g.channels,), float(init))) for g in groups)
        self._fixed: dict[str, torch.Tensor] | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def values(self) -> dict[str, torch.Tensor]:
        """The current gates by group name (differentiable in ``theta``)."""
        if self._fixed is not None:
            return self._fixed
        return {name: self._gate(theta) for name, theta in zip(self.names, self.theta)}

    @staticmethod
    def _gate(theta: torch.Tensor) -> torch.Tensor:
        # Straight-through: the forward pass sees the hard gate (theta > 0: keep), gradients
        # flow through sigmoid(theta). The gated network is always a pruned network, so the
        # cost of its hard gates is exactly the counted cost of the model it hardens into.
        soft = torch.sigmoid(theta)
        return (theta > 0).to(soft.dtype) + soft - soft.detach()

    def soft_values(self) -> dict[str, torch.Tensor]:
        """``sigmoid(theta)`` by group: the ranking used to harden (no gradient)."""
        return {name: torch.sigmoid(theta).detach() for name, theta in zip(self.names, self.theta)}

    def counts(self, values: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Soft kept channels per group: the sum of its gates."""
        values = self.values() if values is None else values
        return {name: gate.sum() for name, gate in values.items()}

    @torch.no_grad()
    def keep_on(self, floors: Mapping[str, int], margin: float = 0.01) -> None:
        """Keep at least ``floors[name]`` gates of each group on: its highest ``theta`` are raised
        to ``margin`` where they fell to or below 0. Called after every gate step, so the live
        network never loses a whole group (it would compute a constant) and always keeps the
        channels hardening keeps anyway."""
        on = torch.stack([(theta > 0).sum() for theta in self.theta]).tolist()  # one device sync per step
        for name, theta, count in zip(self.names, self.theta, on):
            keep = min(floors.get(name, 0), len(theta))
            if keep and count < keep:
                top = torch.topk(theta, keep).indices
                theta[top] = theta[top].clamp(min=margin)

    @contextmanager
    def fixed(self, values: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """Within the block the hooks apply ``values`` instead of ``sigmoid(theta)``."""
        previous, self._fixed = self._fixed, {k: v.detach().float() for k, v in values.items()}
        try:
            yield
        finally:
            self._fixed = previous

    def attach(self, model: nn.Module) -> None:
        """Gate ``model``'s gate points (idempotent: earlier hooks are removed first)."""
        self.detach_hooks()
        modules = dict(model.named_modules())
        for index, name in enumerate(self.names):
            for point in self.points[name]:
                self._handles.append(modules[point].register_forward_hook(self._hook(index, name)))

    def detach_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, index: int, name: str):
        def apply(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            gate = self._fixed[name] if self._fixed is not None else self._gate(self.theta[index])
            shape = (1, -1) + (1,) * (output.dim() - 2)
            return output * gate.to(output.dtype).view(shape)

        return apply


class SoftCost:
    """One cost of the analytic model as a differentiable function of soft channel counts.

    ``cost_model`` comes from :func:`prunetune.trainables.structure.extract_cost_model`; each of its terms
    is ``coef * prod(kept[g])``. Calling with soft counts (tensors, the sums of gates) returns a
    tensor; at integer counts it equals ``cost_model.evaluate`` and thus the counted cost.
    """

    def __init__(self, cost_model: AnalyticCostModel, cost: str = "macs") -> None:
        merged: dict[tuple[str, ...], int] = {}
        for term in cost_model.terms:
            if term.cost == cost:
                merged[term.groups] = merged.get(term.groups, 0) + term.coef
        if not merged:
            raise ProfileError(
                f"the analytic cost model has no {cost!r} terms; it models {sorted({t.cost for t in cost_model.terms})}"
            )
        self.cost = cost
        self.channels = dict(cost_model.channels)
        self.monomials = tuple(merged.items())
        self.dense = float(sum(coef * prod(self.channels[g] for g in groups) for groups, coef in self.monomials))

    def __call__(self, counts: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float64)
        for groups, coef in self.monomials:
            value = torch.tensor(float(coef), dtype=torch.float64)
            for group in groups:
                value = value * torch.as_tensor(counts.get(group, self.channels[group]), dtype=torch.float64)
            total = total + value
        return total
