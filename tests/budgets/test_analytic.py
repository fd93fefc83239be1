"""The analytic cost model equals counting the actually pruned model, on every model family.

The cost model is extracted once per model; each check prunes a copy with the pruner trials
use (``apply_profile`` with the same ``round_to``/``min_channels``) and counts it with the
``macs``/``params`` cost functions: once with ``round_to=1``, once with ``round_to=8`` and
``min_channels=4``. Models are small (narrow CIFAR nets at 8-16 px, torchvision at 32 px, the
smallest size VGG's five pools allow). Costs depend on shapes only and the random criterion
reads no weights, so the models live on the meta device: no memory for vgg11_bn's 129M
parameters, no time initialising or copying them.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from prunetune.budgets import AnalyticCostModel, Term, channels_kept, get_cost
from prunetune.trainables import Profile, PruneSettings, apply_profile, build_model, extract_cost_model, target_channels
from prunetune.trainables.profiles import kept_channels

# (model, input size, width)
FAMILIES = [
    ("resnet20", 16, 0.25),
    ("resnet32", 8, 0.5),
    ("resnet56", 8, 0.5),
    ("vgg11", 16, 0.25),
    ("vgg16", 16, 0.5),
    ("resnet18", 32, 1.0),
    ("resnet50", 32, 1.0),
    ("mobilenet_v2", 32, 1.0),
    ("mobilenet_v3_small", 32, 1.0),
    ("vgg11_bn", 32, 1.0),
]
SETTINGS = (PruneSettings(criterion="random"), PruneSettings(criterion="random", round_to=8, min_channels=4))


def counted(model, sample) -> dict[str, float]:
    return {"macs": get_cost("macs")(model, sample), "params": get_cost("params")(model, sample)}


def random_profile(channels: dict[str, int], rng: random.Random) -> Profile:
    return Profile({g: rng.uniform(max(0.2, 1 / c), 1.0) for g, c in channels.items()})


@pytest.mark.parametrize("name,size,width", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_analytic_costs_equal_counting_the_pruned_model(name, size, width):
    with torch.device("meta"):
        model = build_model(name, num_classes=10, input_size=size, width=width)
        sample = torch.empty(1, 3, size, size)
    cost_model = extract_cost_model(model, sample, verify=False)
    assert cost_model.dense() == counted(model, sample)
    rng = random.Random(name)
    for settings in SETTINGS:
        profile = random_profile(cost_model.channels, rng)
        pruned = copy.deepcopy(model)
        kept = apply_profile(pruned, profile, sample, settings)
        assert kept == target_channels(cost_model.channels, profile, settings)
        assert cost_model.evaluate(kept) == counted(pruned, sample), (name, settings, profile)


def test_extraction_verifies_itself_and_leaves_the_model_alone():
    model = build_model("resnet20", num_classes=10, input_size=8, width=0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    cost_model = extract_cost_model(model, torch.randn(2, 3, 8, 8))  # verify=True by default
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert cost_model.groups == tuple(cost_model.channels) and len(cost_model.groups) == 12
    # A residual stage is one group: its members' terms all name it.
    assert any(len(t.groups) == 2 for t in cost_model.terms if t.cost == "macs")


def test_costs_shrink_with_channels_and_split_by_layer():
    model = build_model("vgg11", num_classes=10, input_size=16, width=0.25)
    cost_model = extract_cost_model(model, torch.randn(1, 3, 16, 16), verify=False)
    half = {g: max(1, c // 2) for g, c in cost_model.channels.items()}
    assert cost_model.evaluate(half)["macs"] < cost_model.dense()["macs"] / 2
    assert sum(cost_model.by_layer(half).values()) == cost_model.evaluate(half)["macs"]


def test_synthetic_model_and_batch_evaluation_agree():
    channels = {"a": 8, "b": 16}
    terms = (
        Term("macs", "conv", 9, ("a", "b")),
        Term("macs", "bn", 2, ("b",)),
        Term("params", "fc", 5, ("b",)),
        Term("params", "head", 7),
    )
    cost_model = AnalyticCostModel(channels, terms)
    assert cost_model.evaluate({"a": 2, "b": 4}) == {"macs": 9 * 8 + 8, "params": 20 + 7}
    assert cost_model.evaluate({"a": 2}) == {"macs": 9 * 32 + 32, "params": 80 + 7}  # b dense
    batch = cost_model.evaluate_batch([[2, 4], [8, 16]])
    assert list(batch["macs"]) == [80.0, cost_model.dense()["macs"]]
    with pytest.raises(KeyError, match="zzz"):
        cost_model.evaluate({"zzz": 1})
    with pytest.raises(ValueError, match="missing"):
        AnalyticCostModel({"a": 8}, (Term("macs", "x", 1, ("b",)),))


@pytest.mark.parametrize(
    "channels,ratio,round_to,min_channels,expected",
    [
        (64, 0.5, 1, 1, 32),
        (64, 0.3, 8, 1, 16),
        (64, 0.01, 8, 1, 8),
        (10, 0.1, 1, 4, 4),
        (12, 1.0, 8, 1, 12),
        (7, 0.5, 1, 1, 4),
    ],
)
def test_channels_kept_is_the_pruners_rule(channels, ratio, round_to, min_channels, expected):
    assert channels_kept(channels, ratio, round_to, min_channels) == expected
    if ratio * channels >= 0.5:
        assert kept_channels(channels, ratio, round_to=round_to, min_channels=min_channels) == expected
