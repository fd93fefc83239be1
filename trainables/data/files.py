"""CIFAR-10 and CIFAR-100 in their python version, read from files the user has."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.splits import RawSplits, _positive_int, _subset, register_dataset

# --- files on disk: CIFAR and ImageFolder -----------------------------------------------------


@register_dataset("cifar10")
def _cifar10(
    *,
    input_size: int,
    root: Path | None,
    seed: int,
    verify: bool = True,
    val_size: int = 5000,
    limit_train: int | None = None,
    limit_val: int | None = None,
    limit_test: int | None = None,
) -> RawSplits:
    """CIFAR-10's python version under ``<root>/cifar-10-batches-py``; never downloaded.

    Validation is ``val_size`` seeded images held out of the training files; test is the
    official test batch. The files are pickles (torchvision's loader unpickles them): the md5
    check admits only the official ones, so with ``verify: false`` use only files you trust."""
    from torchvision.datasets import CIFAR10

    return _read_cifar("cifar10", CIFAR10, root, seed, verify, val_size, (limit_train, limit_val, limit_test))


@register_dataset("cifar100")
def _cifar100(
    *,
    input_size: int,
    root: Path | None,
    seed: int,
    verify: bool = True,
    val_size: int = 5000,
    limit_train: int | None = None,
    limit_val: int | None = None,
    limit_test: int | None = None,
) -> RawSplits:
    """CIFAR-100's python version under ``<root>/cifar-100-python``; never downloaded (splits as
    for cifar10). ``verify: false`` unpickles files without the md5 check: use only files you
    trust."""
    from torchvision.datasets import CIFAR100

    return _read_cifar("cifar100", CIFAR100, root, seed, verify, val_size, (limit_train, limit_val, limit_test))


def _read_cifar(
    name: str,
    cls: type,
    root: Path | None,
    seed: int,
    verify: bool,
    val_size: int,
    limits: tuple[int | None, int | None, int | None],
) -> RawSplits:
    _check_cifar_files(name, cls, root)
    reader = cls if verify else _unverified(cls)
    try:
        train, val = (reader(str(root), train=split, download=False) for split in (True, False))
    except RuntimeError as error:
        raise ConfigError(
            f"{name} files in {root / cls.base_folder} fail torchvision's md5 "
            "check; for a re-packed copy set option verify: false"
        ) from error
    except _UNREADABLE_PICKLE:  # only without the md5 check: a truncated or foreign file
        raise _unreadable_cifar(name, cls, root) from None
    images = torch.from_numpy(train.data).permute(0, 3, 1, 2)
    labels = torch.tensor(train.targets)
    if not 0 < _positive_int("val_size", val_size) < len(labels):
        raise ConfigError(f"option val_size={val_size} is invalid: it must be below the {len(labels)} training images")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:val_size].sort().values, order[val_size:].sort().values
    parts = [
        (images[kept], labels[kept]),
        (images[held], labels[held]),
        (torch.from_numpy(val.data).permute(0, 3, 1, 2), torch.tensor(val.targets)),
    ]
    splits = [
        _subset(x, y, option, limit, seed)
        for (x, y), option, limit in zip(parts, ("limit_train", "limit_val", "limit_test"), limits)
    ]
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = splits
    return RawSplits(
        train_x, train_y, val_x, val_y, num_classes=len(train.classes), test_images=test_x, test_labels=test_y
    )


# What unpickling a truncated or random-bytes file raises, and torchvision reading a pickle of
# something other than a CIFAR batch.
_UNREADABLE_PICKLE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    ImportError,
    OverflowError,
    MemoryError,
)


def _unreadable_cifar(name: str, cls: type, root: Path) -> ConfigError:
    """The error naming the first file of ``cls``'s that does not unpickle into a batch (read
    again one by one: torchvision's loader does not say which file it was on)."""
    folder = root / cls.base_folder
    for file in [entry[0] for entry in cls.train_list + cls.test_list] + [cls.meta["filename"]]:
        try:
            with open(folder / file, "rb") as handle:
                blob = pickle.load(handle, encoding="latin1")
            if not isinstance(blob, dict):
                raise TypeError(f"it holds a {type(blob).__name__}, not a dict")
        except _UNREADABLE_PICKLE as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            return ConfigError(
                f"{name} file {folder / file} cannot be read ({detail}): it is truncated or "
                f"not from CIFAR's python version; replace it with the original file"
            )
    return ConfigError(
        f"{name} files in {folder} are not CIFAR's python version (their batches do not "
        f"hold 32x32 images with labels); replace them with the original files"
    )


def _check_cifar_files(name: str, cls: type, root: Path | None) -> None:
    folder = Path("<root>" if root is None else root) / cls.base_folder
    files = [entry[0] for entry in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = files if root is None else [f for f in files if not (folder / f).is_file()]
    if missing:
        raise ConfigError(
            f"{name} needs the files {', '.join(missing)} of its python version in {folder}; "
            f"pass root=<the folder holding {cls.base_folder}>. prunetune never downloads data"
        )


@functools.cache
def _unverified(cls: type) -> type:
    """``cls`` with md5 sums removed: torchvision's check_integrity then only needs the files."""
    return type(
        f"Unverified{cls.__name__}",
        (cls,),
        {
            "train_list": [[file, None] for file, _ in cls.train_list],
            "test_list": [[file, None] for file, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )
