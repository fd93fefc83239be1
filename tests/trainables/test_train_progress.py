"""What ``train_base`` prints while the dense model trains: in a log (stderr not a terminal) a
few plain lines, not a progress bar redrawn every two seconds."""

from __future__ import annotations

import re

import torch
from torch import nn

from prunetune.trainables.data.feed import TensorData
from prunetune.trainables.train import PlainProgress, Recipe, train_base


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def _batches(x: torch.Tensor, y: torch.Tensor):
    return TensorData(x, y, x, y).train_batches(16, seed=0)


def test_a_log_gets_one_plain_line_per_quarter_with_the_loss(capsys):
    x, y = _data()
    train_base(
        nn.Linear(6, 3),
        TensorData(x, y, x, y).train_batches(16, 0),
        Recipe(steps=10, batch_size=16),
        show_progress=True,
    )
    captured = capsys.readouterr()  # capsys: stderr is not a terminal
    lines = captured.err.strip().splitlines()
    assert [re.sub(r", loss .*", "", line) for line in lines] == [
        "training base model: 30% (3/10 steps)",
        "training base model: 50% (5/10 steps)",
        "training base model: 80% (8/10 steps)",
        "training base model: 100% (10/10 steps)",
    ]
    assert all(re.search(r", loss \d+\.\d{3}$", line) for line in lines), lines
    assert "\r" not in captured.err and "it/s" not in captured.err  # no tqdm bar


def test_no_progress_prints_nothing(capsys):
    x, y = _data()
    train_base(
        nn.Linear(6, 3),
        TensorData(x, y, x, y).train_batches(16, 0),
        Recipe(steps=10, batch_size=16),
        show_progress=False,
    )
    assert capsys.readouterr().err == ""


def test_three_steps_print_at_each_mark_once(capsys):
    progress = PlainProgress(total=3, description="x")
    for _ in range(3):
        progress.update(1)
        progress.set_postfix(loss="1.000")
    assert capsys.readouterr().err.splitlines() == [
        "x: 33% (1/3 steps), loss 1.000",
        "x: 67% (2/3 steps), loss 1.000",
        "x: 100% (3/3 steps), loss 1.000",
    ]
