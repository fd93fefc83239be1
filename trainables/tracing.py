"""What torch-pruning's tracer cannot map, found while it traces; and its failures in one line.

torch-pruning maps channel indices through reshapes only when a reshape flattens channels into
features (a classifier's ``flatten``). A channel shuffle (ShuffleNet: ``view`` a feature map
into ``groups x channels_per_group``, transpose, ``view`` back) interleaves the channels of its
inputs: no index mapping holds, and torch-pruning's own attempt divides by zero. The
:class:`ShuffleFinder` records the autograd nodes of such reshapes while the tracer runs the
model, and keeps torch-pruning from mapping them; the groups that pass one are then never
pruned (see ``groups.build_graph``), and everything else in the model still is.
"""

from __future__ import annotations

import traceback
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch_pruning.dependency import index_mapping

from prunetune.trainables.profiles import ProfileError

_RESHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape}


class TracingError(ProfileError):
    """torch-pruning cannot trace a model's channel dependencies, so it cannot be pruned."""


def is_channel_shuffle(before: torch.Size, after: torch.Size) -> bool:
    """A 4-D feature map's channels split into ``groups x per_group`` (or merged back)."""
    if len(before) == 4 and len(after) == 5:
        return before[0] == after[0] and after[1] * after[2] == before[1] and after[3:] == before[2:]
    if len(before) == 5 and len(after) == 4:
        return is_channel_shuffle(after, before)
    return False


class ShuffleFinder(TorchFunctionMode, AbstractContextManager):
    """While active: records the autograd node of every channel-shuffle reshape (``in`` tests
    one), and torch-pruning's index mapping skips those reshapes."""

    def __init__(self) -> None:
        super().__init__()
        self._nodes: list[object] = []  # grad_fn objects: compared by identity, kept alive here

    def __contains__(self, grad_fn: object) -> bool:
        return any(grad_fn is node for node in self._nodes)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (
            func in _RESHAPES
            and isinstance(out, torch.Tensor)
            and out.grad_fn is not None
            and is_channel_shuffle(args[0].shape, out.shape)
        ):
            self._nodes.append(out.grad_fn)
        return out

    def __enter__(self):
        self._mapping = index_mapping.update_reshape_index_mapping
        # torch-pruning looks the function up in its module on each call: swapped for the trace.
        index_mapping.update_reshape_index_mapping = self._map_unless_shuffle
        return super().__enter__()

    def __exit__(self, *exc):
        index_mapping.update_reshape_index_mapping = self._mapping
        return super().__exit__(*exc)

    def settle(self, graph) -> frozenset:
        """The traced ``graph``'s shuffle nodes, marked so that torch-pruning, which maps every
        reshape again for each group it is asked for, leaves them as they are from now on."""
        from torch_pruning import ops

        nodes = frozenset(node for node in graph.module2node.values() if node.grad_fn in self)
        for node in nodes:
            node.type = ops.OPTYPE.ELEMENTWISE  # an identity map; their groups are never pruned
            node.dependencies = []  # a group reaches a shuffle (and is left out) but never passes it
        return nodes

    def _map_unless_shuffle(self, graph, node) -> None:
        if node.grad_fn not in self:
            self._mapping(graph, node)


# Architectures whose trace torch-pruning never finishes or always fails, by class name: refused
# at once instead (window attention reshapes channels into windows and heads).
UNTRACEABLE = {
    "SwinTransformer": "its shifted-window attention reshapes channels in ways torch-pruning cannot follow",
    "MaxVit": "its block and grid attention reshapes channels in ways torch-pruning cannot follow",
}


def check_traceable(model: nn.Module) -> None:
    """A :class:`TracingError` for a model of a class in :data:`UNTRACEABLE`."""
    reason = UNTRACEABLE.get(type(model).__name__)
    if reason:
        raise TracingError(
            f"torch-pruning cannot trace {type(model).__name__}: {reason}, so its channels cannot be "
            f"pruned; choose a convolutional model (`prunetune models`, e.g. resnet18, mobilenet_v3_small)"
        )


def describe_failure(model: nn.Module, error: BaseException) -> str:
    """One line for a tracer failure: the model, the layer torch-pruning was at, and the fix."""
    layer = _failing_layer(model, error)
    where = f" at layer {layer!r}" if layer else ""
    reason = str(error).strip().splitlines()[-1] if str(error).strip() else "no message"
    return (
        f"torch-pruning cannot trace {type(model).__name__}{where} ({type(error).__name__}: {reason}), so "
        f"its channels cannot be pruned; choose another model (`prunetune models`) or register one "
        f"whose channel dependencies it can trace (prunetune.trainables.register_model)"
    )


def _failing_layer(model: nn.Module, error: BaseException) -> str | None:
    """The named module nearest to the graph node in the tracer's innermost frame, if any."""
    from torch_pruning.dependency.node import Node

    names = {module: name for name, module in model.named_modules() if name}
    for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):
        for value in frame.f_locals.values():
            if isinstance(value, nn.Module) and value in names:
                return names[value]
            if isinstance(value, Node):
                return _nearest_named(value, names)
    return None


def _nearest_named(node, names: dict[nn.Module, str]) -> str | None:
    """The closest module with a name upstream of ``node`` (``node`` itself first)."""
    seen, frontier = set(), [node]
    while frontier:
        current = frontier.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current.module in names:
            return names[current.module]
        frontier.extend(current.inputs)
    return None
