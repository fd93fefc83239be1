"""Data sets that need no files: scikit-learn's digits and generated shapes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.splits import RawSplits, _positive_int, register_dataset

# --- digits: scikit-learn's bundled 8x8 handwritten digits ----------------------------------


@register_dataset("digits", augment="digits")
def _digits(
    *, input_size: int, root: Path | None, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> RawSplits:
    """1797 real 8x8 gray digits shipped with scikit-learn; stratified seeded train, val and
    test splits (by default 60/20/20)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    for option, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"option {option}={fraction!r} is invalid: it must be in (0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"options val_fraction + test_fraction = {val_fraction + test_fraction:g} "
            "leave no training images; keep their sum below 1"
        )
    bunch = load_digits()
    images = torch.from_numpy(bunch.images / 16.0).float().unsqueeze(1)
    labels = torch.from_numpy(bunch.target)
    rest, test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=bunch.target, random_state=seed
    )
    train, val = train_test_split(
        rest, test_size=val_fraction / (1.0 - test_fraction), stratify=bunch.target[rest], random_state=seed
    )
    return RawSplits(
        images[train],
        labels[train],
        images[val],
        labels[val],
        num_classes=10,
        test_images=images[test],
        test_labels=labels[test],
    )


# --- shapes: ten procedural classes, generated from the seed ---------------------------------

# Each class is a mask over coordinates (u, v) that span [-1, 1] across the shape's box.
_ShapeMask = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _box(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 1.0


def _bands(t: torch.Tensor, count: float) -> torch.Tensor:
    return torch.floor((t + 1.0) * count / 2.0).remainder(2) == 0


_SHAPES: Sequence[tuple[str, _ShapeMask]] = (
    ("circle", lambda u, v: u**2 + v**2 <= 1.0),
    ("ring", lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.35)),
    ("square", lambda u, v: torch.maximum(u.abs(), v.abs()) <= 0.85),
    ("hollow_square", lambda u, v: _box(u, v) & (torch.maximum(u.abs(), v.abs()) >= 0.6)),
    ("triangle", lambda u, v: (v.abs() <= 0.9) & (u.abs() <= (v + 0.9) / 1.8)),
    ("horizontal_bars", lambda u, v: _box(u, v) & _bands(v, 5)),
    ("vertical_bars", lambda u, v: _box(u, v) & _bands(u, 5)),
    ("diagonal_stripes", lambda u, v: _box(u, v) & _bands((u + v) / 2.0, 6)),
    ("cross", lambda u, v: _box(u, v) & ((u.abs() <= 0.3) | (v.abs() <= 0.3))),
    ("checkerboard", lambda u, v: _box(u, v) & (_bands(u, 4) == _bands(v, 4))),
)
SHAPE_CLASSES: tuple[str, ...] = tuple(name for name, _ in _SHAPES)


@register_dataset("shapes")
def _shapes(
    *, input_size: int, root: Path | None, seed: int, n_train: int = 2000, n_val: int = 500, n_test: int = 500
) -> RawSplits:
    """Ten balanced classes of shapes and textures with random place, size, colours and noise.

    Train, val and test draw from separate streams of ``seed``, so ``n_train`` never changes
    val or test.
    """
    train_x, train_y = _draw_shapes(_positive_int("n_train", n_train), input_size, seed, 0)
    val_x, val_y = _draw_shapes(_positive_int("n_val", n_val), input_size, seed, 1)
    test_x, test_y = _draw_shapes(_positive_int("n_test", n_test), input_size, seed, 2)
    return RawSplits(train_x, train_y, val_x, val_y, num_classes=len(_SHAPES), test_images=test_x, test_labels=test_y)


def _draw_shapes(count: int, size: int, seed: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, stream])
    labels = torch.from_numpy(rng.permutation(np.arange(count) % len(_SHAPES)))
    radius = rng.uniform(0.2, 0.42, count)
    centre = rng.uniform(radius[:, None], 1.0 - radius[:, None], (count, 2))
    fg = rng.uniform(0.0, 1.0, (count, 3))
    # Shifting every channel by 0.3..0.7 (mod 1) keeps the shape visible on its background.
    bg = (fg + rng.uniform(0.3, 0.7, (count, 3))) % 1.0
    sigma = rng.uniform(0.03, 0.12, (count, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal((count, 3, size, size), dtype=np.float32)
    noise *= sigma

    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    as_t = functools.partial(torch.as_tensor, dtype=torch.float32)
    u = (grid[None, None, :] - as_t(centre[:, 0, None, None])) / as_t(radius[:, None, None])
    v = (grid[None, :, None] - as_t(centre[:, 1, None, None])) / as_t(radius[:, None, None])
    mask = torch.zeros(count, size, size)
    for label, (_, shape) in enumerate(_SHAPES):
        chosen = labels == label
        mask[chosen] = shape(u[chosen], v[chosen]).float()
    fg_t, bg_t = as_t(fg)[:, :, None, None], as_t(bg)[:, :, None, None]
    images = bg_t + (fg_t - bg_t) * mask[:, None] + torch.from_numpy(noise)
    return images.clamp_(0.0, 1.0), labels
