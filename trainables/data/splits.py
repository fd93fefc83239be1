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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry
from prunetune.trainables.data.augment import evaluation, normalise, stored_size


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
# The augmentation ``data.augment: standard`` means for each set (see augment.PRESETS).
_KINDS: dict[str, str] = {}


def register_dataset(name: str, *, augment: str = "small") -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a loader under ``name`` (``data.name`` in a config); a name is registered once.

    ``augment`` names the standard augmentation of its images: ``small`` (random crop of the
    image padded by an eighth of its size, horizontal flip), ``digits`` (the crop, no flip:
    a flipped digit is another symbol) or ``photo`` (random resized crop and flip, evaluated on
    the centre crop of the image resized to 8/7 of the input size, as torchvision's references).
    """
    register = _DATASETS.register(name)

    def decorate(loader: DatasetLoader) -> DatasetLoader:
        _KINDS[name] = augment
        return register(loader)

    return decorate


def dataset_kind(name: str) -> str:
    """The kind of images of data set ``name`` (``small``, ``digits`` or ``photo``)."""
    _DATASETS.get(name)
    return _KINDS.get(name, "small")


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
    return _load_cached(*_arguments(name, input_size, root, seed, options))


def check_dataset(name: str, options: Mapping[str, Any] | None = None) -> None:
    """A ConfigError, before anything is loaded, for an unknown data set or loader option."""
    _check_options(name, _DATASETS.get(name), dict(options or {}))


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
    ready = _prepared(name, input_size, root, seed, options)
    mean, std = torch.tensor(ready.mean), torch.tensor(ready.std)
    views = {}
    for split in SPLITS:
        views[split] = normalise(evaluation(ready.images[split], input_size), mean, std), ready.labels[split]
    return DataSplits(*views["train"], *views["val"], ready.num_classes, name, ready.mean, ready.std, *views["test"])


SPLITS = ("train", "val", "test")
STATS_SAMPLE = 2_000  # train images the normalisation statistics are estimated from (seeded sample)


@dataclass(frozen=True)
class Prepared:
    """A data set decoded once: uint8 (N, 3, S, S) images per split at the stored size S
    (:func:`~prunetune.trainables.data.augment.stored_size`), int64 labels, and the per-channel
    statistics every view normalises with. What the node cache keeps on disk."""

    name: str
    kind: str
    input_size: int
    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def stored_size(self) -> int:
        return self.images["train"].shape[-1]


def prepare_dataset(
    name: str,
    *,
    input_size: int = 32,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> Prepared:
    """Data set ``name`` decoded to uint8 at its stored size, once per process (arguments as
    :func:`load_dataset`)."""
    return _prepared(*_arguments(name, input_size, root, seed, options))


def _arguments(name, input_size, root, seed, options) -> tuple[str, int, str | None, int, tuple]:
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
    return name, input_size, resolved, seed, key


@functools.lru_cache(maxsize=4)
def _prepared(
    name: str, input_size: int, root: str | None, seed: int, options: tuple[tuple[str, Any], ...]
) -> Prepared:
    loader = _DATASETS.get(name)
    raw = _with_test(loader(input_size=input_size, root=Path(root) if root else None, seed=seed, **dict(options)), seed)
    kind = dataset_kind(name)
    size = stored_size(kind, input_size)
    images = {split: _as_uint8(name, getattr(raw, f"{split}_images"), size) for split in SPLITS}
    labels = {split: _as_labels(name, getattr(raw, f"{split}_labels"), raw.num_classes) for split in SPLITS}
    if raw.num_classes < 2:
        raise ConfigError(f"dataset {name!r} has {raw.num_classes} class; a classifier needs at least 2")
    mean, std = channel_stats(images["train"], input_size, seed)
    return Prepared(name, kind, input_size, images, labels, raw.num_classes, mean, std)


def channel_stats(train: torch.Tensor, input_size: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased) of the evaluation view of a seeded sample of at most
    :data:`STATS_SAMPLE` uint8 training images (all of a smaller set), in float64."""
    chosen = sample_indices(len(train), STATS_SAMPLE, seed)
    return stats_of_batches((train[chosen[start : start + 1024]] for start in range(0, len(chosen), 1024)), input_size)


def stats_of_batches(batches: Iterable[torch.Tensor], input_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 image batches' evaluation view, accumulated batch by
    batch (memory: one batch). A constant channel's std is clamped to 1e-6 (no division by 0)."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for batch in batches:
        part = evaluation(batch, input_size).double()
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
        count += part[:, 0].numel()
    mean = total / max(1, count)
    variance = (squares - count * mean.square()) / max(1, count - 1)
    std = variance.clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def sample_indices(n: int, limit: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset of ``range(n)`` of at most ``limit`` items."""
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


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


def _as_uint8(name: str, images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """A uint8 (N, 3, size, size) tensor of ``images`` (uint8, or float in [0, 1])."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(
            f"dataset {name!r} gave images of shape {tuple(images.shape)}; "
            "its loader must return (N, C, H, W) with C 1 or 3"
        )
    if len(images) == 0:
        raise ConfigError(f"dataset {name!r} gave an empty split")
    if images.dtype == torch.uint8 and images.shape[-2:] == (size, size):
        return images.expand(-1, 3, -1, -1).contiguous()
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = _resized(images[start : start + chunk].float() / scale, size)
        out[start : start + chunk] = part.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)  # gray broadcasts
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
