"""The standard augmentation and evaluation transforms, on whole uint8 batches."""

from __future__ import annotations

import pytest
import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data import augment as A


def _images(n: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("kind", "input_size"), [("small", 16), ("digits", 16), ("photo", 14)])
def test_each_kind_gives_input_size_floats_in_unit_range(kind: str, input_size: int) -> None:
    stored = A.stored_size(kind, input_size)
    assert stored == (16 if kind == "photo" else input_size)  # photos: 8/7 of the input size
    x = A.training(_images(size=stored), input_size, A.PRESETS[kind], torch.Generator().manual_seed(1))
    assert x.shape == (6, 3, input_size, input_size) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("kind", ["small", "photo"])
def test_the_same_seed_gives_the_same_batch_and_another_seed_another(kind: str) -> None:
    images, preset = _images(size=16), A.PRESETS[kind]
    first = A.training(images, 14, preset, torch.Generator().manual_seed(5))
    again = A.training(images, 14, preset, torch.Generator().manual_seed(5))
    other = A.training(images, 14, preset, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_evaluation_is_the_centre_crop_without_randomness() -> None:
    images = _images(size=16)
    view = A.evaluation(images, 14)
    assert torch.equal(view, images[:, :, 1:15, 1:15].float() / 255)
    assert torch.equal(view, A.evaluation(images, 14))


def test_pad_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    images = torch.full((32, 3, 8, 8), 255, dtype=torch.uint8)
    x = A.training(images, 8, A.Augment(crop="pad", flip=False, padding=2), torch.Generator().manual_seed(0))
    black_rows = (x[:, 0].sum(dim=2) == 0).sum(dim=1)  # rows of padding brought into view
    black_cols = (x[:, 0].sum(dim=1) == 0).sum(dim=1)
    assert int(black_rows.max()) <= 2 and int(black_cols.max()) <= 2
    assert int((black_rows + black_cols).sum()) > 0  # some images moved
    inside = x[:, 0][x[:, 0] > 0]
    assert torch.all(inside == 1.0)  # the image itself is not resampled


def test_flip_mirrors_about_half_of_the_images_and_changes_nothing_else() -> None:
    images = _images(n=200, size=8)
    x = A.training(images, 8, A.Augment(crop="none", flip=True), torch.Generator().manual_seed(0))
    plain, mirrored = images.float() / 255, images.flip(-1).float() / 255
    same = torch.tensor([torch.equal(a, b) for a, b in zip(x, plain)])
    flipped = torch.tensor([torch.equal(a, b) for a, b in zip(x, mirrored)])
    assert torch.all(same | flipped) and 70 < int(flipped.sum()) < 130


def test_a_resized_crop_of_the_whole_image_keeps_its_content() -> None:
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    images[:, :, :, 8:] = 255  # right half white
    whole = A.Augment(crop="resized", flip=False, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    x = A.training(images, 8, whole, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 8, 8)
    assert float(x[..., :3].max()) < 0.05 and float(x[..., 5:].min()) > 0.95


def test_augment_settings_are_resolved_from_the_set_and_refused_in_one_line() -> None:
    assert A.resolve("standard", "digits").flip is False  # a flipped digit is another symbol
    assert A.resolve("none", "photo") == A.NONE
    assert A.resolve({"flip": False}, "photo") == A.Augment(crop="resized", flip=False)
    with pytest.raises(ConfigError, match="data.augment option 'crop'"):
        A.resolve({"crop": "rotate"}, "small")
    with pytest.raises(ConfigError, match="scale must be"):
        A.resolve({"scale": (0.5, 2.0)}, "photo")
    with pytest.raises(ConfigError, match="data.augment='heavy' is invalid"):
        A.resolve("heavy", "small")


@pytest.mark.parametrize("crop", ["none", "pad"])
def test_augmenting_never_writes_into_the_shared_images(crop: str) -> None:
    images = _images(n=32, size=16)
    before = images.clone()
    A.training(images, 14, A.Augment(crop=crop, flip=True), torch.Generator().manual_seed(0))
    assert torch.equal(images, before)  # the node cache's pages are read-only and shared
