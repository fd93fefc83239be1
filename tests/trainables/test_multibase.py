"""Several base models behind one trial: the reward a searcher sees is the mean accuracy."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from prunetune.search.config import parse_config
from prunetune.search.run.prepare import ensure_extra_bases
from prunetune.search.setup import trial_setup, with_extra_bases
from prunetune.trainables import Profile, Recipe
from prunetune.trainables.trial import accuracy_on, mean_over_bases
from tests.conftest import TINY


@pytest.fixture(scope="module")
def two_bases(tmp_path_factory, tiny_base):
    """The tiny search's setup with a second base model trained from another seed (a few steps:
    the search's own base is given, so the recipe trains only the second one)."""
    config = parse_config(
        {**TINY, "base": {**TINY["base"], "checkpoint": str(tiny_base), "steps": 8}, "bases": [{"seed": 1}]}
    )
    setup = replace(trial_setup(config), base_checkpoint=str(tiny_base))
    checkpoints = ensure_extra_bases(config, tmp_path_factory.mktemp("bases"), show_progress=False)
    return config, with_extra_bases(config, setup, checkpoints)


def _profile(setup) -> Profile:
    from prunetune.trainables import find_groups
    from prunetune.trainables.trial import example_input, pruned_model

    model = pruned_model(setup, Profile({}), 10)
    return Profile({g.name: 0.8 for g in find_groups(model, example_input(setup))})


def test_each_extra_base_gets_its_own_checkpoint_and_label(two_bases, tiny_base):
    config, setup = two_bases
    assert setup.label == "digits-s0" and [o.label for o in setup.others] == ["digits-s1"]
    assert setup.others[0].base_checkpoint != str(tiny_base)
    assert (
        torch.load(setup.others[0].base_checkpoint, weights_only=True).keys()
        == torch.load(tiny_base, weights_only=True).keys()
    )


def test_the_reported_accuracy_is_the_mean_over_the_base_models(two_bases):
    _, setup = two_bases
    profile, recipe, cpu = _profile(setup), Recipe(steps=10, lr=0.01, batch_size=32), torch.device("cpu")
    own = accuracy_on(replace(setup, others=()), profile, recipe, cpu)
    metrics = mean_over_bases(setup, own, profile, recipe, cpu)
    other = accuracy_on(setup.others[0], profile, recipe, cpu)  # the same as evaluated alone
    assert metrics["accuracy/digits-s0"] == own and metrics["accuracy/digits-s1"] == other
    assert metrics["accuracy"] == pytest.approx((own + other) / 2)
    assert own != other  # two different base models: the mean is not either one


@pytest.mark.parametrize(
    "bases,message",
    [
        ([{"seed": 0}], "bases[0] is the search's own base model"),
        ([{"seed": 1}, {"seed": 1}], "base label 'digits-s1' names two base models"),
        ([{"data": {"name": "digitz"}}], "unknown data set 'digitz' in bases[0].data"),
    ],
)
def test_base_list_mistakes_are_one_line_errors(bases, message, tmp_path):
    from prunetune.budgets.errors import ConfigError
    from prunetune.search.run.prepare import prepare

    with pytest.raises(ConfigError) as error:
        prepare(parse_config({**TINY, "bases": bases, "storage_path": str(tmp_path)}), show_progress=False)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not any(tmp_path.iterdir())  # nothing written
