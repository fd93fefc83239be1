"""The fine-tune recipe's options: warm-up then cosine, label smoothing, distillation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.feed import TensorData
from prunetune.trainables.train import Distill, Recipe, make_optimizer, train_batches


def _lrs(recipe: Recipe) -> list[float]:
    optimizer, scheduler = make_optimizer(nn.Linear(2, 2), recipe)
    rates = []
    for _ in range(recipe.steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_alone_decays_from_lr_towards_zero() -> None:
    rates = _lrs(Recipe(steps=10, lr=0.1))
    assert rates[0] == pytest.approx(0.1)
    assert rates[5] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_warm_up_rises_linearly_then_the_cosine_runs_over_the_remaining_steps() -> None:
    rates = _lrs(Recipe(steps=12, lr=0.1, warmup=4))
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates[4] == pytest.approx(0.1)  # the peak, where the decay starts
    assert rates[8] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert rates[-1] < 0.01


def _task(n: int = 256) -> TensorData:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, 0] > 0).long()
    return TensorData(x, y, x, y)


def _kl_to(teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(
            nn.functional.kl_div(
                student(x).log_softmax(1), teacher(x).log_softmax(1), log_target=True, reduction="batchmean"
            )
        )


def test_distillation_brings_the_student_closer_to_its_teacher_than_labels_alone() -> None:
    data = _task()
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))  # a teacher with its own views
    teacher.eval()
    x = data.tensors["train"][0]
    distances = {}
    for distill in (None, Distill(alpha=0.9, temperature=2.0)):
        torch.manual_seed(2)
        student = nn.Linear(8, 2)
        recipe = Recipe(steps=150, lr=0.1, batch_size=32, distill=distill)
        train_batches(student, data.train_batches(32, seed=0), recipe, teacher=teacher)
        distances[distill is not None] = _kl_to(teacher, student, x)
    assert distances[True] < 0.5 * distances[False]


def test_label_smoothing_keeps_the_model_from_certainty() -> None:
    data = _task()
    peaks = {}
    for smoothing in (0.0, 0.3):
        torch.manual_seed(2)
        model = nn.Linear(8, 2)
        train_batches(model, data.train_batches(32, seed=0), Recipe(steps=200, lr=0.5, label_smoothing=smoothing))
        with torch.no_grad():
            peaks[smoothing] = float(model(data.tensors["train"][0]).softmax(1).max(1).values.mean())
    assert peaks[0.3] < peaks[0.0] and peaks[0.3] < 0.9


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"warmup": -1}, "option 'warmup'"),
        ({"label_smoothing": 1.0}, "option 'label_smoothing'"),
        ({"distill": {"alpha": 1.5}}, "distill.alpha"),
        ({"distill": {"temperature": 0}}, "distill.temperature"),
        ({"distill": {"tempreature": 2}}, "tempreature"),
    ],
)
def test_bad_recipe_options_are_one_line(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as error:
        Recipe(**options)
    assert "\n" not in str(error.value)
