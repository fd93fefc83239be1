"""The per-worker cached pruning structure (trainables/groups.py PruningStructure, and
trainables/trial.py base_structure/pruned_model): pruning a copy of the cached structure must
give exactly what tracing the base from scratch gives, and must never change the cache."""

from __future__ import annotations

import copy

import pytest
import torch

from prunetune.trainables import (
    CRITERIA,
    Profile,
    PruneSettings,
    apply_profile,
    build_model,
    evaluate,
    load_base,
    train_batches,
)
from prunetune.trainables.base import DataSpec, ModelSpec
from prunetune.trainables.groups import PruningStructure
from prunetune.trainables.train import Recipe, recalibrate_bn
from prunetune.trainables.trial import TrialSetup, base_structure, calibration_batch, example_input, pruned_model

MODEL = ModelSpec("resnet20", 0.25, 8)
HALF = {"stem.0": 0.5, "layer2.0.conv1": 0.5, "layer3.0.conv1": 0.25}
QUARTER = {"stem.0": 0.25, "layer1.0.conv1": 0.75, "layer3.1.conv1": 0.5}


def _setup(tiny_base, criterion: str = "l1") -> TrialSetup:
    return TrialSetup(MODEL, DataSpec("digits"), str(tiny_base), prune=PruneSettings(criterion))


def _from_scratch(setup: TrialSetup, profile: dict, calibration, seed: int = 3) -> torch.nn.Module:
    model = load_base(setup.model, 10, setup.base_checkpoint)
    torch.manual_seed(seed)  # building the model drew from the global generator, as 'random' does
    apply_profile(model, Profile(profile), example_input(setup), setup.prune, calibration=calibration)
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_cached_structure_prunes_exactly_like_tracing_from_scratch(tiny_base, criterion):
    setup = _setup(tiny_base, criterion)
    data = setup.open_data(torch.device("cpu"))
    calibration = calibration_batch(data)
    torch.manual_seed(3)  # the random criterion draws from the global generator
    cached = pruned_model(setup, Profile(HALF), 10, calibration)
    scratch = _from_scratch(setup, HALF, calibration)
    assert _same_weights(cached, scratch)
    assert cached.stem[0].out_channels == 2
    assert evaluate(cached, data.eval_batches("val")) == evaluate(scratch, data.eval_batches("val"))


def test_trials_in_one_process_leave_the_cached_base_unchanged(tiny_base):
    setup = _setup(tiny_base)
    cache = base_structure(MODEL, 10, str(tiny_base))
    before = copy.deepcopy(cache.model.state_dict())
    data = setup.open_data(torch.device("cpu"))
    first = pruned_model(setup, Profile(HALF), 10)
    train_batches(first, data.train_batches(16, 0), Recipe(steps=3, batch_size=16))  # a trial fine-tunes its copy
    second = pruned_model(setup, Profile(QUARTER), 10)
    assert base_structure(MODEL, 10, str(tiny_base)) is cache  # traced once per process
    after = cache.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert cache.model.stem[0].out_channels == 4
    assert _same_weights(second, _from_scratch(setup, QUARTER, None))


# mobilenet_v2: depthwise convs (torch-pruning swaps their pruning function); resnet56: a graph
# deep enough that a plain recursive deepcopy overflows the stack.
@pytest.mark.parametrize(("name", "width", "size"), [("mobilenet_v2", 1.0, 32), ("resnet56", 0.25, 8)])
def test_copied_graph_points_into_the_copied_model(name, width, size):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, input_size=size, width=width)
    sample = torch.randn(2, 3, size, size)
    reference = copy.deepcopy(model)
    dense = copy.deepcopy(model)
    structure = PruningStructure.trace(model, sample)
    profile = Profile(dict.fromkeys(list(structure.channels)[::3], 0.5))
    pruned = structure.copy()
    originals = set(model.modules())
    assert not any(node.module in originals for node in pruned.graph.module2node.values())
    pruned.prune(profile)
    apply_profile(reference, profile, sample)
    assert _same_weights(pruned.model, reference)
    assert _same_weights(structure.model, dense)
    assert structure.copy().model(sample).shape == (2, 10)  # the original still copies and runs


def test_a_pruned_structure_is_not_pruned_twice(tiny_base):
    structure = base_structure(MODEL, 10, str(tiny_base)).copy()
    structure.prune(Profile(HALF))
    with pytest.raises(AssertionError, match="pruned once"):
        structure.prune(Profile(HALF))


@pytest.mark.integration
def test_zero_step_trials_in_one_reused_worker_report_what_their_checkpoint_holds(tmp_path, tiny_config):
    """Two trials in one reused actor (concurrency 1): the second prunes a copy of the cache
    the first left behind; a 0-step trial's accuracy is its pruned accuracy, evaluated once."""
    import subprocess
    import sys

    import yaml

    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.store.trials import read_trials
    from prunetune.trainables import rebuild_from_checkpoint

    config = {
        **tiny_config,
        "name": "zero",
        "trials": 2,
        "concurrency": 1,
        "finetune": {"steps": 0},
        "searcher": {"name": "random", "seed": 4},
        "tracking": {"enabled": False},
    }
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(tmp_path / "zero.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    experiment = tmp_path / "results" / "zero"
    trials = read_trials(experiment)
    assert len(trials) == 2
    setup = read_manifest(experiment).setup()
    data = setup.open_data(torch.device("cpu"))
    for trial in trials.values():
        assert trial.metrics["finetune_steps"] == 0
        assert trial.metrics["accuracy"] == trial.metrics["accuracy_pruned"]
        model = rebuild_from_checkpoint(setup, trial.checkpoint, 10)
        assert evaluate(model, data.eval_batches("val"))[0] == pytest.approx(trial.metrics["accuracy"])
        # the reused worker pruned exactly what a fresh trace of the base gives, then recalibrated
        # BatchNorm as every trial does before its first evaluation
        scratch = _from_scratch(setup, dict(trial.profile), None)
        recalibrate_bn(scratch, data.sample(setup.evaluate.images(), setup.seed)[0], setup.evaluate, seed=setup.seed)
        assert _same_weights(model, scratch)
