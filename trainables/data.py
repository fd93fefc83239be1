"""The data-set registry: each set is decoded once per process into normalised tensors.

A trial trains for a few epochs on a small set, so decoding images every epoch would cost more
than the training itself. :func:`load_dataset` therefore reads a set once, turns it into
in-memory tensors (3 channels, ``input_size`` x ``input_size``, normalised per channel with the
train split's statistics) and caches the result, so a Ray worker process reuses it for every
trial it runs. A loader registered with :func:`register_dataset` only reads its files into a
:class:`RawSplits`; resizing, channel replication and normalisation happen here, the same way
for every set. Nothing is ever downloaded: sets that need files say where to put them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry


@dataclass(frozen=True)
class DataSplits:
    """A data set ready for training, shared by every trial in a process: do not modify it.

    ``train_x``/``val_x``/``test_x`` are float32 (N, 3, H, W) normalised with the train split's
    per-channel ``mean`` and ``std`` (pixel values in [0, 1] are ``x * std + mean``); labels are
    int64. Searches choose profiles on ``val`` and report confirmed results on ``test``, which
    nothing is selected on (selecting and reporting on one split flatters the result).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    name: str
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of split ``name``: ``"train"``, ``"val"`` or ``"test"``."""
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        channels, height, width = self.train_x.shape[1:]
        return channels, height, width


@dataclass(frozen=True)
class RawSplits:
    """What a loader returns: (N, C, H, W) images, C 1 or 3, uint8 or float in [0, 1].

    Images may have any size; :func:`load_dataset` resizes those not yet ``input_size``.
    A loader without its own test split leaves ``test_*`` None: :func:`load_dataset` then
    holds out a seeded half of the validation split as the test split.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


class DatasetLoader(Protocol):
    """Reads one data set. Options are keyword-only parameters with defaults."""

    def __call__(self, *, input_size: int, root: Path | None, seed: int, **options: Any) -> RawSplits: ...


_DATASETS: Registry[DatasetLoader] = Registry("dataset")
_STANDARD_ARGS = frozenset({"input_size", "root", "seed"})


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a loader under ``name`` (``data.name`` in a config); a name is registered once."""
    return _DATASETS.register(name)


def dataset_names(pattern: str | None = None) -> list[str]:
    """Every registered data-set name, sorted; only those matching ``pattern`` (fnmatch) if given."""
    return _DATASETS.names(pattern)


def load_dataset(
    name: str,
    *,
    input_size: int = 32,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> DataSplits:
    """Load data set ``name``, decoding it only on the first call with these arguments.

    ``seed`` fixes every random choice (split, subset, generated images). ``options`` are the
    loader's own settings (``val_fraction``, ``verify``, ...); unknown ones are a ConfigError.
    """
    loader = _DATASETS.get(name)  # an unknown name: a ConfigError listing the valid ones
    _positive_int("input_size", input_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is invalid: it must be a non-negative integer")
    options = dict(options or {})
    _check_options(name, loader, options)
    key = tuple(sorted(options.items()))
    try:
        hash(key)
    except TypeError as error:
        raise ConfigError(f"options of dataset {name!r} must be plain values: {error}") from error
    resolved = str(Path(root).expanduser().resolve()) if root is not None else None
    return _load_cached(name, input_size, resolved, seed, key)


def _check_options(name: str, loader: DatasetLoader, options: Mapping[str, Any]) -> None:
    parameters = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = sorted(set(parameters) - _STANDARD_ARGS)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option {', '.join(unknown)}; its options are: {', '.join(allowed) or 'none'}"
        )


@functools.lru_cache(maxsize=8)
def _load_cached(
    name: str, input_size: int, root: str | None, seed: int, options: tuple[tuple[str, Any], ...]
) -> DataSplits:
    loader = _DATASETS.get(name)
    raw = loader(input_size=input_size, root=Path(root) if root else None, seed=seed, **dict(options))
    return _standardise(name, _with_test(raw, seed), input_size)


def _with_test(raw: RawSplits, seed: int) -> RawSplits:
    """``raw`` with a test split: its own, or a seeded half of the validation split."""
    if raw.test_images is not None:
        return raw
    if len(raw.val_labels) < 2:
        raise ConfigError("a data set without its own test split needs at least 2 validation images to hold half out")
    order = torch.randperm(len(raw.val_labels), generator=torch.Generator().manual_seed(seed))
    val, test = order[: len(order) // 2].sort().values, order[len(order) // 2 :].sort().values
    return dataclasses.replace(
        raw,
        val_images=raw.val_images[val],
        val_labels=raw.val_labels[val],
        test_images=raw.val_images[test],
        test_labels=raw.val_labels[test],
    )


def _standardise(name: str, raw: RawSplits, input_size: int) -> DataSplits:
    """Resize, replicate gray to 3 channels and normalise with the train split's statistics."""
    train_x = _as_rgb(name, raw.train_images, input_size)
    val_x = _as_rgb(name, raw.val_images, input_size)
    test_x = _as_rgb(name, raw.test_images, input_size)
    mean = train_x.mean(dim=(0, 2, 3))
    # A constant channel would divide by zero; leave its scale alone instead.
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    for images in (train_x, val_x, test_x):
        images.sub_(mean[:, None, None]).div_(std[:, None, None])
    labels = [_as_labels(name, y, raw.num_classes) for y in (raw.train_labels, raw.val_labels, raw.test_labels)]
    return DataSplits(
        train_x,
        labels[0],
        val_x,
        labels[1],
        raw.num_classes,
        name,
        tuple(mean.tolist()),
        tuple(std.tolist()),
        test_x,
        labels[2],
    )


def _as_rgb(name: str, images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """A fresh float32 (N, 3, size, size) tensor with values in [0, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(
            f"dataset {name!r} gave images of shape {tuple(images.shape)}; "
            "its loader must return (N, C, H, W) with C 1 or 3"
        )
    if len(images) == 0:
        raise ConfigError(f"dataset {name!r} gave an empty split")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    out = torch.empty(len(images), 3, size, size)
    # Filling one preallocated tensor chunk by chunk keeps a single float copy of the set.
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].float() / scale
        out[start : start + chunk] = _resized(part, size)  # broadcasting replicates gray
    return out


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _as_labels(name: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ConfigError(f"dataset {name!r} has labels outside 0..{num_classes - 1}")
    return labels


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is invalid: it must be a positive integer")
    return value


def _subset(
    images: torch.Tensor, labels: torch.Tensor, option: str, limit: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of at most ``limit`` examples, kept in file order."""
    if limit is None or _positive_int(option, limit) >= len(labels):
        return images, labels
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(labels), generator=generator)[:limit].sort().values
    return images[keep], labels[keep]


# --- digits: scikit-learn's bundled 8x8 handwritten digits ----------------------------------


@register_dataset("digits")
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


@register_dataset("imagefolder")
def _imagefolder(*, input_size: int, root: Path | None, seed: int) -> RawSplits:
    """``root/train/<class>/*.png``, ``root/val/<class>/*`` and optionally ``root/test/<class>/*``
    (without it, half of val is held out as test); classes named by train's folders."""
    from torchvision import transforms

    if root is None:
        raise ConfigError("imagefolder needs root=<folder holding train/ and val/>")
    transform = transforms.Compose(
        [
            transforms.Resize((input_size, input_size), antialias=True),
            transforms.PILToTensor(),
        ]
    )
    train_x, train_y, classes = _read_folder(root / "train", transform)
    val_x, val_names, val_classes = _read_folder(root / "val", transform)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise ConfigError(f"{root / 'val'} has classes missing from {root / 'train'}: {', '.join(unknown)}")
    # ImageFolder numbers each folder's classes alphabetically; map val's onto train's numbers.
    to_train = torch.tensor([classes.index(c) for c in val_classes], dtype=torch.int64)
    test = {}
    if (root / "test").is_dir():
        test_x, test_names, test_classes = _read_folder(root / "test", transform)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ConfigError(f"{root / 'test'} has classes missing from {root / 'train'}: {', '.join(unknown)}")
        to_train_test = torch.tensor([classes.index(c) for c in test_classes], dtype=torch.int64)
        test = {"test_images": test_x, "test_labels": to_train_test[test_names]}
    return RawSplits(train_x, train_y, val_x, to_train[val_names], num_classes=len(classes), **test)


def _read_folder(
    folder: Path, transform: Callable[[Any], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision.datasets import ImageFolder

    if not folder.is_dir():
        raise ConfigError(f"imagefolder needs the folder {folder} with one subfolder per class")
    try:
        dataset = ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as error:
        raise ConfigError(f"imagefolder: {error}") from error
    images = torch.stack([_decoded(dataset, index) for index in range(len(dataset))])
    return images, torch.tensor(dataset.targets, dtype=torch.int64), list(dataset.classes)


def _decoded(dataset, index: int) -> torch.Tensor:
    """Image ``index`` of an ImageFolder; a file PIL cannot decode is a ConfigError naming it."""
    from PIL import Image

    try:
        return dataset[index][0]
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        # PIL: UnidentifiedImageError (an OSError), "image file is truncated", "broken PNG file"
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(
            f"imagefolder: {dataset.samples[index][0]} cannot be decoded ({detail}); replace the file or remove it"
        ) from None
