from __future__ import annotations

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
