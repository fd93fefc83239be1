"""The precomputed prune step (trainables/selection.py and PruningStructure's dense ranking):
every criterion computed on the dense weights gives exactly the weights torch-pruning's
sequential prune gives with the same ranking, on residual, VGG, inverted-residual and
concatenating models; the cached structure survives any number of trials; ``ranking:
sequential`` is the old behaviour."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn

from prunetune.budgets.errors import ConfigError
from prunetune.trainables import (
    CRITERIA,
    Profile,
    PruneSettings,
    PruningStructure,
    apply_profile,
    build_model,
    register_criterion,
)
from prunetune.trainables.groups import _out_group, _root_groups, build_graph, target_channels
from prunetune.trainables.selection import copy_modules
from prunetune.trainables.train import Recipe, train_steps

DENSE_CRITERIA = ("l1", "l2", "random", "bn_scale")
SEQUENTIAL = PruneSettings(ranking="sequential")


class Concatenating(nn.Module):
    """Two branches concatenated (so one conv's inputs come from two groups), scaled by a bare
    ``nn.Parameter`` (pruned by torch-pruning's parameter handler), then flattened into the head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.scale = nn.Parameter(torch.rand(1, 14, 1, 1) + 0.5)
        self.mix = nn.Conv2d(14, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], dim=1) * self.scale
        y = torch.relu(self.bn(self.mix(y)))
        return self.fc(nn.functional.adaptive_avg_pool2d(y, 2).flatten(1))


MODELS = {  # name: (builder, input size)
    "resnet20": (lambda: build_model("resnet20", num_classes=10, input_size=16, width=0.25), 16),
    "vgg11": (lambda: build_model("vgg11", num_classes=10, input_size=16, width=0.125), 16),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=10), 32),
    "squeezenet": (lambda: torchvision.models.squeezenet1_1(num_classes=10), 48),  # Fire: expand1x1 ++ expand3x3
    "concatenating": (Concatenating, 8),
}


