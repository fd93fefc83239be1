"""Extracting the exact analytic cost model (:class:`budgets.AnalyticCostModel`) from a model.

Every layer that ``torch_pruning.utils.count_ops_and_params`` counts contributes monomials
whose factors are integers read off the layer and its input/output tensors (kernel size, input
channels, output elements, ...), exactly as that counter's hooks compute them; every parameter
contributes the product of its shape. Each factor is either fixed or proportional to the kept
channels of one group. Which group, and in what proportion, is read by *probing*: the model is
pruned (with :func:`prunetune.trainables.groups.apply_profile`, the pruner trials use) to a few probe
profiles in which every group keeps a distinct fraction of its channels, and each factor's
change names its group. Probing sees through everything the dependency graph couples, including
what the graph does not list as a module (ReLU and pooling layers, ``flatten`` before a
classifier, depthwise convs tied to their input, squeeze-excitation scales).

The model is then checked once against counting an actually pruned model at a profile unlike the
probes; an architecture whose costs are not such monomials (e.g. channel concatenation, where a
tensor's width is a sum of groups) raises :class:`CostModelError` instead of a wrong model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from math import prod

import torch
from torch import nn
from torch_pruning.utils import op_counter

from prunetune.budgets.analytic import AnalyticCostModel, Term
from prunetune.budgets.costs import Macs, Params
from prunetune.trainables.groups import PruneSettings, apply_profile, find_groups
from prunetune.trainables.profiles import Profile, ProfileError

__all__ = ["CostModelError", "extract_cost_model"]

Monomial = tuple[int, ...]


class CostModelError(ProfileError):
    """The model's costs cannot be written exactly as the analytic model's monomials."""


# -- the counter's formulas, as factors ---------------------------------------------------------
# Each function mirrors one hook of torch_pruning.utils.op_counter at batch size 1, returning
# the monomials whose sum is the hook's count.


def _numel(tensor: torch.Tensor) -> int:
    return int(tensor.numel())


def _conv(module: nn.Module, inputs: tuple, output: torch.Tensor) -> list[Monomial]:
    spatial = prod(output.shape[2:])
    kernel = prod(module.kernel_size)
    monomials = [(kernel, module.in_channels, module.out_channels // module.groups, spatial)]
    if module.bias is not None:
        monomials.append((module.out_channels, spatial))
    return monomials


def _linear(module: nn.Module, inputs: tuple, output: torch.Tensor) -> list[Monomial]:
    monomials = [(_numel(inputs[0]), output.shape[-1])]
    if module.bias is not None:
        monomials.append((output.shape[-1],))
    return monomials


def _norm(module: nn.Module, inputs: tuple, output: torch.Tensor) -> list[Monomial]:
    return [(_numel(inputs[0]), 2 if module.affine else 1)]


def _layer_norm(module: nn.Module, inputs: tuple, output: torch.Tensor) -> list[Monomial]:
    return [(_numel(inputs[0]), 2 if module.elementwise_affine else 1)]


_FORMULAS: dict[Callable, Callable[[nn.Module, tuple, torch.Tensor], list[Monomial]]] = {
    op_counter.conv_flops_counter_hook: _conv,
    op_counter.linear_flops_counter_hook: _linear,
    op_counter.bn_flops_counter_hook: _norm,
    op_counter.ln_flops_counter_hook: _layer_norm,
    op_counter.relu_flops_counter_hook: lambda m, i, o: [(_numel(o),)],
    op_counter.pool_flops_counter_hook: lambda m, i, o: [(_numel(i[0]),)],
    op_counter.upsample_flops_counter_hook: lambda m, i, o: [(_numel(o[0]),)],
}


def _counted_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The modules the counter adds up: a supported module stops the descent (its children
    are not added), an unsupported one adds its children's counts, as the counter does."""
    stack = [("", model)]
    while stack:
        name, module = stack.pop(0)
        if type(module) in op_counter.MODULES_MAPPING:
            yield name, module
            continue
        children = [(f"{name}.{child}" if name else child, m) for child, m in module.named_children()]
        stack[:0] = children


@dataclass(frozen=True)
class _Trace:
    """Factors of every monomial of one model, in a fixed order: ``(cost, layer, factors)``."""

    entries: tuple[tuple[str, str, Monomial], ...]


def _trace(model: nn.Module, sample: torch.Tensor) -> _Trace:
    """Run ``model`` once with hooks and record every cost monomial's factors."""
    entries: list[tuple[str, str, Monomial]] = []
    handles = []
    for name, module in _counted_modules(model):
        hook = op_counter.MODULES_MAPPING[type(module)]
        formula = _FORMULAS.get(hook)
        if formula is None:
            raise CostModelError(
                f"layer {name!r} ({type(module).__name__}) has no exact analytic cost formula; "
                "use measured costs for this model"
            )

        def record(module, inputs, output, name=name, formula=formula):
            for monomial in formula(module, inputs, output):
                entries.append(("macs", name, tuple(int(f) for f in monomial)))

        handles.append(module.register_forward_hook(record))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    for name, parameter in model.named_parameters():
        entries.append(("params", name, tuple(int(d) for d in parameter.shape)))
    return _Trace(tuple(entries))


# -- probing ------------------------------------------------------------------------------------


