from __future__ import annotations

from pathlib import Path

import pytest

from prunetune.budgets.errors import ConfigError, PrunetuneError
from prunetune.search.config import load_config, parse_config


def test_defaults_make_a_complete_config():
    config = parse_config({})
    assert config.model.name == "resnet20" and config.searcher.name == "random" and config.trials >= 1


def test_typo_in_a_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'; did you mean 'model'\?"):
        parse_config({"modle": {"name": "resnet20"}})
    with pytest.raises(ConfigError, match=r"unknown config key 'finetune.stpes'; did you mean 'steps'\?"):
        parse_config({"finetune": {"stpes": 3}})


def test_bad_values_name_key_and_value():
    with pytest.raises(ConfigError, match=r"config key 'trials'.*greater than or equal to 1.*got 0"):
        parse_config({"trials": 0})
    with pytest.raises(ConfigError, match=r"prune.criterion"):
        parse_config({"prune": {"criterion": "l7"}})


def test_bad_budget_is_one_line():
    with pytest.raises(PrunetuneError) as err:
        parse_config({"budgets": [{"cost": "flops", "max": 0.5}]})
    assert "flops" in str(err.value) and "\n" not in str(err.value)


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nmodel: {name: vgg11}\n")
    config = load_config(path, ["trials=5", "model.width=0.5", "budgets=[{cost: params, max: 0.3, relative: true}]"])
    assert (config.name, config.trials, config.model.name, config.model.width) == ("x", 5, "vgg11", 0.5)
    assert config.budgets[0].cost == "params"


def test_missing_file_and_bad_override_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_config(None, ["trials"])


def test_trial_sections_are_the_trainables_types_with_the_configs_defaults():
    from prunetune.trainables import PruneSettings, Recipe, TaperSettings

    config = parse_config({"taper": {"levels": [0.3, 0.7], "sweep": {"rate": [0.001, 0.003]}}})
    assert isinstance(config.finetune, Recipe) and isinstance(config.base, Recipe)
    assert (config.finetune.steps, config.base.steps, Recipe().steps) == (50, 400, 100)
    assert type(config.prune) is PruneSettings
    assert config.base.as_recipe() == Recipe(400, 0.05, 128)  # what names a trained base: no checkpoint
    # What a taper trial receives through Tune's config rebuilds the same settings.
    settings = TaperSettings(**config.taper.settings())
    assert settings.levels == (0.7, 0.3) and settings == TaperSettings(levels=[0.7, 0.3])


def test_unknown_criterion_lists_the_registered_ones_at_parse_time():
    with pytest.raises(ConfigError) as err:
        parse_config({"prune": {"criterion": "taylr"}})
    message = str(err.value)
    assert message.startswith("config key 'prune.criterion': unknown criterion 'taylr' (did you mean 'taylor'?)")
    assert "choose one of: bn_scale, l1, l2, random, taylor" in message and "\n" not in message


def test_trial_setup_parts_hash_and_pickle_as_values(tiny_base):
    import pickle

    from prunetune.trainables import DataSpec, ModelSpec, TrialSetup

    config = parse_config({"prune": {"criterion": "taylor", "round_to": 4}, "finetune": {"steps": 7}})
    setup = TrialSetup(ModelSpec(), DataSpec(), str(tiny_base), prune=config.prune, finetune=config.finetune)
    again = TrialSetup(
        ModelSpec(),
        DataSpec(),
        str(tiny_base),
        prune=parse_config({"prune": {"criterion": "taylor", "round_to": 4}}).prune,
        finetune=config.finetune,
    )
    assert hash(setup) == hash(again) and setup == again  # usable as an lru_cache key
    shipped = pickle.loads(pickle.dumps(setup))  # what Ray does to reach a worker
    assert shipped == setup and shipped.prune.round_to == 4 and shipped.finetune.steps == 7


def test_epochs_stand_in_for_steps_until_the_training_split_is_known():
    config = parse_config(
        {
            "base": {"epochs": 1.5, "batch_size": 64},
            "finetune": {"epochs": 2, "batch_size": 32},
            "confirm": {"top": 1, "epochs": 0.5},  # in the fine-tune's batches: confirmation trials run it
        }
    )
    assert (config.base.steps, config.finetune.steps, config.confirm.steps) == (None, None, None)
    assert list(config.in_epochs()) == ["base", "finetune", "confirm"]
    # 1077 training images: 16 batches of 64 or 33 of 32 per epoch (the last partial batch
    # dropped, as the batch order drops it); a fraction of an epoch rounds up.
    resolved = config.resolved(1077)
    assert (resolved.base.steps, resolved.finetune.steps, resolved.confirm.steps) == (24, 66, 17)
    assert resolved.finetune.epochs == 2 and resolved.base.as_recipe().steps == 24
    assert resolved.as_written() == config  # what a manifest records: the epochs, not the steps
    assert parse_config(config.model_dump(mode="json")) == config
    assert parse_config({"finetune": {"steps": 7}}).resolved(1077).finetune.steps == 7  # steps stay as given


def test_steps_and_epochs_together_or_epochs_not_positive_are_one_line_errors():
    with pytest.raises(ConfigError) as err:
        parse_config({"finetune": {"steps": 100, "epochs": 2}})
    message = str(err.value)
    assert message.startswith("config key 'finetune': give finetune.steps or finetune.epochs, not both")
    assert "--set finetune.steps=null" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"config key 'confirm': give confirm.steps or confirm.epochs, not both"):
        parse_config({"confirm": {"steps": 10, "epochs": 1}})
    for bad in (0, -1, float("nan")):
        with pytest.raises(ConfigError, match=r"config key 'base.epochs'.*(greater than 0|finite)"):
            parse_config({"base": {"epochs": bad}})
    with pytest.raises(ConfigError, match=r"give finetune.steps \(optimiser steps\) or finetune.epochs"):
        parse_config({"finetune": {"steps": None}})
    # --set finetune.steps=null --set finetune.epochs=0.5 replaces a YAML's steps.
    assert parse_config({"finetune": {"steps": None, "epochs": 0.5}}).finetune.epochs == 0.5


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    """The configs the README and BENCHMARKS.md tell users to run parse as they are."""
    assert load_config(path).name
