from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetune.budgets.errors import ConfigError
from prunetune.trainables import DivergedError, Recipe, evaluate, train_steps
from prunetune.trainables.train import make_optimizer


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 4, 4, generator=g)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()  # learnable: sign of channel 0's mean
    return x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 2))


def test_training_learns_and_evaluate_reports_accuracy():
    x, y = _problem()
    model = _model()
    before, _ = evaluate(model, x, y)
    train_steps(model, x, y, Recipe(steps=150, lr=0.1, batch_size=32))
    after, loss = evaluate(model, x, y)
    assert after > 0.9 > before and loss < 0.5


def test_training_in_chunks_equals_one_run():
    x, y = _problem()
    recipe = Recipe(steps=20, lr=0.05, batch_size=32)
    whole, parts = _model(), _model()
    train_steps(whole, x, y, recipe, seed=3)
    optimizer = make_optimizer(parts, recipe)
    for start, stop in [(0, 7), (7, 15), (15, 20)]:
        train_steps(parts, x, y, recipe, seed=3, start=start, stop=stop, optimizer=optimizer)
    for a, b in zip(whole.parameters(), parts.parameters()):
        assert torch.equal(a, b)


def test_diverging_loss_raises_with_the_step():
    x, y = _problem()
    with pytest.raises(DivergedError, match="loss is (nan|inf) at step"):
        train_steps(_model(), x * 1e30, y, Recipe(steps=10, lr=1e10, batch_size=32))


def test_recipe_rejects_nonsense_in_one_line():
    with pytest.raises(ConfigError, match=r"training recipe option 'lr': Input should be greater than 0 \(got 0\)"):
        Recipe(lr=0)
    with pytest.raises(ConfigError, match="has no option 'epochs'; valid options: steps, lr"):
        Recipe(epochs=3)


def test_recipe_builds_by_position_or_keyword_and_replace_validates():
    assert Recipe(300, 0.05, 64) == Recipe(steps=300, lr=0.05, batch_size=64)
    assert Recipe(steps=3).replace(lr=0.5) == Recipe(3, 0.5)
    with pytest.raises(ConfigError, match="'batch_size'"):
        Recipe().replace(batch_size=0)
    with pytest.raises(TypeError, match="two values for 'steps'"):
        Recipe(3, steps=4)
