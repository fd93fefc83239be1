"""Pruning by index selection: each group's coupled layers mapped once into the dense model's
index space, so applying a profile only selects the channels every layer keeps.

torch-pruning prunes one group at a time and walks its dependency graph for each (the index
offsets of a concatenation depend on the channels earlier groups left). Every group's walk on
the *dense* graph, kept as a :class:`Member` per coupled layer (which of its indices follow
which root channel), gives the same cut for any profile: a dropped root channel removes the
same dense indices of every member. :func:`gather` collects those indices per layer over all
groups, :func:`select` cuts each layer once, and :func:`pruned_copy` does it on a copy of the
dense model that never copies the tensors it replaces.

Convolutions, linear layers and BatchNorm are cut here, by the same index selection and
attribute updates as torch-pruning's handlers; any other layer (a transposed or grouped conv's
inputs, LayerNorm, a bare ``nn.Parameter``, ...) by torch-pruning's handler itself.
:class:`~prunetune.trainables.groups.PruningStructure` builds the members once per traced model.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function

Resolve = Callable[[nn.Module], nn.Module]
"""Maps a module of the dense model to the module to cut (itself, or its copy)."""
Cut = Callable[[nn.Module, torch.Tensor], None]
"""Cuts one layer down to the kept indices (sorted) of one dimension."""


@dataclass(frozen=True, eq=False)
class Member:
    """One coupled layer of a group on the dense model: the torch-pruning handler that cuts it
    and, for each index it cuts, the root channel it follows (``idxs`` None: index i follows root
    channel i, for every channel). ``fast`` cuts it directly, given the kept indices of its dense
    dimension of ``size``; ``owner`` is the module and attribute holding ``target`` when it is a
    bare ``nn.Parameter``."""

    target: nn.Module | nn.Parameter
    handler: Callable
    pruning_dim: int
    idxs: torch.Tensor | None
    root_idxs: torch.Tensor | None
    fast: Cut | None = None
    size: int = 0
    owner: tuple[nn.Module, str] | None = None

    def dropped(self, drop: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """This layer's dense indices that go when its group drops root channels ``drop``
        (``mask``: the same as a boolean mask over the root channels)."""
        return drop if self.idxs is None else self.idxs[mask[self.root_idxs]]

    def handle(self, resolve: Resolve, dropped: torch.Tensor) -> None:
        """Remove ``dropped`` from the resolved target with torch-pruning's handler."""
        self.handler.__self__.pruning_dim = self.pruning_dim  # what torch-pruning's Dependency sets
        if self.owner is None:
            self.handler(resolve(self.target), dropped.tolist())
            return
        module, attr = resolve(self.owner[0]), self.owner[1]
        setattr(module, attr, self.handler(getattr(module, attr), dropped.tolist()))


def members(graph: tp.DependencyGraph, group) -> tuple[Member, ...] | None:
    """The members of a full-index ``group`` of ``graph`` (its dense model); None when an index
    mapping loses track of its root channel (torch-pruning's grouped-query attention), where only
    the graph walk can tell which indices go.

    Dependencies on the graph's own op nodes (concatenation, split, element-wise, reshape) hold
    no weights: their handlers only update the graph's offsets, so they are left out.
    """
    channels = len(group[0].idxs)
    found = []
    for item in group:
        dep = item.dep
        if isinstance(dep.handler.__self__, tp.ops.DummyPruner):
            continue
        if any(root is None for root in item.root_idxs):
            return None
        idxs, roots = torch.tensor(item.idxs, dtype=torch.long), torch.tensor(item.root_idxs, dtype=torch.long)
        if torch.equal(idxs, roots) and torch.equal(idxs, torch.arange(channels)):
            idxs = roots = None
        target, owner = dep.target.module, None
        if isinstance(target, nn.Parameter):
            path, _, attr = graph._param_to_name[target].rpartition(".")
            owner = (graph.model.get_submodule(path), attr)
        fast, size = _fast_cut(dep.handler, target)
        found.append(Member(target, dep.handler, dep.target.pruning_dim, idxs, roots, fast, size, owner))
    return tuple(found)