def _dense(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A model with distinct BatchNorm scales and statistics (so bn_scale has no ties), in eval mode."""
    torch.manual_seed(0)
    builder, size = MODELS[name]
    model = builder()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.1, 1.0)
            nn.init.uniform_(module.running_mean, -0.5, 0.5)
            nn.init.uniform_(module.running_var, 0.5, 1.5)
    return model.eval(), torch.randn(1, 3, size, size)


@pytest.fixture(scope="module", params=list(MODELS))
def traced(request):
    model, sample = _dense(request.param)
    return request.param, model, sample, PruningStructure.trace(copy.deepcopy(model), sample)


def _profile(structure: PruningStructure, seed: int) -> Profile:
    """Ratios 0.3..1.0 drawn per group; every third group dense."""
    draw = random.Random(seed)
    return Profile({g: 1.0 if i % 3 == 2 else draw.uniform(0.3, 1.0) for i, g in enumerate(structure.channels)})


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("criterion", DENSE_CRITERIA)
def test_the_precomputed_prune_equals_the_sequential_prune_given_the_dense_ranking(traced, criterion):
    name, model, sample, structure = traced
    settings = PruneSettings(criterion)
    profile = _profile(structure, seed=1)
    fast = structure.pruned_copy(profile, settings)
    reference = PruningStructure.trace(copy.deepcopy(model), sample)
    reference.prune(profile, settings.replace(ranking="sequential"), scores=structure.dense_scores(criterion))
    assert _same_weights(fast, reference.model)
    kept = target_channels(structure.channels, profile, settings)
    for group, keep in kept.items():
        root = fast.get_submodule(group)
        assert getattr(root, "out_channels", getattr(root, "out_features", None)) == keep, group
    assert fast(torch.cat([sample, sample])).shape == (2, 10)
    assert sum(p.numel() for p in fast.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_bare_parameter_and_a_concatenation_are_cut_in_the_dense_index_space():
    model, sample = _dense("concatenating")
    structure = PruningStructure.trace(model, sample)
    pruned = structure.pruned_copy(Profile({"a.0": 0.5, "b.0": 0.5}))
    keep_a = structure.dense_scores("l1")["a.0"].argsort(stable=True)[4:].sort().values
    keep_b = structure.dense_scores("l1")["b.0"].argsort(stable=True)[3:].sort().values
    kept = torch.cat([keep_a, 8 + keep_b])  # the concatenation's channels: a's then b's
    assert pruned.scale.shape == (1, 7, 1, 1) and isinstance(pruned.scale, nn.Parameter)
    assert torch.equal(pruned.scale, model.scale[:, kept])
    assert torch.equal(pruned.mix.weight, model.mix.weight[:, kept])


def test_apply_profile_in_place_is_the_precomputed_prune(traced):
    _, model, sample, structure = traced
    profile = _profile(structure, seed=2)
    in_place = copy.deepcopy(model)
    kept = apply_profile(in_place, profile, sample)
    assert kept == target_channels(structure.channels, profile, PruneSettings())
    assert _same_weights(in_place, structure.pruned_copy(profile))


def test_the_cached_structure_prunes_any_number_of_trials_and_never_changes(traced):
    _, model, sample, structure = traced
    first = structure.pruned_copy(_profile(structure, seed=3), PruneSettings("l2"))
    for seed in range(4, 16):
        structure.pruned_copy(_profile(structure, seed), PruneSettings(random.choice(DENSE_CRITERIA)))
    assert _same_weights(structure.model, model)
    assert _same_weights(structure.pruned_copy(_profile(structure, seed=3), PruneSettings("l2")), first)
    assert structure.copy().model(sample).shape == (1, 10)  # still copies and runs


@pytest.mark.parametrize("ratio", [0.5, 1.0])  # 1.0: nothing cut, every tensor a clone
def test_fine_tuning_a_pruned_copy_leaves_the_cached_weights_unchanged(ratio):
    model, sample = _dense("resnet20")
    structure = PruningStructure.trace(copy.deepcopy(model), sample)
    pruned = structure.pruned_copy(Profile(dict.fromkeys(structure.channels, ratio)))
    dense_storage = {t.untyped_storage().data_ptr() for t in structure.model.state_dict().values()}
    assert not any(t.untyped_storage().data_ptr() in dense_storage for t in pruned.state_dict().values())
    assert all(p.requires_grad and p.grad is None for p in pruned.parameters())
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    train_steps(pruned.train(), x, y, Recipe(steps=2, batch_size=16, lr=0.5))
    assert _same_weights(structure.model, model)


def test_explicit_scores_the_taper_passes_prune_the_same_channels_either_way():
    model, sample = _dense("resnet20")
    structure = PruningStructure.trace(copy.deepcopy(model), sample)
    gates = {
        g: torch.rand(c, generator=torch.Generator().manual_seed(i))
        for i, (g, c) in enumerate(structure.channels.items())
    }
    profile = _profile(structure, seed=5)
    dense, sequential = copy.deepcopy(model), copy.deepcopy(model)
    apply_profile(dense, profile, sample, PruneSettings(), scores=gates)
    apply_profile(sequential, profile, sample, SEQUENTIAL, scores=gates)
    assert _same_weights(dense, sequential)
    some = {g: s for i, (g, s) in enumerate(gates.items()) if i % 2}  # the other groups ranked by l1
    partial = copy.deepcopy(model)
    apply_profile(partial, profile, sample, PruneSettings(), scores=some)
    reference = PruningStructure.trace(copy.deepcopy(model), sample)
    reference.prune(profile, SEQUENTIAL, scores={**structure.dense_scores("l1"), **some})
    assert _same_weights(partial, reference.model)
    # Scores for every pruned group leave the criterion unused: taylor needs no calibration batch.
    assert _same_weights(structure.pruned_copy(profile, PruneSettings("taylor"), scores=gates), dense)


def _old_prune(model: nn.Module, sample: torch.Tensor, profile: Profile) -> None:
    """The prune step before issue 16, in torch-pruning's terms: each group in module order ranked
    by L1 on the model as the groups before it left it, then pruned."""
    graph = build_graph(model, sample)
    roots = _root_groups(graph, model)
    channels = {name: len(_out_group(graph, root)[0].idxs) for name, root in roots.items()}
    importance = tp.importance.GroupMagnitudeImportance(p=1)
    for name, keep in target_channels(channels, profile, PruneSettings()).items():
        ranks = importance(_out_group(graph, roots[name]))
        drop = torch.argsort(ranks, stable=True)[: channels[name] - keep].tolist()
        _out_group(graph, roots[name], sorted(drop)).prune()


def test_sequential_ranking_is_the_old_behaviour_and_differs_from_the_dense_one():
    model, sample = _dense("resnet20")
    structure = PruningStructure.trace(copy.deepcopy(model), sample)
    profile = Profile(dict.fromkeys(structure.channels, 0.5))
    old = copy.deepcopy(model)
    _old_prune(old, sample, profile)
    assert _same_weights(structure.pruned_copy(profile, SEQUENTIAL), old)
    # The stem's residual group shrinks every block's input, so later groups rank otherwise.
    assert not _same_weights(structure.pruned_copy(profile), old)


def test_dense_random_drops_the_same_channels_whatever_the_trials_random_state():
    model, sample = _dense("resnet20")
    structure = PruningStructure.trace(model, sample)
    profile = Profile(dict.fromkeys(structure.channels, 0.5))
    torch.manual_seed(1)
    first = structure.pruned_copy(profile, PruneSettings("random"))
    torch.manual_seed(2)
    assert _same_weights(structure.pruned_copy(profile, PruneSettings("random")), first)
    state = torch.get_rng_state()
    reseeded = structure.pruned_copy(profile, PruneSettings("random", seed=3))
    assert torch.equal(torch.get_rng_state(), state)  # the ranking drew nothing from the trial's stream
    assert not _same_weights(reseeded, first)
    torch.manual_seed(1)
    one = structure.pruned_copy(profile, PruneSettings("random", ranking="sequential"))
    torch.manual_seed(2)
    assert not _same_weights(structure.pruned_copy(profile, PruneSettings("random", ranking="sequential")), one)


def test_a_criterion_declares_whether_it_is_ranked_once_on_the_dense_model(monkeypatch):
    monkeypatch.setattr(CRITERIA, "_items", dict(CRITERIA._items))  # registered for this test only
    calls = {"once": 0, "every": 0}

    def counted(key):
        def factory(model, calibration):
            calls[key] += 1
            return tp.importance.GroupMagnitudeImportance(p=1)

        return factory

    register_criterion("once", dense=True)(counted("once"))
    register_criterion("every")(counted("every"))
    assert [n for n in CRITERIA.names() if CRITERIA.get(n).dense] == ["bn_scale", "l1", "l2", "once", "random"]
    model, sample = _dense("resnet20")
    structure = PruningStructure.trace(model, sample)
    for seed in range(3):
        structure.pruned_copy(_profile(structure, seed), PruneSettings("once"))
        structure.pruned_copy(_profile(structure, seed), PruneSettings("every"))
    assert calls == {"once": 1, "every": 3}


def test_a_bad_ranking_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"prune settings option 'ranking': Input should be 'dense' or 'sequential'"):
        PruneSettings(ranking="greedy")


def test_copy_modules_is_an_independent_deepcopy():
    model, sample = _dense("mobilenet_v2")
    twin = copy_modules(model, {})
    assert _same_weights(twin, model) and torch.equal(twin(sample), model(sample))
    seen = []
    twin.features[0].register_forward_hook(lambda *args: seen.append(1))
    twin.train()
    with torch.no_grad():
        twin.classifier[1].weight.zero_()
    model(sample)
    assert not seen and not model.training and bool(model.classifier[1].weight.abs().sum() > 0)
