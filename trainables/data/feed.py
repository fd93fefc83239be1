"""What a trial trains and evaluates on: batches on its device, from one copy per node.

:func:`open_trial_data` gives a :class:`TrialData` for a data set, input size and device, once per
worker process. Two modes (``data.mode``):

- ``memory``: the node cache (``cache.node_cache``) mapped into the process; on a GPU it is copied
  to the device once, on the CPU its pages are the operating system's, shared by every trial on
  the node. A batch is an index into it.
- ``stream``: DataLoader workers read each batch (an image folder's files decoded, other sets read
  from the node cache), into pinned memory, copied to the GPU without blocking; the persistent
  workers live as long as the trial. Memory per trial does not grow with the data set.

``auto`` streams when the decoded set would take more than a quarter of the node's available
memory. Either way the batch order depends only on the seed and the step, and augmentation
(:mod:`.augment`) runs on the whole batch on the device with draws seeded by the step, so a
retried trial sees the same batches, and both modes feed the same images.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data import augment as A
from prunetune.trainables.data.cache import node_cache, stats_of_folder
from prunetune.trainables.data.splits import dataset_kind, sample_indices
from prunetune.trainables.train import seeded_batches

MODES = ("auto", "memory", "stream")
AUTO_SHARE = 0.25  # auto streams a set whose decoded size exceeds this share of available memory


@dataclass(frozen=True)
class DataLoad:
    """How a process reads its data: ``mode``, ``augment`` (None: the set's standard), where the
    node cache lives and how many DataLoader workers stream (None: from the CPUs it has)."""

    mode: str = "auto"
    augment: A.Augment | None = None
    cache_dir: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"data.mode={self.mode!r} is invalid: choose one of {', '.join(MODES)}")


def available_memory() -> int | None:
    """Bytes of memory available on this node (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def choose_mode(mode: str, decoded_bytes: int) -> str:
    """``memory`` or ``stream`` for a set of ``decoded_bytes`` (``auto`` decides from memory)."""
    if mode != "auto":
        return mode
    available = available_memory()
    return "stream" if available is not None and decoded_bytes > AUTO_SHARE * available else "memory"


@dataclass
class TrialData:
    """A data set ready for one device: training batches (augmented) and evaluation batches
    (validation subset of ``val_images``, whole test split), all normalised."""

    name: str
    num_classes: int
    input_size: int
    mean: torch.Tensor
    std: torch.Tensor
    augment: A.Augment
    mode: str
    device: torch.device
    splits: dict[str, Any]  # split -> _Memory or _Stream
    val_images: int | None = None

    def __len__(self) -> int:
        return len(self.splits["train"])

    def train_batches(self, batch_size: int, seed: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless augmented training batches from step ``start`` on: batch ``k`` is the same
        for the same seed whatever ``start`` (the order is replayed, not re-drawn)."""
        source = self.splits["train"]
        for step, (images, labels) in enumerate(source.batches(batch_size, seed, start), start):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
            x = A.training(images.to(self.device, non_blocking=True), self.input_size, self.augment, generator)
            yield A.normalise(x, self.mean, self.std), labels.to(self.device, non_blocking=True)

    def eval_batches(self, split: str = "val", batch_size: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The evaluation view of ``split`` (``val``: the trials' seeded subset), in order."""
        source = self.splits[split]
        indices = self.val_indices() if split == "val" else None
        for images, labels in source.ordered(batch_size, indices, keep=split == "val"):
            x = A.evaluation(images.to(self.device, non_blocking=True), self.input_size)
            yield A.normalise(x, self.mean, self.std), labels.to(self.device, non_blocking=True)

    def val_indices(self) -> torch.Tensor | None:
        """The validation images trials evaluate on: a seeded subset of ``val_images``, or all."""
        count = len(self.splits["val"])
        if self.val_images is None or self.val_images >= count:
            return None
        return sample_indices(count, self.val_images, 0)

    def sample(self, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` seeded training images (evaluation view, normalised) and their labels, on
        the device: BatchNorm recalibration's input and the pruning criteria's calibration."""
        source = self.splits["train"]
        indices = sample_indices(len(source), count, seed)
        batches = list(source.ordered(512, indices))
        images = torch.cat([x for x, _ in batches]).to(self.device)
        labels = torch.cat([y for _, y in batches]).to(self.device)
        return A.normalise(A.evaluation(images, self.input_size), self.mean, self.std), labels

    def close(self) -> None:
        for source in self.splits.values():
            source.close()


class _Memory:
    """A split held whole: uint8 images (memory-mapped on the CPU, resident on a GPU)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in seeded_batches(len(self), batch_size, seed, start):
            idx = idx.sort().values.to(self.images.device)  # sorted: sequential reads of the mapped file
            yield self.images[idx], self.labels[idx]

    def ordered(
        self, batch_size: int, indices: torch.Tensor | None, keep: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self) if indices is None else len(indices)
        for begin in range(0, count, batch_size):
            if indices is None:
                yield self.images[begin : begin + batch_size], self.labels[begin : begin + batch_size]
            else:
                idx = indices[begin : begin + batch_size].to(self.images.device)
                yield self.images[idx], self.labels[idx]

    def close(self) -> None:
        pass


class _SeededBatches(torch.utils.data.Sampler):
    """Index batches in the order :func:`~prunetune.trainables.train.batch_indices` draws for
    ``seed``, from batch ``start`` on (what a DataLoader's ``batch_sampler`` takes)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int) -> None:
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start

    def __iter__(self) -> Iterator[list[int]]:
        for idx in seeded_batches(self.n, self.batch_size, self.seed, self.start):
            yield idx.sort().values.tolist()


class _CacheFile(torch.utils.data.Dataset):
    """Images read one by one from a node-cache file with ``os.pread``: through the page cache,
    never mapped, so a worker's resident memory holds only its batch."""

    def __init__(self, path: Path, count: int, size: int, labels: torch.Tensor) -> None:
        self.path, self.count, self.size, self.labels = str(path), count, size, labels
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        item = 3 * self.size * self.size
        blob = os.pread(self._fd, item, index * item)
        image = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(3, self.size, self.size)
        return image, int(self.labels[index])


class _Stream:
    """A split read by DataLoader workers, batch by batch. The workers persist across a trial's
    reports: the training stream's (one per trial: a new one ends the previous trial's) and the
    validation pass's (one loader, reused at every report); other passes' workers exit when the
    pass ends. So a streaming trial holds a fixed number of workers, whatever the set's size."""

    def __init__(self, dataset, workers: int, pin: bool) -> None:
        self.dataset, self.workers, self.pin = dataset, workers, pin
        self._training = None
        self._kept: dict[tuple, torch.utils.data.DataLoader] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def _loader(self, sampler, persistent: bool):
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.workers,
            pin_memory=self.pin,
            persistent_workers=persistent and self.workers > 0,
            prefetch_factor=4 if self.workers > 0 else None,
        )

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _shutdown(self._training)
        self._training = self._loader(_SeededBatches(len(self), batch_size, seed, start), persistent=True)
        yield from _named_errors(self._training)

    def ordered(
        self, batch_size: int, indices: torch.Tensor | None, keep: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chosen = list(range(len(self)) if indices is None else indices.tolist())
        key = (batch_size, len(chosen), hash(tuple(chosen)))
        loader = self._kept.get(key) if keep else None
        if loader is None:
            loader = self._loader(torch.utils.data.BatchSampler(chosen, batch_size, drop_last=False), persistent=keep)
            if keep:
                self._kept[key] = loader
        yield from _named_errors(loader)

    def close(self) -> None:
        """Stop every worker this split started (a finished trial's)."""
        for loader in (self._training, *self._kept.values()):
            _shutdown(loader)
        self._training = None
        self._kept.clear()


def _shutdown(loader) -> None:
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def _named_errors(loader) -> Iterator:
    """The loader's batches; an undecodable image ends the trial with its file's name."""
    from prunetune.trainables.data.folder import DataError, worker_message

    try:
        yield from loader
    except DataError as error:
        raise DataError(worker_message(error)) from None


def open_trial_data(
    name: str,
    input_size: int,
    root: str | None,
    seed: int,
    options: tuple[tuple[str, Any], ...],
    load: DataLoad,
    device: str,
    val_images: int | None = None,
) -> TrialData:
    """The data set for a trial on ``device`` (cached per process: every trial of a worker
    reuses it, and a stream's DataLoader workers stay up between a trial's reports)."""
    return _open(name, input_size, root, seed, options, load, device, val_images)


@functools.lru_cache(maxsize=4)
def _open(name, input_size, root, seed, options, load: DataLoad, device: str, val_images) -> TrialData:
    kind = dataset_kind(name)
    augment = load.augment or A.PRESETS[kind]
    size = A.stored_size(kind, input_size)
    target = torch.device(device)
    mode = load.mode
    if name == "imagefolder" and mode != "memory":
        from prunetune.trainables.data.folder import folder_splits

        listing = folder_splits(Path(root) if root else None, seed)
        mode = choose_mode(mode, decoded_size(name, input_size, listing.count()))
        if mode == "stream":
            return _folder_stream(listing, name, input_size, root, seed, load, target, augment, size, val_images)
    cached = node_cache(name, input_size, root, seed, options, load.cache_dir)
    total = sum(int(c) for c in cached.meta["counts"].values())
    mode = choose_mode(mode, decoded_size(name, input_size, total))
    if mode == "memory":
        splits = {}
        for split in ("train", "val", "test"):
            with warnings.catch_warnings():  # a read-only map, never written to: torch warns all the same
                warnings.simplefilter("ignore", UserWarning)
                images = torch.from_numpy(cached.images(split))
            labels = cached.labels(split)
            if target.type != "cpu":
                images, labels = images.to(target), labels.to(target)
            splits[split] = _Memory(images, labels)
    else:
        workers = _workers(load)
        splits = {
            split: _Stream(
                _CacheFile(cached.image_file(split), int(cached.meta["counts"][split]), size, cached.labels(split)),
                workers,
                target.type == "cuda",
            )
            for split in ("train", "val", "test")
        }
    mean, std = torch.tensor(cached.mean, device=target), torch.tensor(cached.std, device=target)
    return TrialData(name, cached.num_classes, input_size, mean, std, augment, mode, target, splits, val_images)


def _folder_stream(listing, name, input_size, root, seed, load, device, augment, size, val_images) -> TrialData:
    from prunetune.trainables.data.folder import ImageFiles, stored_transform

    workers = _workers(load)
    splits = {
        split: _Stream(
            ImageFiles(listing.files[split], listing.labels[split], stored_transform(size)),
            workers,
            device.type == "cuda",
        )
        for split in ("train", "val", "test")
    }
    mean, std = stats_of_folder(
        root, input_size, seed, load.cache_dir, lambda: _folder_stats(splits["train"], input_size, seed, size)
    )
    mean, std = torch.tensor(mean, device=device), torch.tensor(std, device=device)
    classes = len(listing.classes)
    return TrialData(name, classes, input_size, mean, std, augment, "stream", device, splits, val_images)


def _folder_stats(train: _Stream, input_size: int, seed: int, size: int) -> tuple[list[float], list[float]]:
    """Normalisation statistics of a streamed folder: those of a seeded sample of its training
    images, as :func:`~.splits.channel_stats` computes them for a decoded set."""
    from prunetune.trainables.data.splits import STATS_SAMPLE, stats_of_batches

    indices = sample_indices(len(train), STATS_SAMPLE, seed)
    mean, std = stats_of_batches((x for x, _ in train.ordered(256, indices)), input_size)  # one batch at a time
    return list(mean), list(std)


def _workers(load: DataLoad) -> int:
    from prunetune.trainables.data.folder import decode_workers

    return decode_workers() if load.workers is None else load.workers


def decoded_size(name: str, input_size: int, count: int) -> int:
    """Bytes of ``count`` images of set ``name`` decoded as uint8 at their stored size."""
    size = A.stored_size(dataset_kind(name), input_size)
    return count * 3 * size * size


class TensorData:
    """In-memory, already normalised tensors with :class:`TrialData`'s reading methods and no
    augmentation: for callers (tests, tools) that hold a small set as tensors."""

    def __init__(self, train_x, train_y, val_x, val_y, test_x=None, test_y=None) -> None:
        self.tensors = {"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}
        self.num_classes = int(max(int(train_y.max()), int(val_y.max()))) + 1
        self.device = train_x.device

    def __len__(self) -> int:
        return len(self.tensors["train"][1])

    def train_batches(self, batch_size: int, seed: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.tensors["train"]
        for idx in seeded_batches(len(x), batch_size, seed, start):
            idx = idx.to(x.device)
            yield x[idx], y[idx]

    def eval_batches(self, split: str = "val", batch_size: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.tensors[split]
        for begin in range(0, len(x), batch_size):
            yield x[begin : begin + batch_size], y[begin : begin + batch_size]

    def sample(self, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.tensors["train"]
        idx = sample_indices(len(x), count, seed).to(x.device)
        return x[idx], y[idx]

    def close(self) -> None:
        pass


def as_data(data: TrialData | TensorData | tuple[torch.Tensor, ...]) -> TrialData | TensorData:
    """``data`` as an object with the reading methods: tensors ``(train_x, train_y, val_x,
    val_y[, test_x, test_y])`` become a :class:`TensorData`."""
    return TensorData(*data) if isinstance(data, tuple) else data