def gather(
    plans: Mapping[str, Sequence[Member]], channels: Mapping[str, int], drops: Mapping[str, torch.Tensor]
) -> list[tuple[Member, torch.Tensor]]:
    """Every layer's dense indices to remove when group ``name`` drops root channels
    ``drops[name]`` (sorted): one entry per (layer, handler), merged over groups (a layer after
    a concatenation takes its inputs from several of them)."""
    cuts: dict[tuple[int, Callable], tuple[Member, list[torch.Tensor]]] = {}
    for name, drop in drops.items():
        mask = torch.zeros(channels[name], dtype=torch.bool)
        mask[drop] = True
        for member in plans[name]:
            dropped = member.dropped(drop, mask)
            if len(dropped):
                cuts.setdefault((id(member.target), member.handler), (member, []))[1].append(dropped)
    return [(member, parts[0] if len(parts) == 1 else torch.cat(parts).unique()) for member, parts in cuts.values()]


def select(cuts: Sequence[tuple[Member, torch.Tensor]], resolve: Resolve = lambda module: module) -> None:
    """Apply :func:`gather`'s cuts on ``resolve(layer)``: each (layer, handler) once. A layer cut
    on two dimensions (a conv's outputs and inputs) gets two calls; they touch different ones.
    The kept indices are computed once per dropped set and dimension size: the layers of one
    group share them."""
    kept: dict[tuple[int, int], torch.Tensor] = {}
    for member, dropped in cuts:
        if member.fast is None:
            member.handle(resolve, dropped)
            continue
        key = (id(dropped), member.size)
        if key not in kept:
            mask = torch.ones(member.size, dtype=torch.bool)
            mask[dropped] = False
            kept[key] = mask.nonzero().flatten()
        member.fast(resolve(member.target), kept[key])


def pruned_copy(model: nn.Module, cuts: Sequence[tuple[Member, torch.Tensor]]) -> nn.Module:
    """A copy of ``model`` with ``cuts`` applied; ``model`` is left unchanged.

    The module tree is copied with every parameter and buffer shared at first, so no tensor is
    copied twice: each cut replaces the tensors it touches with new ones (index selection writes
    fresh storage), and every tensor no cut touched is cloned after. The copy shares no storage
    with ``model`` (a trial fine-tunes it in place); a cut parameter is a new ``nn.Parameter``
    (``requires_grad`` True, as torch-pruning leaves it), a clone keeps the dense one's flag;
    no parameter has a gradient.
    """
    dense = {id(t): t for module in model.modules() for t in _tensors(module) if t is not None}
    memo: dict[int, object] = dict(dense)
    pruned = copy_modules(model, memo)
    select(cuts, lambda module: memo[id(module)])
    _own_tensors(pruned, dense)
    return pruned


def _tensors(module: nn.Module) -> tuple[torch.Tensor | None, ...]:
    return (*module._parameters.values(), *module._buffers.values())


def _selected(tensor: torch.Tensor, dim: int, keep: torch.Tensor) -> nn.Parameter:
    """torch-pruning's ``_prune_parameter_and_grad`` without the gradient (the pruner clears
    gradients after cutting): a new parameter of the kept indices."""
    return nn.Parameter(torch.index_select(tensor, dim, keep.to(tensor.device)))


def _cut(layer: nn.Module, size: str, dim: int, keep: torch.Tensor) -> None:
    """Keep indices ``keep`` of ``layer``'s weight along ``dim`` (0: outputs, with the bias;
    1: inputs) and set its ``size`` attribute (``out_channels``, ``in_features``, ...)."""
    setattr(layer, size, len(keep))
    layer.weight = _selected(layer.weight, dim, keep)
    if dim == 0 and layer.bias is not None:
        layer.bias = _selected(layer.bias, 0, keep)


def _conv_out(layer: nn.Module, keep: torch.Tensor) -> None:
    _cut(layer, "out_channels", 0, keep)


def _conv_in(layer: nn.Module, keep: torch.Tensor) -> None:
    _cut(layer, "in_channels", 1, keep)


def _depthwise(layer: nn.Module, keep: torch.Tensor) -> None:
    dropped = layer.out_channels - len(keep)
    layer.in_channels, layer.groups = layer.in_channels - dropped, layer.groups - dropped
    _conv_out(layer, keep)


def _linear_out(layer: nn.Module, keep: torch.Tensor) -> None:
    _cut(layer, "out_features", 0, keep)


def _linear_in(layer: nn.Module, keep: torch.Tensor) -> None:
    _cut(layer, "in_features", 1, keep)


def _batchnorm(layer: nn.Module, keep: torch.Tensor) -> None:
    layer.num_features = len(keep)
    if layer.track_running_stats:
        keep = keep.to(layer.running_mean.device)
        layer.running_mean = layer.running_mean.data[keep]
        layer.running_var = layer.running_var.data[keep]
    if layer.affine:
        layer.weight = _selected(layer.weight, 0, keep)
        layer.bias = _selected(layer.bias, 0, keep)