def probe_plan(channels: dict[str, int]) -> list[dict[str, int]]:
    """Rounds of kept counts in which every probed group keeps a distinct fraction.

    Within a round no two groups keep the same fraction ``k/C`` (and none keeps all), so a
    factor that shrinks by ``k/C`` in that round belongs to exactly one group. Groups of one
    channel cannot shrink and are not probed. Narrow models need several rounds (four groups
    of 4 channels have only 3 fractions below 1).
    """
    remaining = [name for name, count in channels.items() if count >= 2]
    rounds = []
    while remaining:
        used: set[Fraction] = set()
        plan: dict[str, int] = {}
        deferred = []
        for name in remaining:
            count = channels[name]
            free = [k for k in range(count - 1, 0, -1) if Fraction(k, count) not in used]
            if not free:
                deferred.append(name)
                continue
            # The middle of the free counts keeps probes away from both extremes.
            k = free[len(free) // 2]
            used.add(Fraction(k, count))
            plan[name] = k
        rounds.append(plan)
        remaining = deferred
    return rounds


def _pruned_copy(model: nn.Module, channels: dict[str, int], kept: dict[str, int], sample) -> nn.Module:
    pruned = copy.deepcopy(model)
    ratios = {name: k / channels[name] for name, k in kept.items()}
    # Which channels go does not change any shape: "random" skips the importance scoring.
    got = apply_profile(pruned, Profile(ratios), sample, PruneSettings(criterion="random"))
    assert all(got[name] == k for name, k in kept.items()), (got, kept)
    return pruned


def _identify(
    dense: int, probed: list[int], rounds: list[dict[str, int]], channels: dict[str, int], where: str
) -> tuple[Fraction, str | None]:
    """A factor as ``(multiplier, group)``: ``multiplier * kept[group]``, or a fixed value."""
    changed = [r for r, value in enumerate(probed) if value != dense]
    if not changed:
        return Fraction(dense), None
    if len(changed) > 1:
        raise CostModelError(f"{where}: a size that depends on several groups at once")
    r = changed[0]
    shrink = Fraction(probed[r], dense)
    matches = [g for g, k in rounds[r].items() if Fraction(k, channels[g]) == shrink]
    if len(matches) != 1:
        raise CostModelError(f"{where}: a size ({dense} -> {probed[r]}) not proportional to one group")
    group = matches[0]
    return Fraction(dense, channels[group]), group


def _fit_terms(
    dense: _Trace, probes: list[_Trace], rounds: list[dict[str, int]], channels: dict[str, int]
) -> list[Term]:
    for probe in probes:
        if [e[:2] + (len(e[2]),) for e in probe.entries] != [e[:2] + (len(e[2]),) for e in dense.entries]:
            raise CostModelError("pruning changed which layers run; the costs are not analytic")
    terms = []
    for i, (cost, layer, factors) in enumerate(dense.entries):
        coef, groups = Fraction(1), []
        for j, factor in enumerate(factors):
            probed = [probe.entries[i][2][j] for probe in probes]
            multiplier, group = _identify(factor, probed, rounds, channels, f"{cost} of {layer!r}")
            coef *= multiplier
            if group is not None:
                groups.append(group)
        if coef.denominator != 1:
            raise CostModelError(f"{cost} of {layer!r}: coefficient {coef} is not an integer")
        terms.append(Term(cost=cost, layer=layer, coef=int(coef), groups=tuple(sorted(groups))))
    return terms


def _counted(model: nn.Module, sample: torch.Tensor) -> dict[str, float]:
    return {"macs": Macs()(model, sample), "params": Params()(model, sample)}


def _check(cost_model: AnalyticCostModel, model: nn.Module, sample: torch.Tensor, kept: dict[str, int]) -> None:
    pruned = _pruned_copy(model, cost_model.channels, kept, sample) if kept else model
    counted, analytic = _counted(pruned, sample), cost_model.evaluate(kept)
    if counted != analytic:
        raise CostModelError(
            f"{type(model).__name__}: the analytic costs {analytic} differ from counting the "
            f"pruned model {counted}; its costs are not exact monomials of kept channels"
        )


def extract_cost_model(model: nn.Module, example_input: torch.Tensor, *, verify: bool = True) -> AnalyticCostModel:
    """The exact analytic MACs/params model of ``model`` at ``example_input``'s size.

    ``model`` is left unchanged (probes prune deep copies). Costs are per forward pass at
    batch size 1, as the ``macs`` and ``params`` cost functions count them. With ``verify``,
    the result is checked against counting the dense model and one pruned model unlike the
    probes. Raises :class:`CostModelError` for an architecture it cannot model exactly.
    """
    sample = example_input[:1]
    channels = {g.name: g.channels for g in find_groups(model, sample)}
    rounds = probe_plan(channels)
    dense = _trace(model, sample)
    probes = [_trace(_pruned_copy(model, channels, plan, sample), sample) for plan in rounds]
    cost_model = AnalyticCostModel(channels, tuple(_fit_terms(dense, probes, rounds, channels)))
    if verify:
        _check(cost_model, model, sample, {})
        # Two thirds of every group at once: a profile no probe round has seen.
        _check(cost_model, model, sample, {g: max(1, 2 * c // 3) for g, c in channels.items() if c >= 2})
    return cost_model
