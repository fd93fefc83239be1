"""Coupled channel groups from torch-pruning's dependency graph, and applying a profile.

A group is a set of channels that must be removed together: one conv's outputs with its
BatchNorm and every consumer's inputs, or all convs feeding one residual sum. torch-pruning's
``DependencyGraph`` finds them; we name each group after its root module (the first module
torch-pruning meets in it) so profiles are keyed by group, never by conv: ratios given to single
convs inside one coupled group would conflict silently.

Which channels of a group go is the criterion's choice: :data:`CRITERIA` holds them by name
(``l1``, ``l2``, ``random``, ``bn_scale``, ``taylor``); :func:`register_criterion` adds one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch_pruning as tp
from pydantic import Field, field_validator
from torch import nn

from prunetune.budgets.registry import Registry
from prunetune.trainables.profiles import Profile, ProfileError, kept_channels
from prunetune.trainables.tracing import ShuffleFinder, TracingError, check_traceable, describe_failure
from prunetune.trainables.train import Settings

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class GroupInfo:
    """One prunable group: its name (the root module), channel count and members."""

    name: str
    channels: int
    modules: tuple[str, ...]


def classifier_head(model: nn.Module) -> nn.Module:
    """The module that produces the logits: the last Linear, else the last conv.

    It is never pruned (its outputs are the classes).
    """
    last_linear = last_conv = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last_linear = module
        elif isinstance(module, PRUNABLE_TYPES):
            last_conv = module
    head = last_linear or last_conv
    if head is None:
        raise ProfileError(f"{type(model).__name__} has no Linear or conv layer to classify with")
    return head


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` once on ``example_input`` and return its dependency graph.

    Channel shuffles (ShuffleNet's view-transpose-view) are traced but not mapped: the graph's
    ``unprunable`` nodes, whose groups :func:`find_groups` leaves out. Any other failure of the
    tracer is a :class:`TracingError` naming the model and the layer.
    """
    check_traceable(model)
    was_training = model.training
    model.eval()
    try:
        with ShuffleFinder() as shuffles:
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    except Exception as err:  # torch-pruning raises no error type of its own
        raise TracingError(describe_failure(model, err)) from err
    finally:
        model.train(was_training)
    graph.unprunable = shuffles.settle(graph)
    return graph


def _root_groups(graph: tp.DependencyGraph, model: nn.Module) -> dict[str, nn.Module]:
    """Root module of every prunable group, keyed by group name, in module order.

    A group is named after its earliest conv/linear member in ``model.named_modules()`` order
    (the stem conv of a residual stage, not whichever module the tracer met first), so names
    read like the model's own code and stay stable across processes.
    """
    head = classifier_head(model)
    order = {module: (i, name) for i, (name, module) in enumerate(model.named_modules())}
    roots = []
    unprunable = getattr(graph, "unprunable", frozenset())
    for group in graph.get_all_groups(ignored_layers=[head], root_module_types=PRUNABLE_TYPES):
        if any(dep.source in unprunable or dep.target in unprunable for dep, _ in group):
            continue  # its channels pass a channel shuffle: removing one would scramble the rest
        members = [
            dep.target.module
            for dep, _ in group
            if graph.is_out_channel_pruning_fn(dep.handler)
            and isinstance(dep.target.module, PRUNABLE_TYPES)
        ]
        roots.append(min(members, key=lambda m: order[m][0]))
    roots.sort(key=lambda m: order[m][0])
    return {order[m][1]: m for m in roots}


def _out_group(graph: tp.DependencyGraph, root: nn.Module, idxs: list[int] | None = None):
    pruner = graph.get_pruner_of_module(root)
    if idxs is None:
        idxs = list(range(pruner.get_out_channels(root)))
    return graph.get_pruning_group(root, pruner.prune_out_channels, idxs)


def find_groups(model: nn.Module, example_input: torch.Tensor) -> tuple[GroupInfo, ...]:
    """Every prunable group of ``model`` in module order; the classifier head is excluded."""
    graph = build_graph(model, example_input)
    names = graph._module2name
    infos = []
    for name, root in _root_groups(graph, model).items():
        group = _out_group(graph, root)
        members = []
        for dep, _ in group:
            member = names.get(dep.target.module)
            if graph.is_out_channel_pruning_fn(dep.handler) and member and member not in members:
                members.append(member)
        infos.append(GroupInfo(name=name, channels=len(group[0].idxs), modules=tuple(members)))
    return tuple(infos)


