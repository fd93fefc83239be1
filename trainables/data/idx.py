"""MNIST-format data sets (IDX files): Fashion-MNIST as Debian's ``dataset-fashion-mnist`` installs
it, and MNIST for users who have its files.

Both ship four files, gzipped or not: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``. The IDX format is a big-endian header
(magic number: two zero bytes, a type code, the number of dimensions; then each dimension) followed
by the raw values. Validation is ``val_size`` seeded images held out of train; test is t10k.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.splits import RawSplits, _positive_int, _subset, register_dataset

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package puts it
MNIST_ROOT = Path("/usr/share/datasets/mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one these sets use


@register_dataset("fashion_mnist", augment="small")
def _fashion_mnist(
    *,
    input_size: int,
    root: Path | None,
    seed: int,
    val_size: int = 5000,
    limit_train: int | None = None,
    limit_val: int | None = None,
    limit_test: int | None = None,
) -> RawSplits:
    """Zalando's Fashion-MNIST: 28x28 gray images of 10 kinds of clothing (MIT licence); by
    default from ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``)."""
    hint = "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass root="
    return _read_idx_set(
        "fashion_mnist", root or FASHION_MNIST_ROOT, hint, seed, val_size, limit_train, limit_val, limit_test
    )


@register_dataset("mnist", augment="digits")
def _mnist(
    *,
    input_size: int,
    root: Path | None,
    seed: int,
    val_size: int = 5000,
    limit_train: int | None = None,
    limit_val: int | None = None,
    limit_test: int | None = None,
) -> RawSplits:
    """LeCun's MNIST handwritten digits in their IDX files (by default in ``/usr/share/datasets/mnist``)."""
    hint = "put MNIST's four IDX files there or pass root=<their folder>; prunetune never downloads data"
    limits = (limit_train, limit_val, limit_test)
    return _read_idx_set("mnist", root or MNIST_ROOT, hint, seed, val_size, *limits)


def _read_idx_set(
    name: str,
    root: Path,
    hint: str,
    seed: int,
    val_size: int,
    limit_train: int | None,
    limit_val: int | None,
    limit_test: int | None,
) -> RawSplits:
    paths = {key: _find(root, file) for key, file in FILES.items()}
    missing = [FILES[key] + ".gz" for key, path in paths.items() if path is None]
    if missing:
        raise ConfigError(f"{name} needs {', '.join(missing)} in {root}: {hint}")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfigError(
                f"{name}: {paths[f'{split}_images']} holds {images.shape} and {paths[f'{split}_labels']} "
                f"{labels.shape}; expected (N, H, W) images and N labels"
            )
    images = torch.from_numpy(arrays["train_images"]).unsqueeze(1)
    labels = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    if not 0 < _positive_int("val_size", val_size) < len(labels):
        raise ConfigError(f"option val_size={val_size} is invalid: it must be below the {len(labels)} training images")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:val_size].sort().values, order[val_size:].sort().values
    train = _subset(images[kept], labels[kept], "limit_train", limit_train, seed)
    val = _subset(images[held], labels[held], "limit_val", limit_val, seed)
    test_images = torch.from_numpy(arrays["test_images"]).unsqueeze(1)
    test = _subset(
        test_images, torch.from_numpy(arrays["test_labels"].astype(np.int64)), "limit_test", limit_test, seed
    )
    num_classes = int(max(labels.max(), test[1].max())) + 1
    return RawSplits(*train, *val, num_classes=num_classes, test_images=test[0], test_labels=test[1])


def _find(root: Path, file: str) -> Path | None:
    for candidate in (root / f"{file}.gz", root / file):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """The unsigned-byte array of one IDX file (gzipped or not); a damaged file is a
    ConfigError naming it."""
    try:
        blob = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ConfigError(f"{path} cannot be read ({error}); replace it with the original file") from None
    if len(blob) < 4 or blob[:2] != b"\0\0" or blob[2] != _UBYTE or not 1 <= blob[3] <= 4:
        raise ConfigError(f"{path} is not an IDX file of unsigned bytes (its header is {blob[:4].hex()})")
    dims = blob[3]
    header = 4 + 4 * dims
    shape = tuple(int(d) for d in np.frombuffer(blob[4:header], dtype=">u4"))
    if len(blob) != header + int(np.prod(shape)):
        raise ConfigError(
            f"{path} is truncated or padded: its header says {shape} values, the file holds "
            f"{len(blob) - header}; replace it with the original file"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape).copy()
