"""The data-set registry: bundled and generated sets, and files in their real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data import DataSplits, dataset_names, load_dataset
from prunetune.trainables.data import splits as data


def _pixels(splits: DataSplits, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: values in [0, 1]."""
    return x * torch.tensor(splits.std)[:, None, None] + torch.tensor(splits.mean)[:, None, None]


def test_digits_split_is_stratified_resized_and_normalised() -> None:
    splits = load_dataset("digits", input_size=16)
    assert len(splits.train_y) + len(splits.val_y) + len(splits.test_y) == 1797 and splits.num_classes == 10
    assert len(splits.val_y) == len(splits.test_y) == 360  # 20% each: profiles chosen on val, reported on test
    assert splits.test_x.shape[1:] == (3, 16, 16)
    assert splits.input_shape == (3, 16, 16) and splits.val_x.shape[1:] == (3, 16, 16)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert torch.allclose(splits.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(splits.train_x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    val_share = splits.val_y.bincount(minlength=10) / len(splits.val_y)
    assert val_share.min() > 0.08 and val_share.max() < 0.12  # about 10% each, as in the full set


def test_digits_val_fraction_and_seed_choose_the_split() -> None:
    half = load_dataset("digits", input_size=8, options={"val_fraction": 0.5, "test_fraction": 0.1})
    assert abs(len(half.val_y) - 1797 / 2) <= 1 and abs(len(half.test_y) - 180) <= 1
    with pytest.raises(ConfigError, match="leave no training images"):
        load_dataset("digits", options={"val_fraction": 0.5, "test_fraction": 0.5})
    other_seed = load_dataset("digits", input_size=8, seed=1)
    assert not torch.equal(other_seed.val_y, load_dataset("digits", input_size=8).val_y)
    with pytest.raises(ConfigError, match="val_fraction"):
        load_dataset("digits", options={"val_fraction": 1.5})


@pytest.mark.parametrize("size", [16, 32])
def test_shapes_are_balanced_normalised_images_of_the_requested_size(size: int) -> None:
    splits = load_dataset("shapes", input_size=size, options={"n_train": 200, "n_val": 50, "n_test": 30})
    assert splits.train_x.shape == (200, 3, size, size)
    assert splits.val_x.shape == (50, 3, size, size) and splits.test_x.shape == (30, 3, size, size)
    assert not torch.equal(splits.val_x[:30], splits.test_x)  # a stream of its own
    assert splits.train_y.bincount().tolist() == [20] * 10
    assert torch.allclose(splits.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    pixels = _pixels(splits, splits.val_x)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_shapes_are_reproducible_from_the_seed_and_cached_per_process() -> None:
    options = {"n_train": 100, "n_val": 20}
    first = load_dataset("shapes", seed=3, options=options)
    assert load_dataset("shapes", seed=3, options=dict(options)) is first
    uncached = data._prepared.cache_clear() or data._load_cached.__wrapped__(
        "shapes", 32, None, 3, tuple(sorted(options.items()))
    )
    assert torch.equal(uncached.train_x, first.train_x) and torch.equal(uncached.val_y, first.val_y)
    other_seed = load_dataset("shapes", seed=4, options=options)
    assert not torch.equal(other_seed.train_x, first.train_x)
    more_train = load_dataset("shapes", seed=3, options={"n_train": 150, "n_val": 20})
    assert torch.allclose(_pixels(more_train, more_train.val_x), _pixels(first, first.val_x), atol=1e-5)


def test_unknown_names_and_options_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="'emnist'.*cifar10, cifar100, digits, fashion_mnist"):
        load_dataset("emnist")
    with pytest.raises(ConfigError, match="n_trian.*n_train, n_val"):
        load_dataset("shapes", options={"n_trian": 10})
    assert {"digits", "shapes", "cifar10", "cifar100", "imagefolder"} <= set(dataset_names())


# --- CIFAR in its real on-disk format (python pickles), tiny ----------------------------------

CIFAR_LAYOUTS = {
    # name: (folder, train files, test file, meta file, label key, meta key, classes)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
        10,
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names", 100),
}


def _write_cifar(root: Path, name: str, per_file: int = 3) -> tuple[np.ndarray, list[int]]:
    """Pickled dicts as in the real files; returns the train images (N, 3072) and labels.

    The originals are Python 2 pickles whose str keys torchvision reads (encoding latin1) as
    "data" and "labels"; Python 3 str keys read back the same.
    """
    folder, train_files, test_file, meta_file, label_key, meta_key, classes = CIFAR_LAYOUTS[name]
    (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for file in [*train_files, test_file]:
        batch = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        batch_labels = rng.integers(0, classes, per_file).tolist()
        with open(root / folder / file, "wb") as handle:
            pickle.dump({"data": batch, label_key: batch_labels}, handle)
        if file != test_file:
            images.append(batch)
            labels += batch_labels
    with open(root / folder / meta_file, "wb") as handle:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, handle)
    return np.concatenate(images), labels


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_files_load_with_pixels_and_labels_intact(tmp_path: Path, name: str) -> None:
    images, labels = _write_cifar(tmp_path, name, per_file=6 if name == "cifar100" else 3)
    splits = load_dataset(name, root=tmp_path, options={"verify": False, "val_size": 4})
    assert splits.num_classes == CIFAR_LAYOUTS[name][-1] and splits.input_shape == (3, 32, 32)
    # Validation is held out of the training files; test is the official test batch.
    assert (
        len(splits.train_y) == len(labels) - 4
        and len(splits.val_y) == 4
        and len(splits.test_y) == (6 if name == "cifar100" else 3)
    )
    assert sorted(splits.train_y.tolist() + splits.val_y.tolist()) == sorted(labels)
    expected = torch.from_numpy(images).reshape(-1, 3, 32, 32) / 255.0
    pixels = torch.cat([_pixels(splits, splits.train_x), _pixels(splits, splits.val_x)])
    assert sorted(pixels.flatten().mul(255).round().tolist()) == sorted(expected.flatten().mul(255).round().tolist())
    with pytest.raises(ConfigError, match="val_size"):
        load_dataset(name, root=tmp_path, options={"verify": False, "val_size": len(labels)})


def test_cifar_limits_take_a_seeded_subset(tmp_path: Path) -> None:
    images, labels = _write_cifar(tmp_path, "cifar10")
    options = {"verify": False, "val_size": 4, "limit_train": 5, "limit_val": 2, "limit_test": 1}
    splits = load_dataset("cifar10", root=str(tmp_path), input_size=16, options=options)
    assert len(splits.train_y) == 5 and len(splits.val_y) == 2 and len(splits.test_y) == 1
    assert splits.train_x.shape[1:] == (3, 16, 16)
    other = load_dataset("cifar10", root=str(tmp_path), input_size=16, seed=1, options=options)
    assert set(splits.train_y.tolist()) <= set(labels)
    assert not torch.equal(other.train_x, splits.train_x)


def test_cifar_md5_check_rejects_repacked_files_unless_verify_is_off(tmp_path: Path) -> None:
    _write_cifar(tmp_path, "cifar10")
    with pytest.raises(ConfigError, match="verify: false"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_cifar_files_say_where_they_belong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "never downloads" in message
    with pytest.raises(ConfigError, match="cifar-100-python"):
        load_dataset("cifar100")


# --- ImageFolder ------------------------------------------------------------------------------


def _write_png(path: Path, size: tuple[int, int], mode: str, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_imagefolder_decodes_folders_of_pngs_once_at_the_input_size(tmp_path: Path) -> None:
    _write_png(tmp_path / "train" / "cat" / "a.png", (20, 12), "RGB", 200)
    _write_png(tmp_path / "train" / "cat" / "b.png", (8, 8), "L", 90)
    _write_png(tmp_path / "train" / "dog" / "c.png", (40, 40), "RGB", 10)
    _write_png(tmp_path / "val" / "dog" / "d.png", (16, 16), "RGB", 30)
    _write_png(tmp_path / "test" / "dog" / "e.png", (16, 16), "RGB", 40)
    _write_png(tmp_path / "test" / "cat" / "f.png", (16, 16), "RGB", 50)
    splits = load_dataset("imagefolder", root=tmp_path, input_size=16)
    assert splits.num_classes == 2 and splits.train_y.tolist() == [0, 0, 1]
    assert splits.val_y.tolist() == [1]  # val has only "dog": still train's class number
    assert splits.test_y.tolist() == [0, 1]
    assert splits.train_x.shape == (3, 3, 16, 16)
    gray = _pixels(splits, splits.train_x[1])
    assert torch.allclose(gray, torch.full_like(gray, 90 / 255), atol=1e-5)


def test_a_loader_without_a_test_split_holds_out_half_of_val(tmp_path: Path) -> None:
    for index in range(4):
        _write_png(tmp_path / "train" / ("cat", "dog")[index % 2] / f"t{index}.png", (8, 8), "RGB", index)
        _write_png(tmp_path / "val" / "cat" / f"v{index}.png", (8, 8), "RGB", 100 + 10 * index)
    splits = load_dataset("imagefolder", root=tmp_path, input_size=7)  # stored at 8 px: 8/7 of the input
    assert len(splits.val_y) == len(splits.test_y) == 2
    seen = {round(float(_pixels(splits, x)[0, 0, 0]) * 255) for x in (*splits.val_x, *splits.test_x)}
    assert seen == {100, 110, 120, 130}  # the four val images, split without overlap


def test_imagefolder_names_a_missing_folder(tmp_path: Path) -> None:
    _write_png(tmp_path / "train" / "cat" / "a.png", (8, 8), "RGB", 1)
    _write_png(tmp_path / "train" / "dog" / "b.png", (8, 8), "RGB", 1)
    with pytest.raises(ConfigError, match=str(tmp_path / "val")):
        load_dataset("imagefolder", root=tmp_path)


def test_a_folder_with_one_class_is_refused_before_anything_is_decoded(tmp_path: Path) -> None:
    _write_png(tmp_path / "train" / "cat" / "a.png", (8, 8), "RGB", 1)
    _write_png(tmp_path / "val" / "cat" / "b.png", (8, 8), "RGB", 1)
    with pytest.raises(ConfigError, match=r"train has 1 class folder \(cat\); a classifier needs at least 2"):
        load_dataset("imagefolder", root=tmp_path)


def test_photos_keep_their_aspect_ratio_resized_by_the_shorter_side_and_centre_cropped(tmp_path: Path) -> None:
    wide = np.zeros((16, 48, 3), dtype=np.uint8)
    wide[:, 16:32] = 255  # a white middle third: the centre crop of the resized image is all white
    for split, name in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "dog")):
        (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(wide).save(tmp_path / split / name / "wide.png")
    splits = load_dataset("imagefolder", root=tmp_path, input_size=14)  # stored at 16: 8/7 of 14
    pixels = _pixels(splits, splits.train_x[0])
    assert splits.train_x.shape[1:] == (3, 14, 14)
    assert pixels.min() > 0.9  # squashing the whole image to a square would bring the black sides in


# --- damaged files: one error naming the file ---------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "a list"])
def test_a_damaged_cifar_batch_is_named_with_the_fix(tmp_path: Path, damage: str) -> None:
    _write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    if damage == "truncated":
        batch.write_bytes(batch.read_bytes()[:500])
    elif damage == "random bytes":
        batch.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    else:
        batch.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ConfigError) as error:
        load_dataset("cifar10", root=tmp_path, options={"verify": False, "val_size": 4})
    message = str(error.value)
    assert f"cifar10 file {batch} cannot be read" in message and "replace it with the original file" in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_corrupt_png_in_an_imagefolder_is_named_with_the_fix(tmp_path: Path, damage: str) -> None:
    _write_png(tmp_path / "train" / "cat" / "a.png", (8, 8), "RGB", 1)
    _write_png(tmp_path / "train" / "dog" / "c.png", (8, 8), "RGB", 3)
    _write_png(tmp_path / "val" / "cat" / "b.png", (8, 8), "RGB", 2)
    _write_png(tmp_path / "val" / "dog" / "d.png", (8, 8), "RGB", 2)
    bad = tmp_path / "train" / "cat" / "bad.png"
    if damage == "random bytes":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(2).integers(0, 256, 300, dtype=np.uint8).tobytes())
    else:
        Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:2000])
    with pytest.raises(ConfigError) as error:
        load_dataset("imagefolder", root=tmp_path, input_size=8)
    message = str(error.value)
    assert message.startswith(f"imagefolder: {bad} cannot be decoded") and "replace the file or remove it" in message
    assert "\n" not in message
