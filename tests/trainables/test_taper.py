"""The taper method: gates per coupled group, the exact soft cost, the controller, the multiplier,
hardening into a real pruned model, and resuming a run from its checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch

from prunetune.budgets import get_cost
from prunetune.trainables import PruneSettings, Recipe, apply_profile, build_model, find_groups
from prunetune.trainables.gates import GroupGates, SoftCost, gate_points
from prunetune.trainables.profiles import Profile
from prunetune.trainables.structure import extract_cost_model
from prunetune.trainables.taper import Multiplier, TaperController, TaperRun, TaperSettings, hard_mask

SIZE = 8


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, input_size=SIZE, width=0.25).eval()
    sample = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    groups = find_groups(model, sample)
    return model, sample, groups


@pytest.fixture(scope="module")
def cost_model(resnet):
    model, sample, _ = resnet
    return extract_cost_model(model, sample)


def _gated(resnet):
    model, sample, groups = resnet
    model = copy.deepcopy(model)
    gates = GroupGates(groups, gate_points(model, sample, groups))
    gates.attach(model)
    return model, gates


def test_one_gate_vector_per_group_applied_after_every_producer(resnet):
    model, gates = _gated(resnet)
    _, _, groups = resnet
    assert gates.names == tuple(g.name for g in groups)
    assert [len(t) for t in gates.theta] == [g.channels for g in groups]
    # The first residual stage: the stem's BatchNorm and every block's second BatchNorm.
    assert gates.points["stem.0"] == ("stem.1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2")
    assert "layer2.0.shortcut.1" in gates.points["layer2.0.conv2"]


def test_a_residual_groups_gate_zeroes_its_channel_on_every_branch_and_sum(resnet):
    model, gates = _gated(resnet)
    seen = {}
    names = ["stem", "layer1.0", "layer1.1", "layer1.2", "layer1.0.bn1"]
    modules = dict(model.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.detach().clone()))
    values = {name: torch.ones(len(t)) for name, t in zip(gates.names, gates.theta)}
    values["stem.0"][1] = 0.0
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), gates.fixed(values):
        model(x)
    for name in ["stem", "layer1.0", "layer1.1", "layer1.2"]:
        assert seen[name][:, 1].abs().max() == 0, name
        assert seen[name][:, [0, 2, 3]].abs().max() > 0, name
    assert seen["layer1.0.bn1"][:, 1].abs().max() > 0  # another group: untouched


def _random_masks(groups, seed):
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for group in groups:
        mask = (torch.rand(group.channels, generator=generator) < 0.6).float()
        mask[torch.randint(group.channels, (1,), generator=generator)] = 1.0  # keep at least one
        masks[group.name] = mask
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("cost", ["macs", "params"])
def test_soft_cost_at_hard_gates_equals_the_counted_cost_of_the_pruned_model(resnet, cost_model, seed, cost):
    model, sample, groups = resnet
    masks = _random_masks(groups, seed)
    gated, gates = _gated(resnet)
    soft = SoftCost(cost_model, cost)(gates.counts(masks)).item()
    pruned = copy.deepcopy(model)
    ratios = {g.name: masks[g.name].sum().item() / g.channels for g in groups}
    apply_profile(pruned, Profile(ratios), sample, PruneSettings(), scores=masks)
    assert soft == get_cost(cost)(pruned, sample)
    assert soft < SoftCost(cost_model, cost).dense
    # And the gated network computes what the pruned one does.
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad(), gates.fixed(masks):
        torch.testing.assert_close(gated.eval()(x), pruned.eval()(x), atol=1e-5, rtol=1e-4)


def test_soft_cost_is_differentiable_in_the_gates(resnet, cost_model):
    _, gates = _gated(resnet)
    cost = SoftCost(cost_model, "macs")(gates.counts())
    cost.backward()
    assert all(t.grad is not None and (t.grad > 0).all() for t in gates.theta)


def _controller() -> TaperController:
    settings = TaperSettings(rate=0.01, min_rate=0.001, max_rate=0.04, tolerance=0.001, control_every=10, ema=0.0)
    return TaperController.from_settings(settings)


def test_controller_slows_the_taper_on_a_loss_spike_and_speeds_it_up_otherwise():
    controller = _controller()
    rates = [controller.observe(loss) for loss in [0.50, 0.50, 0.49, 0.80, 0.805, 0.80]]
    # First call sets the reference; flat or falling losses speed up, the spike halves the rate.
    assert rates[0] == 0.01
    assert rates[1] > rates[0] and rates[2] > rates[1]
    assert rates[3] == pytest.approx(rates[2] * 0.5)
    assert rates[5] > rates[4] > rates[3]  # rising slower than the tolerance, then falling


def test_controller_rate_stays_within_its_bounds():
    controller = _controller()
    for _ in range(50):
        controller.observe(1.0)
    assert controller.rate == 0.04
    loss = 1.0
    for _ in range(50):
        loss += 1.0
        controller.observe(loss)
    assert controller.rate == 0.001


def test_multiplier_rises_while_the_constraint_is_violated_and_falls_below_it():
    multiplier = Multiplier(step_size=0.5)
    assert [multiplier.update(v) for v in (0.2, 0.2, 0.1)] == pytest.approx([0.1, 0.2, 0.25])
    assert multiplier.update(-0.3) < 0.25


@pytest.fixture(scope="module")
def taper_run(resnet):
    model, sample, _ = resnet
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, SIZE, SIZE, generator=generator)
    y = torch.randint(10, (96,), generator=generator)

    def make(**changes):
        torch.manual_seed(0)
        settings = TaperSettings(**{"levels": (0.7, 0.5), "rate": 0.02, "control_every": 3, "holdout": 32, **changes})
        return TaperRun(copy.deepcopy(model), settings, Recipe(4, 0.01, 16), PruneSettings(), (x, y, x, y), sample)

    return make


@pytest.fixture(scope="module")
def straight_run(taper_run):
    """One uninterrupted run through every level, and its points (two tests read them)."""
    run = taper_run()
    return run, list(run.points())


def test_the_multiplier_rises_in_a_run_whose_cost_is_above_its_target(taper_run):
    run = taper_run(rate=0.0001, gate_init=3.0)  # gates far from 0: the cost stays above 0.2 for 4 steps
    run.state.target = 0.2
    batches = run._batches()
    values = []
    for _ in range(4):
        run._step(next(batches))
        values.append(run.multiplier.value)
    assert values[0] > 0 and all(b > a for a, b in zip(values, values[1:]))


def test_each_level_hardens_into_a_pruned_model_whose_counted_cost_meets_it(straight_run, resnet):
    _, sample, _ = resnet
    run, points = straight_run
    assert [p.level for p in points] == [0.7, 0.5]
    dense = run.cost.dense
    for point in points:
        counted = get_cost("macs")(point.model, sample)
        assert counted == point.gated_cost <= point.level * dense
        assert counted > 0.5 * point.level * dense  # the level's budget is used, not wasted
        assert point.profile.ratios == {
            k: v / c for (k, v), c in zip(point.kept.items(), [len(t) for t in run.gates.theta])
        }
    assert points[0].step < points[1].step


def test_hard_mask_keeps_the_channels_the_pruner_keeps():
    values = torch.tensor([0.9, 0.1, 0.5, 0.5, 0.7])
    assert hard_mask(values, 3).tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_a_resumed_run_continues_exactly_where_it_stopped(taper_run, straight_run, tmp_path):
    straight, points = straight_run
    expected = [p.gated_cost for p in points]
    first = taper_run()
    points = first.points()
    got = [next(points).gated_cost]
    first.save(tmp_path)
    resumed = taper_run()
    resumed.load(tmp_path)
    got += [p.gated_cost for p in resumed.points()]
    assert got == expected
    assert resumed.state.step == straight.state.step
    for a, b in zip(resumed.gates.theta, straight.gates.theta):
        torch.testing.assert_close(a, b)


def test_a_plain_conv_net_under_any_pressure_keeps_every_group_alive():
    """VGG has no residual path around a conv: a group whose gates all close cuts the network,
    which then outputs the same logits for every image (seen at chance accuracy, issue 25).
    However far the cost is pushed below its target, each group keeps its ``min_channels`` on,
    as the model it hardens into does."""
    torch.manual_seed(0)
    model = build_model("vgg11", num_classes=10, input_size=SIZE, width=0.125)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, SIZE, SIZE, generator=generator)
    y = torch.randint(10, (64,), generator=generator)
    settings = TaperSettings(levels=(0.3,), rate=0.0001, control_every=100, holdout=16)
    run = TaperRun(model, settings, Recipe(4, 0.01, 16), PruneSettings(), (x, y, x, y), x[:1])
    run.state.target = 0.0  # far below any reachable cost: the constraint pushes every gate down
    batches = run._batches()
    for _ in range(40):
        run._step(next(batches))
    live = {name: int((theta > 0).sum()) for name, theta in zip(run.gates.names, run.gates.theta)}
    assert all(live[name] >= run.floors[name] >= 1 for name in live), live
    point = run.harden(0.3)
    assert all(point.kept[name] >= run.floors[name] for name in live)