_FAST: dict[Callable, tuple[Cut, str]] = {  # handler -> (cut, the attribute holding the dense size)
    function.prune_conv_out_channels: (_conv_out, "out_channels"),
    function.prune_conv_in_channels: (_conv_in, "in_channels"),
    function.prune_depthwise_conv_out_channels: (_depthwise, "out_channels"),  # the in-channel one too
    function.prune_linear_out_channels: (_linear_out, "out_features"),
    function.prune_linear_in_channels: (_linear_in, "in_features"),
    function.prune_batchnorm_out_channels: (_batchnorm, "num_features"),
}


def _fast_cut(handler: Callable, target: nn.Module | nn.Parameter) -> tuple[Cut | None, int]:
    """The direct cut for ``handler`` on ``target`` and its dense size, or (None, 0) where
    torch-pruning's handler does more (transposed convs, a grouped conv's inputs)."""
    entry = _FAST.get(handler) if isinstance(target, nn.Module) else None
    if entry is None or getattr(target, "transposed", False):
        return None, 0
    if entry[0] is _conv_in and target.groups > 1:
        return None, 0
    return entry[0], getattr(target, entry[1])


_IMMUTABLE = frozenset({int, float, complex, bool, str, bytes, type(None), torch.dtype, torch.device})
_EMPTIED = frozenset({dict, OrderedDict, set, list})  # made anew when empty (hook dicts)


def copy_modules(model: nn.Module, memo: dict[int, object]) -> nn.Module:
    """``copy.deepcopy(model, memo)``, faster. A module is rebuilt as ``deepcopy`` rebuilds it
    (``__new__``, its ``__getstate__`` dict copied, its ``__setstate__``), but immutable
    attributes are shared, empty hook dicts made anew and parameter and buffer dicts copied with
    their tensors looked up in ``memo``, without ``deepcopy``'s generic machinery for each; a
    class with its own ``__deepcopy__`` or ``__reduce_ex__`` and any other value go through
    ``copy.deepcopy`` with the same ``memo``. ``memo`` maps every original to its copy."""
    found = memo.get(id(model))
    if found is not None:
        return found
    cls = type(model)
    state = model.__getstate__()
    if (
        cls.__reduce_ex__ is not object.__reduce_ex__
        or cls.__reduce__ is not object.__reduce__
        or hasattr(cls, "__deepcopy__")
        or type(state) is not dict
    ):
        return copy.deepcopy(model, memo)
    twin = cls.__new__(cls)
    memo[id(model)] = twin
    for key, value in state.items():
        if key == "_modules":
            state[key] = type(value)((name, None if m is None else copy_modules(m, memo)) for name, m in value.items())
        elif key in ("_parameters", "_buffers"):
            state[key] = type(value)((name, _copy_tensor(t, memo)) for name, t in value.items())
        else:
            state[key] = _copy_value(value, memo)
    twin.__setstate__(state)
    return twin


def _copy_tensor(tensor: torch.Tensor | None, memo: dict[int, object]) -> torch.Tensor | None:
    if tensor is None:
        return None
    return memo[id(tensor)] if id(tensor) in memo else copy.deepcopy(tensor, memo)


def _copy_value(value: object, memo: dict[int, object]) -> object:
    kind = type(value)
    if kind in _IMMUTABLE or (kind is tuple and all(type(v) in _IMMUTABLE for v in value)):
        return value
    if kind in _EMPTIED and not value:
        return kind()
    return copy.deepcopy(value, memo)


def _own_tensors(model: nn.Module, dense: Mapping[int, torch.Tensor]) -> None:
    """Replace every tensor of ``model`` still shared with the dense model by a clone (one clone
    per dense tensor, so tied weights stay tied), and drop every gradient."""
    clones: dict[int, torch.Tensor] = {}

    def own(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in clones:
            data = tensor.detach().clone()
            clones[id(tensor)] = nn.Parameter(data, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else data
        return clones[id(tensor)]

    for module in model.modules():
        shared = [
            (name, t)
            for name, t in (*module._parameters.items(), *module._buffers.items())
            if t is not None and dense.get(id(t)) is t
        ]
        for name, tensor in shared:
            setattr(module, name, own(tensor))
        for parameter in module._parameters.values():
            if parameter is not None:
                parameter.grad = None
