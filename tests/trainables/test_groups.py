from __future__ import annotations

import copy

import pytest
import torch

from prunetune.budgets import get_cost
from prunetune.budgets.errors import ConfigError
from prunetune.trainables import (
    CRITERIA,
    Profile,
    ProfileError,
    PruneSettings,
    apply_profile,
    build_model,
    find_groups,
    register_criterion,
)

X = torch.randn(1, 3, 16, 16)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model("resnet20", num_classes=10, input_size=16, width=0.5)


def test_residual_channels_form_one_group_and_head_is_not_prunable(resnet):
    groups = {g.name: g for g in find_groups(resnet, X)}
    assert len(groups) == 12
    stem = groups["stem.0"]
    # Every conv adding into the first stage's residual stream is pruned together.
    assert {"layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= set(stem.modules)
    assert all("fc" not in g.modules for g in groups.values())


def test_apply_profile_gives_requested_channels_and_keeps_classes(resnet):
    model = copy.deepcopy(resnet)
    kept = apply_profile(model, Profile({"stem.0": 0.5, "layer3.0.conv1": 0.25}), X)
    assert kept["stem.0"] == 4 and kept["layer3.0.conv1"] == 8
    assert model.stem[0].out_channels == 4 and model.layer1[0].conv2.out_channels == 4
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert get_cost("macs")(model, X) < get_cost("macs")(resnet, X)


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_every_criterion_prunes_to_the_same_shape(resnet, criterion):
    model = copy.deepcopy(resnet)
    calibration = (torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    apply_profile(model, Profile({"layer2.0.conv1": 0.5}), X, PruneSettings(criterion=criterion), calibration)
    assert model.layer2[0].conv1.out_channels == 8


def test_l1_drops_the_channels_that_carry_no_weight(resnet):
    model = copy.deepcopy(resnet)
    block = model.layer3[0]
    weak = torch.arange(0, 32, 2)  # every other channel: tiny filters, BN scales and consumers
    with torch.no_grad():
        block.conv1.weight[weak] *= 1e-4
        block.bn1.weight[weak] *= 1e-4
        block.conv2.weight[:, weak] *= 1e-4
    apply_profile(model, Profile({"layer3.0.conv1": 0.5}), X)
    norms = model.layer3[0].conv1.weight.detach().abs().sum(dim=(1, 2, 3))
    assert norms.shape == (16,) and bool((norms > 1e-2).all())


def test_round_to_applies_to_every_group(resnet):
    model = copy.deepcopy(resnet)
    kept = apply_profile(model, Profile({g.name: 0.4 for g in find_groups(resnet, X)}), X, PruneSettings(round_to=4))
    assert all(k % 4 == 0 for k in kept.values())


def test_unknown_group_and_unknown_criterion_are_clear_errors(resnet):
    with pytest.raises(ProfileError, match="unknown group"):
        apply_profile(copy.deepcopy(resnet), Profile({"layer9.conv": 0.5}), X)
    with pytest.raises(ConfigError, match=r"unknown criterion 'l3'; choose one of: bn_scale, l1, l2, random, taylor"):
        PruneSettings(criterion="l3")


def test_a_registered_criterion_chooses_the_channels(resnet, monkeypatch):
    monkeypatch.setattr(CRITERIA, "_items", dict(CRITERIA._items))  # registered for this test only
    calls = []

    @register_criterion("last_first")
    def last_first(model, calibration):
        calls.append(calibration)
        return lambda group: torch.arange(len(group[0].idxs), dtype=torch.float)  # later channels rank higher

    model = copy.deepcopy(resnet)
    before = model.layer3[0].conv1.weight.detach().clone()
    apply_profile(model, Profile({"layer3.0.conv1": 0.5}), X, PruneSettings("last_first"), calibration=None)
    assert calls == [None] and "last_first" in CRITERIA.names("last*")
    assert torch.equal(model.layer3[0].conv1.weight, before[16:])
    with pytest.raises(ConfigError, match="already registered"):
        register_criterion("l1")(last_first)


def test_torchvision_resnet_groups_are_keyed_by_group():
    model = build_model("resnet18", num_classes=10, input_size=32)
    names = [g.name for g in find_groups(model, torch.randn(1, 3, 32, 32))]
    assert names[0] == "conv1" and "layer2.0.conv1" in names and "fc" not in names
    apply_profile(model, Profile({"conv1": 0.5}), torch.randn(1, 3, 32, 32))
    assert model.layer1[0].conv2.out_channels == 32 and model.fc.out_features == 10
