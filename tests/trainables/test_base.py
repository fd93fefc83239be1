from __future__ import annotations

import pytest
import torch

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.setup import specs
from prunetune.trainables import ensure_base_checkpoint, load_base
from tests.conftest import TINY


def test_base_checkpoint_is_trained_once_and_loads_weights_only(tiny_base):
    model, data, recipe = specs(parse_config(TINY))
    again = ensure_base_checkpoint(model, data, recipe, tiny_base.parent, show_progress=False)
    assert again == tiny_base  # same settings: reused, not retrained
    blob = torch.load(tiny_base, weights_only=True)
    assert blob["meta"]["accuracy"] > 0.3  # better than chance on 10 digits
    net = load_base(model, 10, tiny_base)
    assert torch.equal(net.state_dict()["fc.weight"], blob["state_dict"]["fc.weight"])


def test_checkpoint_of_another_model_is_a_clear_error(tiny_base):
    model, _, _ = specs(parse_config({**TINY, "model": {"name": "resnet20", "width": 0.5, "input_size": 8}}))
    with pytest.raises(ConfigError, match="does not fit model 'resnet20'"):
        load_base(model, 10, tiny_base)


def test_missing_checkpoint_names_the_path(tmp_path):
    model, _, _ = specs(parse_config(TINY))
    with pytest.raises(ConfigError, match="nope.pt"):
        load_base(model, 10, tmp_path / "nope.pt")
