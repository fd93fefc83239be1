"""Fashion-MNIST and MNIST from their IDX files: tiny fixtures in the real format, and the real
Fashion-MNIST that Debian's dataset-fashion-mnist package installs (``make test`` installs it
as root; CI fails rather than skips without it)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data import load_dataset
from prunetune.trainables.data.idx import FASHION_MNIST_ROOT


def _write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    blob = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if compress else blob)


def _fixture(root: Path, train: int = 40, test: int = 10, compress: bool = True) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, count in (("train", train), ("t10k", test)):
        _write_idx(root / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 28, 28)), compress)
        _write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", np.arange(count) % 10, compress)
    return root


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_load_with_a_validation_split_held_out_of_train(tmp_path: Path, compress: bool) -> None:
    root = _fixture(tmp_path / "fm", compress=compress)
    splits = load_dataset("fashion_mnist", root=root, input_size=28, options={"val_size": 8})
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (32, 8, 10)
    assert splits.num_classes == 10 and splits.train_x.shape[1:] == (3, 28, 28)
    same = load_dataset("mnist", root=root, input_size=28, options={"val_size": 8})  # the same reader
    assert len(same.test_y) == 10


def test_missing_files_name_the_package_that_installs_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_dataset("fashion_mnist", root=tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and "apt-get install dataset-fashion-mnist" in message
    assert "\n" not in message


def test_a_truncated_idx_file_is_named(tmp_path: Path) -> None:
    root = _fixture(tmp_path / "fm", compress=False)
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ConfigError, match=f"{images} is truncated or padded"):
        load_dataset("fashion_mnist", root=root, options={"val_size": 8})


def _debian_files() -> bool:
    present = (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file()
    if not present and os.environ.get("PRUNETUNE_REQUIRE_DATASETS"):
        pytest.fail("Debian's dataset-fashion-mnist is not installed; `make test` installs it as root")
    return present


def test_the_real_fashion_mnist_from_debians_package() -> None:
    if not _debian_files():
        pytest.skip("apt-get install dataset-fashion-mnist to run this test")
    splits = load_dataset("fashion_mnist", input_size=28, options={"limit_train": 1000})
    assert len(splits.val_y) == 5000 and len(splits.test_y) == 10_000 and len(splits.train_y) == 1000
    assert splits.num_classes == 10
    assert sorted(splits.test_y.bincount().tolist()) == [1000] * 10  # the official test split, balanced