Batch = tuple[torch.Tensor, torch.Tensor]
CriterionFactory = Callable[[nn.Module, Batch | None], tp.importance.Importance]

CRITERIA: Registry[CriterionFactory] = Registry("criterion")
"""The channel criteria by name (``prune.criterion``); ``names()`` lists them, ``in`` checks one."""


def register_criterion(name: str) -> Callable[[CriterionFactory], CriterionFactory]:
    """Register a channel criterion as ``name``, so ``prune.criterion: name`` selects it.

    The factory is called once per prune, before any channel is scored, with the model about to
    be pruned and the calibration batch (``(inputs, labels)`` or None). It returns a torch-pruning
    ``Importance``: called on each group, one score per channel, the highest kept (None for a
    group falls back to ``l1``). It may compute gradients on the model; the pruner clears them.
    """
    return CRITERIA.register(name)


@register_criterion("l1")
def _l1(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """L1 norm of each channel's weights over its whole group (every coupled layer)."""
    return tp.importance.GroupMagnitudeImportance(p=1)


@register_criterion("l2")
def _l2(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """L2 norm of each channel's weights over its whole group (every coupled layer)."""
    return tp.importance.GroupMagnitudeImportance(p=2)


@register_criterion("random")
def _random(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """Uniform random scores (torch's global generator): the baseline every criterion must beat."""
    return tp.importance.RandomImportance()


@register_criterion("bn_scale")
def _bn_scale(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """The BatchNorm scale of each channel (Network Slimming)."""
    return tp.importance.BNScaleImportance()


@register_criterion("taylor")
def _taylor(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """First-order Taylor: weight times loss gradient on the calibration batch (needs one)."""
    if calibration is None:
        raise ProfileError("criterion 'taylor' needs a calibration batch (inputs, labels)")
    model.zero_grad()
    inputs, labels = calibration
    nn.functional.cross_entropy(model(inputs), labels).backward()
    return tp.importance.GroupTaylorImportance()


class PruneSettings(Settings):
    """How a profile becomes channels: the criterion and the channel-count rule.

    The search config's ``prune`` section is this class; ``criterion`` must be registered.
    """

    label: ClassVar[str] = "prune settings"
    criterion: str = "l1"
    round_to: int = Field(1, ge=1)
    min_channels: int = Field(1, ge=1)

    @field_validator("criterion")
    @classmethod
    def _registered(cls, criterion: str) -> str:
        if criterion not in CRITERIA:
            raise ValueError(CRITERIA.unknown(criterion))
        return criterion


def target_channels(
    groups: Mapping[str, int], profile: Profile, settings: PruneSettings
) -> dict[str, int]:
    """Channels each group keeps under ``profile`` (every group named, unnamed ones dense)."""
    profile.check_groups(list(groups))
    kept = {}
    for name, channels in groups.items():
        try:
            kept[name] = kept_channels(
                channels,
                profile.ratio(name),
                round_to=settings.round_to,
                min_channels=settings.min_channels,
            )
        except ProfileError as err:
            raise ProfileError(f"group {name!r}: {err}") from None
    return kept


def apply_profile(
    model: nn.Module,
    profile: Profile,
    example_input: torch.Tensor,
    settings: PruneSettings = PruneSettings(),
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    scores: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, int]:
    """Physically remove channels from ``model`` (in place) to match ``profile``.

    Within each group the ``settings.criterion`` chooses which channels go; the profile says
    how many. Returns the channels kept per group. ``calibration`` is a labelled batch, needed
    only by the ``taylor`` criterion (it ranks channels by loss gradients). ``scores`` gives
    explicit per-channel importances for some groups (by group name, one value per channel,
    higher kept first) that replace the criterion there, e.g. the taper method's learned gates.
    Traces ``model`` first; to prune many copies of one model, trace once with
    :meth:`PruningStructure.trace` and prune a :meth:`PruningStructure.copy` each time.
    """
    return PruningStructure.trace(model, example_input).prune(profile, settings, calibration, scores)


class PruningStructure:
    """A model with its dependency graph and named group roots: traced once, copied per use.

    Tracing (building torch-pruning's ``DependencyGraph``) costs more than copying the traced
    result, so a search traces the base model once per worker process and every trial prunes
    a :meth:`copy`. :meth:`prune` changes the model in place and spends the structure: its
    channel counts no longer hold, so it cannot be pruned or copied again.
    """

    def __init__(self, model: nn.Module, graph: tp.DependencyGraph, roots: dict[str, nn.Module], channels: dict[str, int]):
        self.model = model
        self.graph = graph
        self.roots = roots
        self.channels = channels
        self._spent = False

    @classmethod
    def trace(cls, model: nn.Module, example_input: torch.Tensor) -> PruningStructure:
        """Trace ``model`` (not copied: the structure owns it from now on)."""
        graph = build_graph(model, example_input)
        roots = _root_groups(graph, model)
        channels = {name: len(_out_group(graph, root)[0].idxs) for name, root in roots.items()}
        return cls(model, graph, roots, channels)

    def copy(self) -> PruningStructure:
        """An independent structure: model, graph and roots copied in one ``deepcopy``, so the
        copied graph's nodes point at the copied modules and pruning it leaves this one intact."""
        assert not self._spent, "a pruned structure cannot be copied"
        memo = _shared_objects(self.graph)
        originals = list(self.graph.module2node.values())
        # Nodes link to each other in long chains (input/output lists): a recursive deepcopy of
        # a resnet50 graph overflows the stack. Registering an empty copy of every node first
        # keeps the recursion shallow; their attributes are copied after.
        for node in originals:
            memo[id(node)] = type(node).__new__(type(node))
        model, graph, roots = copy.deepcopy((self.model, self.graph, self.roots), memo)
        for node in originals:
            memo[id(node)].__dict__.update(copy.deepcopy(node.__dict__, memo))
        return PruningStructure(model, graph, roots, dict(self.channels))

    def prune(
        self,
        profile: Profile,
        settings: PruneSettings = PruneSettings(),
        calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
        scores: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, int]:
        """Remove channels from :attr:`model` in place (see :func:`apply_profile`); returns the
        channels kept per group."""
        assert not self._spent, "a structure is pruned once; prune a copy() instead"
        self._spent = True
        scores = dict(scores or {})
        channels, model, graph = self.channels, self.model, self.graph
        kept = target_channels(channels, profile, settings)
        importance = CRITERIA.get(settings.criterion)(model, calibration)
        for name, keep in kept.items():
            if keep >= channels[name]:
                continue
            full = _out_group(graph, self.roots[name])
            ranks = scores[name].detach().flatten().cpu() if name in scores else importance(full)
            if ranks is None:  # e.g. bn_scale on a group without BatchNorm: fall back to L1
                ranks = CRITERIA.get("l1")(model, calibration)(full)
            if len(ranks) != channels[name]:
                raise ProfileError(f"group {name!r}: {len(ranks)} scores given for {channels[name]} channels")
            drop = torch.argsort(ranks, stable=True)[: channels[name] - keep].tolist()
            _out_group(graph, self.roots[name], sorted(drop)).prune()
        model.zero_grad(set_to_none=True)
        return kept


def _shared_objects(graph: tp.DependencyGraph) -> dict[int, object]:
    """A ``deepcopy`` memo of what a graph copy must share with the original, not copy.

    torch-pruning tells pruning functions apart by the identity of their pruner objects
    (module-level singletons, compared with ``==`` on bound methods): copied pruners would no
    longer match ``function.prune_conv_out_channels`` and importances would silently skip
    layers. Autograd nodes kept from tracing cannot be copied (and are only read while tracing),
    nor can the ``ops`` module the graph keeps a reference to.
    """
    from torch_pruning.pruner import function

    shared = [graph.ops, *graph.REGISTERED_PRUNERS.values(), *graph.CUSTOMIZED_PRUNERS.values()]
    shared += [*function.PrunerBox.values(), *(node.grad_fn for node in graph.module2node.values())]
    return {id(obj): obj for obj in shared if obj is not None}
