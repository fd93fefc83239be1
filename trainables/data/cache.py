"""The node cache: one decoded copy of a data set per machine, shared by every trial on it.

The first trial that needs a set at an input size decodes it once, under a file lock, into
``<cache>/<name>-<size>px-<key>/``: one raw uint8 file of (N, 3, S, S) images and one of int64
labels per split, and ``meta.json`` (shapes, classes, normalisation statistics), written last
and moved into place whole. The others wait for the lock and map the same files: their pages
live once in the operating system's page cache, whatever the number of trials. The key hashes
the set's arguments, the source files (paths, sizes, modification times) and
:data:`CACHE_VERSION` (bumped when decoding or the stored size changes), so a changed file or
transform gets a new copy. A copy whose files are shorter than ``meta.json`` says is rebuilt.

The cache lives on the node's local disk (``data.cache_dir``, else ``$PRUNETUNE_CACHE``, else
``$XDG_CACHE_HOME/prunetune/data`` or ``~/.cache/prunetune/data``), never in the search's
storage, which may be shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.augment import stored_size
from prunetune.trainables.data.splits import SPLITS, channel_stats, dataset_kind, prepare_dataset

CACHE_VERSION = 1
META = "meta.json"


def cache_root(configured: str | None = None) -> Path:
    """Where node caches live: ``configured``, ``$PRUNETUNE_CACHE`` or the user's cache folder."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("PRUNETUNE_CACHE"):
        return Path(os.environ["PRUNETUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prunetune" / "data"


def source_fingerprint(root: str | None) -> str:
    """A digest of every file under ``root`` (relative path, size, modification time); empty
    for a set without files (generated or bundled with a package)."""
    if root is None:
        return ""
    digest = hashlib.sha1()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stat = os.stat(os.path.join(folder, name))
            relative = os.path.relpath(os.path.join(folder, name), root)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedSet:
    """A data set in the node cache: memory-mapped uint8 images and labels per split."""

    directory: Path
    meta: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.meta["std"])

    def images(self, split: str) -> np.memmap:
        """(N, 3, S, S) uint8 images of ``split``, mapped read-only (pages shared across processes)."""
        return np.memmap(self.directory / f"{split}.u8", dtype=np.uint8, mode="r", shape=self._shape(split))

    def labels(self, split: str) -> torch.Tensor:
        return torch.from_numpy(np.fromfile(self.directory / f"{split}.labels", dtype=np.int64))

    def image_file(self, split: str) -> Path:
        return self.directory / f"{split}.u8"

    def _shape(self, split: str) -> tuple[int, int, int, int]:
        size = int(self.meta["stored_size"])
        return int(self.meta["counts"][split]), 3, size, size


def node_cache(
    name: str,
    input_size: int,
    root: str | None,
    seed: int,
    options: tuple[tuple[str, Any], ...],
    cache_dir: str | None = None,
) -> CachedSet:
    """The node's copy of data set ``name`` at ``input_size``, decoded now if it is missing or
    damaged (under a lock: concurrent trials decode it once)."""
    from filelock import FileLock

    directory = _entry(cache_dir, name, input_size, [root, seed, list(options)])
    try:
        with FileLock(str(directory) + ".lock"):
            found = _valid(directory)
            if found is not None:
                return found
            if directory.exists():
                print(f"prunetune: the data cache {directory} is damaged; decoding it again", file=sys.stderr)
                shutil.rmtree(directory)
            _build(directory, name, input_size, root, seed, options)
            return CachedSet(directory, json.loads((directory / META).read_text()))
    except PermissionError as error:
        raise _unwritable(directory.parent, error) from None


def _entry(cache_dir: str | None, name: str, input_size: int, arguments: list) -> Path:
    """The cache folder's entry for set ``name`` at ``input_size``: named by a digest of the
    arguments, the source files (``arguments[0]`` is the root) and :data:`CACHE_VERSION`. The
    cache folder is created; one that cannot be is a ConfigError naming ``data.cache_dir``."""
    key = json.dumps([CACHE_VERSION, name, input_size, *arguments, source_fingerprint(arguments[0])], default=str)
    folder = cache_root(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError as error:
        raise _unwritable(folder, error) from None
    return folder / f"{name}-{input_size}px-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _unwritable(folder: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"the data cache folder {folder} is not writable ({error.strerror}); set data.cache_dir to a local folder"
    )


def stats_of_folder(
    root: str | None, input_size: int, seed: int, cache_dir: str | None, compute
) -> tuple[list[float], list[float]]:
    """A streamed folder's normalisation statistics: ``compute()`` once per node and source
    files, kept beside the node caches (a few numbers, not the images)."""
    from filelock import FileLock

    entry = _entry(cache_dir, "imagefolder", input_size, [root, seed])
    path = entry.with_name(entry.name + ".stats.json")
    with FileLock(str(path) + ".lock"):
        try:
            stats = json.loads(path.read_text())
            return stats["mean"], stats["std"]
        except (OSError, ValueError, KeyError):
            mean, std = compute()
            path.write_text(json.dumps({"mean": mean, "std": std}))
            return mean, std


def _valid(directory: Path) -> CachedSet | None:
    """The cached set in ``directory`` if every file is there at its full size, else None."""
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return None
    found = CachedSet(directory, meta)
    for split in SPLITS:
        count, _, size, _ = found._shape(split)
        sizes = ((f"{split}.u8", count * 3 * size * size), (f"{split}.labels", count * 8))
        for file, expected in sizes:
            path = directory / file
            if not path.is_file() or path.stat().st_size != expected:
                return None
    return found


def _build(directory: Path, name: str, input_size: int, root: str | None, seed: int, options) -> None:
    building = directory.with_name(directory.name + f".building{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        if name == "imagefolder":
            counts, classes = _decode_folder(building, input_size, root, seed)
        else:
            counts, classes = _write_prepared(building, name, input_size, root, seed, options)
        train = np.memmap(building / "train.u8", dtype=np.uint8, mode="r+")
        size = stored_size(dataset_kind(name), input_size)
        mean, std = channel_stats(torch.from_numpy(train.reshape(-1, 3, size, size)), input_size, seed)
        del train
        meta = {
            "version": CACHE_VERSION,
            "name": name,
            "input_size": input_size,
            "stored_size": size,
            "counts": counts,
            "num_classes": classes,
            "mean": list(mean),
            "std": list(std),
            "built_by": os.getpid(),
        }
        (building / META).write_text(json.dumps(meta, indent=1))
        os.replace(building, directory)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _write_prepared(building: Path, name, input_size, root, seed, options) -> tuple[dict[str, int], int]:
    ready = prepare_dataset(name, input_size=input_size, root=root, seed=seed, options=dict(options))
    for split in SPLITS:
        ready.images[split].numpy().tofile(building / f"{split}.u8")
        ready.labels[split].numpy().astype(np.int64).tofile(building / f"{split}.labels")
    return {split: len(ready.labels[split]) for split in SPLITS}, ready.num_classes


def _decode_folder(building: Path, input_size: int, root: str | None, seed: int) -> tuple[dict[str, int], int]:
    """Decode an image folder file by file into the cache (memory bounded by one batch)."""
    from prunetune.trainables.data.folder import decoded_batches, folder_splits

    listing = folder_splits(Path(root) if root else None, seed)
    size = stored_size("photo", input_size)
    for split in SPLITS:
        files, labels = listing.files[split], listing.labels[split]
        images = np.memmap(building / f"{split}.u8", dtype=np.uint8, mode="w+", shape=(len(files), 3, size, size))
        at = 0
        for batch, _ in decoded_batches(files, labels, size):
            images[at : at + len(batch)] = batch.numpy()
            at += len(batch)
        images.flush()
        del images
        np.asarray(labels, dtype=np.int64).tofile(building / f"{split}.labels")
    return {split: len(listing.files[split]) for split in SPLITS}, len(listing.classes)
