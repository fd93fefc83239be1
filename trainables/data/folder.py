"""Image folders (``root/train/<class>/*``, ``root/val/<class>/*``, optionally ``root/test``), the
layout of ImageNet and of most users' own photos.

Images are decoded as torchvision's classification references evaluate them: the shorter side
resized to 8/7 of the input size (bilinear, antialiased) and the centre square kept, as uint8
RGB; training crops are taken from that square (``augment.Augment``). Decoding runs in DataLoader
workers; a file that cannot be decoded is named in the error. :func:`folder_splits` lists the
files without decoding any, so a folder of a million images is described in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.augment import stored_size
from prunetune.trainables.data.splits import SPLITS, RawSplits, register_dataset

DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError)


class DataError(RuntimeError):
    """An image that cannot be decoded in the middle of a trial: the trial ends naming it."""


@dataclass(frozen=True)
class FolderSplits:
    """The files of each split with their labels (train's class numbering), and the classes."""

    files: dict[str, tuple[str, ...]]
    labels: dict[str, tuple[int, ...]]
    classes: tuple[str, ...]

    def count(self) -> int:
        return sum(len(files) for files in self.files.values())


def folder_splits(root: Path | None, seed: int) -> FolderSplits:
    """List the image files of ``root``'s splits (no decoding). Without ``root/test``, a seeded
    half of val is held out as test (as for every data set without its own test split)."""
    from torchvision.datasets.folder import find_classes, make_dataset

    if root is None:
        raise ConfigError("imagefolder needs root=<folder holding train/ and val/>")
    found: dict[str, tuple[list[tuple[str, int]], list[str]]] = {}
    for split in SPLITS:
        folder = root / split
        if split == "test" and not folder.is_dir():
            continue
        if not folder.is_dir():
            raise ConfigError(f"imagefolder needs the folder {folder} with one subfolder per class")
        try:
            classes, index = find_classes(str(folder))
            samples = make_dataset(str(folder), index, extensions=_EXTENSIONS)
        except FileNotFoundError as error:
            raise ConfigError(f"imagefolder: {error}") from None
        found[split] = samples, classes
    classes = found["train"][1]
    if len(classes) < 2:
        raise ConfigError(
            f"imagefolder: {root / 'train'} has {len(classes)} class folder ({', '.join(classes)}); "
            "a classifier needs at least 2: add one subfolder per class"
        )
    files: dict[str, tuple[str, ...]] = {}
    labels: dict[str, tuple[int, ...]] = {}
    for split, (samples, own) in found.items():
        unknown = sorted(set(own) - set(classes))
        if unknown:
            raise ConfigError(f"{root / split} has classes missing from {root / 'train'}: {', '.join(unknown)}")
        files[split] = tuple(path for path, _ in samples)
        # ImageFolder numbers each folder's classes alphabetically; map them onto train's numbers.
        labels[split] = tuple(classes.index(own[label]) for _, label in samples)
    if "test" not in files:
        order = torch.randperm(len(files["val"]), generator=torch.Generator().manual_seed(seed)).tolist()
        keep, held = sorted(order[: len(order) // 2]), sorted(order[len(order) // 2 :])
        val_files, val_labels = files["val"], labels["val"]
        files["val"], labels["val"] = tuple(val_files[i] for i in keep), tuple(val_labels[i] for i in keep)
        files["test"], labels["test"] = tuple(val_files[i] for i in held), tuple(val_labels[i] for i in held)
    if len(files["val"]) < 1:
        raise ConfigError(f"imagefolder: {root / 'val'} needs at least 2 images (half are held out as test)")
    return FolderSplits(files, labels, tuple(classes))


_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFiles(torch.utils.data.Dataset):
    """Images decoded from files by ``transform`` (PIL image -> uint8 tensor), with labels.

    An item is an index or ``(index, seed)``: with a seed, the transform's random draws come
    from ``torch.manual_seed(seed)``, so an augmented image is the same in any worker and in a
    retried trial.
    """

    def __init__(self, files: tuple[str, ...], labels: tuple[int, ...], transform) -> None:
        # numpy arrays, not Python lists: a forked DataLoader worker that reads a list's items
        # writes their reference counts, copying the list's pages into every worker
        self.files = np.asarray(files, dtype=str)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        index, seed = item if isinstance(item, tuple) else (item, None)
        path = str(self.files[index])
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
            if seed is not None:
                torch.manual_seed(seed)
            return self.transform(rgb), int(self.labels[index])
        except (*DECODE_ERRORS, Image.DecompressionBombError) as error:
            # PIL: UnidentifiedImageError (an OSError), "image file is truncated", "broken PNG file"
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(
                f"imagefolder: {path} cannot be decoded ({detail}); replace the file or remove it"
            ) from None


def stored_transform(size: int):
    """PIL image -> uint8 (3, size, size): shorter side resized to ``size``, centre square kept."""
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToDtype(torch.uint8)])


def decode_workers() -> int:
    """DataLoader workers for decoding: the CPUs Ray gave this trial (at least 1), or outside
    Ray the machine's less one; at most 8."""
    assigned = _ray_cpus()
    if assigned is not None:
        return max(1, min(8, assigned))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


def _ray_cpus() -> int | None:
    import sys

    ray = sys.modules.get("ray")  # never imported here: only a Ray worker has it loaded
    if ray is None or not ray.is_initialized():
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return None if cpus is None else int(cpus)


def decoded_batches(
    files: tuple[str, ...], labels: tuple[int, ...], size: int, batch_size: int = 256
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every file decoded at ``size`` (:func:`stored_transform`), in order, in batches, by
    DataLoader workers."""
    dataset = ImageFiles(files, labels, stored_transform(size))
    workers = decode_workers() if len(files) > batch_size else 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    try:
        yield from loader
    except DataError as error:
        raise ConfigError(worker_message(error)) from None


def worker_message(error: BaseException) -> str:
    """The message a DataLoader worker raised, without the worker's traceback around it."""
    lines = [line for line in str(error).splitlines() if "imagefolder:" in line]
    return lines[-1][lines[-1].index("imagefolder:") :] if lines else str(error)


@register_dataset("imagefolder", augment="photo")
def _imagefolder(*, input_size: int, root: Path | None, seed: int) -> RawSplits:
    """``root/train/<class>/*``, ``root/val/<class>/*`` and optionally ``root/test/<class>/*``
    (without it, half of val is held out as test); classes named by train's folders. Decoded
    whole into memory: a trial instead streams a large folder or reads the node cache."""
    listing = folder_splits(root, seed)
    size = stored_size("photo", input_size)
    decoded = {}
    for split in SPLITS:
        batches = list(decoded_batches(listing.files[split], listing.labels[split], size))
        decoded[split] = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    return RawSplits(
        *decoded["train"],
        *decoded["val"],
        num_classes=len(listing.classes),
        test_images=decoded["test"][0],
        test_labels=decoded["test"][1],
    )
