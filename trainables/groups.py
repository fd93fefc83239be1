"""Coupled channel groups from torch-pruning's dependency graph, and applying a profile.

A group is a set of channels that must be removed together: one conv's outputs with its
BatchNorm and every consumer's inputs, or all convs feeding one residual sum. torch-pruning's
``DependencyGraph`` finds them; we name each group after its root module (the first module
torch-pruning meets in it) so profiles are keyed by group, never by conv: ratios given to single
convs inside one coupled group would conflict silently.

Which channels of a group go is the criterion's choice: :data:`CRITERIA` holds them by name
(``l1``, ``l2``, ``random``, ``bn_scale``, ``taylor``); :func:`register_criterion` adds one.
A criterion computed on the dense weights alone (all but ``taylor``) ranks each group once per
traced model, and a profile then only selects indices (:mod:`prunetune.trainables.selection`);
``prune.ranking: sequential`` ranks each group on the model as earlier groups left it instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch_pruning as tp
from pydantic import Field, field_validator
from torch import nn

import prunetune.trainables.selection as selection
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
            if graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, PRUNABLE_TYPES)
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


@dataclass(frozen=True)
class Criterion:
    """A registered channel criterion: its factory, and whether its scores depend only on the
    dense model (``dense``), so that they are computed once per traced model, not per profile."""

    factory: CriterionFactory
    dense: bool = False

    def __call__(self, model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
        return self.factory(model, calibration)


CRITERIA: Registry[Criterion] = Registry("criterion")
"""The channel criteria by name (``prune.criterion``); ``names()`` lists them, ``in`` checks one."""


def register_criterion(name: str, *, dense: bool = False) -> Callable[[CriterionFactory], CriterionFactory]:
    """Register a channel criterion as ``name``, so ``prune.criterion: name`` selects it.

    The factory returns a torch-pruning ``Importance``: called on each group, one score per
    channel, the highest kept (None for a group falls back to ``l1``). By default (``dense``
    False) it is called once per prune, before any channel is scored, with the model about to be
    pruned and the calibration batch (``(inputs, labels)`` or None); each group is scored on the
    model as the groups pruned before it left it, so scores may depend on the whole profile. It
    may compute gradients on the model; the pruner clears them.

    ``dense=True`` declares that the scores depend only on the dense weights: the factory is
    called once per traced model with the dense model and no calibration batch, every group is
    scored on the dense model (in module order, torch's global generator seeded with
    ``prune.seed`` for whatever it draws), and every profile reuses those scores.
    """

    def decorate(factory: CriterionFactory) -> CriterionFactory:
        CRITERIA.add(name, Criterion(factory, dense))
        return factory

    return decorate


@register_criterion("l1", dense=True)
def _l1(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """L1 norm of each channel's weights over its whole group (every coupled layer)."""
    return tp.importance.GroupMagnitudeImportance(p=1)


@register_criterion("l2", dense=True)
def _l2(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """L2 norm of each channel's weights over its whole group (every coupled layer)."""
    return tp.importance.GroupMagnitudeImportance(p=2)


@register_criterion("random", dense=True)
def _random(model: nn.Module, calibration: Batch | None) -> tp.importance.Importance:
    """Uniform random scores (torch's global generator: seeded with ``prune.seed`` when ranked on
    the dense model, the trial's own stream under ``ranking: sequential``): the baseline every
    criterion must beat."""
    return tp.importance.RandomImportance()


@register_criterion("bn_scale", dense=True)
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
    """How a profile becomes channels: the criterion, how it ranks, and the channel-count rule.

    The search config's ``prune`` section is this class; ``criterion`` must be registered.
    """

    label: ClassVar[str] = "prune settings"
    criterion: str = "l1"
    round_to: int = Field(1, ge=1)
    min_channels: int = Field(1, ge=1)
    # "dense": a criterion registered dense=True (l1, l2, random, bn_scale) scores each group once
    # on the dense model; "sequential": each group is scored on the model as the groups pruned
    # before it left it (the ranking then depends on the profile). taylor is always sequential.
    ranking: Literal["dense", "sequential"] = "dense"
    # Seeds the dense ranking's random draws (criterion random): one profile, one set of channels.
    seed: int = Field(0, ge=0)

    @field_validator("criterion")
    @classmethod
    def _registered(cls, criterion: str) -> str:
        if criterion not in CRITERIA:
            raise ValueError(CRITERIA.unknown(criterion))
        return criterion


def target_channels(groups: Mapping[str, int], profile: Profile, settings: PruneSettings) -> dict[str, int]:
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
    :meth:`PruningStructure.trace` and call :meth:`PruningStructure.pruned_copy` each time.
    """
    return PruningStructure.trace(model, example_input).prune(profile, settings, calibration, scores)


class PruningStructure:
    """A model with its dependency graph and named groups: traced once, pruned many times.

    Tracing (building torch-pruning's ``DependencyGraph``) costs more than pruning, so a search
    traces the base model once per worker process and every trial asks :meth:`pruned_copy` for
    its model. The structure also keeps what depends only on the dense model: each group's
    coupled layers in dense index space (:mod:`~prunetune.trainables.selection`) and, per
    criterion registered ``dense=True``, every group's scores (:meth:`dense_scores`), so that a
    profile only selects indices. :meth:`prune` changes the model in place and spends the
    structure: its channel counts no longer hold, so it cannot be pruned or copied again.
    """

    def __init__(
        self,
        model: nn.Module,
        graph: tp.DependencyGraph,
        roots: dict[str, nn.Module],
        channels: dict[str, int],
        groups: dict[str, tp.Group] | None = None,
    ):
        self.model = model
        self.graph = graph
        self.roots = roots
        self.channels = channels
        self._groups = groups  # full-index groups of the dense graph; built on first use when None
        self._plans: dict[str, tuple[selection.Member, ...] | None] | None = None
        self._scores: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        self._spent = False

    @classmethod
    def trace(cls, model: nn.Module, example_input: torch.Tensor) -> PruningStructure:
        """Trace ``model`` (not copied: the structure owns it from now on)."""
        graph = build_graph(model, example_input)
        roots = _root_groups(graph, model)
        groups = {name: _out_group(graph, root) for name, root in roots.items()}
        return cls(model, graph, roots, {name: len(group[0].idxs) for name, group in groups.items()}, groups)

    def copy(self) -> PruningStructure:
        """An independent structure: model, graph and roots copied in one ``deepcopy``, so the
        copied graph's nodes point at the copied modules and pruning it leaves this one intact.
        The dense scores carry over (same weights); the groups are walked again when needed."""
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
        twin = PruningStructure(model, graph, roots, dict(self.channels))
        twin._scores = dict(self._scores)
        return twin

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
        kept = target_channels(self.channels, profile, settings)
        drops = self._dense_drops(kept, settings, scores or {})
        self._spent = True
        if drops is None:
            self._prune_sequentially(kept, settings, calibration, scores or {})
        else:
            selection.select(selection.gather(self._dense_plans(), self.channels, drops))
        self.model.zero_grad(set_to_none=True)
        return kept

    def pruned_copy(
        self,
        profile: Profile,
        settings: PruneSettings = PruneSettings(),
        calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
        scores: Mapping[str, torch.Tensor] | None = None,
    ) -> nn.Module:
        """A copy of :attr:`model` pruned to ``profile`` (arguments as in :func:`apply_profile`);
        the structure is unchanged and prunes again. When every dropped channel is known without
        the profile (a dense ranking or explicit ``scores``), it selects the kept indices on a
        cheap copy of the model; otherwise it prunes a :meth:`copy` group by group."""
        assert not self._spent, "a pruned structure cannot be copied"
        kept = target_channels(self.channels, profile, settings)
        drops = self._dense_drops(kept, settings, scores or {})
        if drops is None:
            structure = self.copy()
            structure.prune(profile, settings, calibration, scores)
            return structure.model
        return selection.pruned_copy(self.model, selection.gather(self._dense_plans(), self.channels, drops))

    def dense_scores(self, criterion: str, seed: int = 0) -> dict[str, torch.Tensor]:
        """One score per channel of every group under ``criterion`` (registered ``dense=True``),
        computed on the dense model once per (criterion, seed) and kept: the ranking every
        profile uses under ``ranking: dense``. Groups are scored in module order after
        ``torch.manual_seed(seed)``, inside ``torch.random.fork_rng`` (the caller's random
        stream is untouched); a group the criterion cannot score (no BatchNorm for
        ``bn_scale``) is scored by ``l1``."""
        assert not self._spent, "the dense scores of a pruned structure are gone"
        chosen = CRITERIA.get(criterion)
        if not chosen.dense:
            raise ProfileError(f"criterion {criterion!r} depends on the profile: it has no dense scores")
        if (criterion, seed) not in self._scores:
            groups = self._dense_groups()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                importance, fallback = chosen(self.model, None), CRITERIA.get("l1")(self.model, None)
                self._scores[criterion, seed] = {
                    name: _ranks(importance, group, fallback) for name, group in groups.items()
                }
        return dict(self._scores[criterion, seed])

    def _dense_drops(
        self, kept: dict[str, int], settings: PruneSettings, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor] | None:
        """The root channels each pruned group drops, when they do not depend on the profile
        (explicit ``scores``, or a dense criterion under ``ranking: dense``); else None."""
        pruned = [name for name, keep in kept.items() if keep < self.channels[name]]
        unscored = [name for name in pruned if name not in scores]
        if settings.ranking == "sequential" or (unscored and not CRITERIA.get(settings.criterion).dense):
            return None
        if any(self._dense_plans()[name] is None for name in pruned):
            return None
        dense = self.dense_scores(settings.criterion, settings.seed) if unscored else {}
        return {
            name: self._drop(name, _given(scores[name]) if name in scores else dense[name], kept[name])
            for name in pruned
        }

    def _prune_sequentially(
        self,
        kept: dict[str, int],
        settings: PruneSettings,
        calibration: Batch | None,
        scores: Mapping[str, torch.Tensor],
    ) -> None:
        """torch-pruning's way: each group scored on the model as the groups before it left it,
        then pruned through a fresh walk of the graph."""
        model, graph = self.model, self.graph
        importance = CRITERIA.get(settings.criterion)(model, calibration)
        fallback = CRITERIA.get("l1")(model, calibration)
        for name, keep in kept.items():
            if keep >= self.channels[name]:
                continue
            full = _out_group(graph, self.roots[name])
            ranks = _given(scores[name]) if name in scores else _ranks(importance, full, fallback)
            _out_group(graph, self.roots[name], self._drop(name, ranks, keep).tolist()).prune()

    def _drop(self, name: str, ranks: torch.Tensor, keep: int) -> torch.Tensor:
        """The ``channels - keep`` lowest-ranked root channels of group ``name``, sorted (ties:
        the earlier channel goes first)."""
        channels = self.channels[name]
        if len(ranks) != channels:
            raise ProfileError(f"group {name!r}: {len(ranks)} scores given for {channels} channels")
        return torch.argsort(ranks, stable=True)[: channels - keep].sort().values

    def _dense_groups(self) -> dict[str, tp.Group]:
        if self._groups is None:
            self._groups = {name: _out_group(self.graph, root) for name, root in self.roots.items()}
        return self._groups

    def _dense_plans(self) -> dict[str, tuple[selection.Member, ...] | None]:
        if self._plans is None:
            self._plans = {name: selection.members(self.graph, group) for name, group in self._dense_groups().items()}
        return self._plans


def _given(scores: torch.Tensor) -> torch.Tensor:
    return scores.detach().flatten().cpu()


def _ranks(importance: tp.importance.Importance, group: tp.Group, fallback: tp.importance.Importance) -> torch.Tensor:
    """``importance`` of every channel of ``group``; ``fallback`` (l1) where it scores none
    (e.g. bn_scale on a group without BatchNorm)."""
    ranks = importance(group)
    if ranks is None:
        ranks = fallback(group)
    return ranks.detach().flatten().cpu()


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
