"""The node cache (one decoded copy per machine) and streaming: what trials read."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data.cache import node_cache
from prunetune.trainables.data.feed import DataLoad, open_trial_data
from prunetune.trainables.data.folder import DataError

SHAPES = ("shapes", 16, None, 0, (("n_test", 20), ("n_train", 64), ("n_val", 20)))


def _folder(root: Path, per_class: int = 12, size: tuple[int, int] = (20, 14)) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 4), ("test", 4)):
        for label in ("cat", "dog", "eel"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{index}.jpg", quality=90)
    return root


def _build(cache: str, queue) -> None:
    found = node_cache(*SHAPES, cache_dir=cache)
    queue.put((found.meta["built_by"], str(found.directory)))


def test_two_racing_trials_decode_the_set_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    (first_builder, first_dir), (second_builder, second_dir) = results
    assert first_dir == second_dir and first_builder == second_builder  # one built, the other read it
    assert first_builder in {worker.pid for worker in workers}
    assert [p.name for p in tmp_path.iterdir() if ".building" in p.name] == []


def test_a_changed_source_file_gets_a_fresh_copy(tmp_path: Path) -> None:
    root = _folder(tmp_path / "photos")
    before = node_cache("imagefolder", 14, str(root), 0, (), cache_dir=str(tmp_path / "cache"))
    victim = root / "train" / "cat" / "0.jpg"
    Image.new("RGB", (20, 14), (255, 255, 255)).save(victim)
    os.utime(victim, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    after = node_cache("imagefolder", 14, str(root), 0, (), cache_dir=str(tmp_path / "cache"))
    assert after.directory != before.directory
    assert int(np.asarray(after.images("train")[0]).min()) == 255  # the new file's pixels
    assert int(np.asarray(before.images("train")[0]).min()) < 255


def test_a_truncated_cache_file_is_detected_and_decoded_again(tmp_path: Path, capsys) -> None:
    first = node_cache(*SHAPES, cache_dir=str(tmp_path))
    expected = (first.directory / "train.u8").stat().st_size
    with open(first.directory / "train.u8", "r+b") as handle:
        handle.truncate(expected // 2)
    again = node_cache(*SHAPES, cache_dir=str(tmp_path))
    assert (again.directory / "train.u8").stat().st_size == expected
    assert "is damaged; decoding it again" in capsys.readouterr().err


def test_an_unwritable_cache_folder_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file"
        blocked.write_text("not a folder")
        with pytest.raises((ConfigError, NotADirectoryError, FileExistsError)):
            node_cache(*SHAPES, cache_dir=str(blocked / "cache"))
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="set data.cache_dir"):
        node_cache(*SHAPES, cache_dir=str(locked / "cache"))


def _open(root: Path, mode: str, cache: Path, workers: int = 0):
    load = DataLoad(mode=mode, cache_dir=str(cache), workers=workers)
    return open_trial_data("imagefolder", 14, str(root), 0, (), load, "cpu")


def _take(batches, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(batches) for _ in range(count)]


def test_streamed_and_cached_folders_feed_the_same_batches(tmp_path: Path) -> None:
    root = _folder(tmp_path / "photos")
    memory = _open(root, "memory", tmp_path / "cache")
    stream = _open(root, "stream", tmp_path / "cache", workers=2)
    assert (memory.mode, stream.mode) == ("memory", "stream")
    for (xm, ym), (xs, ys) in zip(_take(memory.train_batches(8, seed=3), 4), _take(stream.train_batches(8, seed=3), 4)):
        assert torch.equal(ym, ys) and torch.allclose(xm, xs)
    for (xm, ym), (xs, ys) in zip(memory.eval_batches("test"), stream.eval_batches("test")):
        assert torch.equal(ym, ys) and torch.allclose(xm, xs)
    stream.close()


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_a_retried_trial_sees_the_same_batches_from_its_step(tmp_path: Path, mode: str) -> None:
    data = _open(_folder(tmp_path / "photos"), mode, tmp_path / "cache", workers=1)
    whole = _take(data.train_batches(8, seed=1), 6)
    resumed = _take(data.train_batches(8, seed=1, start=4), 2)
    for (x, y), (xr, yr) in zip(whole[4:], resumed):
        assert torch.equal(x, xr) and torch.equal(y, yr)
    assert not torch.equal(whole[0][0], _take(data.train_batches(8, seed=2), 1)[0][0])
    data.close()


def test_a_corrupt_image_mid_stream_ends_the_trial_naming_the_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "photos")
    data = _open(root, "stream", tmp_path / "cache", workers=1)  # opened: statistics taken
    bad = root / "train" / "dog" / "3.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # damaged while the search runs
    with pytest.raises(DataError) as error:
        _take(data.train_batches(12, seed=0), 6)  # three epochs of 36 images: the file is read
    message = str(error.value)
    assert message.startswith(f"imagefolder: {bad} cannot be decoded") and "\n" not in message
    data.close()


def test_an_unknown_mode_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="data.mode='fast' is invalid: choose one of auto, memory, stream"):
        DataLoad(mode="fast")


def test_trials_evaluate_on_a_fixed_subset_of_validation(tmp_path: Path) -> None:
    load = DataLoad(mode="memory", cache_dir=str(tmp_path))
    subset = open_trial_data(*SHAPES, load, "cpu", val_images=8)
    whole = open_trial_data(*SHAPES, load, "cpu")
    assert sum(len(y) for _, y in subset.eval_batches("val")) == 8
    assert sum(len(y) for _, y in whole.eval_batches("val")) == 20
    assert sum(len(y) for _, y in subset.eval_batches("test")) == 20  # the test split is always whole
    assert torch.equal(subset.val_indices(), open_trial_data(*SHAPES, load, "cpu", val_images=8).val_indices())


def test_on_an_accelerator_the_set_lives_on_the_device_and_batches_are_made_there(tmp_path: Path) -> None:
    """The CUDA branch, run on the meta device (shapes only): the node cache is copied to the
    trial's device once and every batch is indexed, augmented and normalised there."""
    data = open_trial_data(*SHAPES, DataLoad(mode="memory", cache_dir=str(tmp_path)), "meta", val_images=8)
    assert data.splits["train"].images.device.type == "meta" and data.mean.device.type == "meta"
    x, y = next(data.train_batches(16, seed=0))
    assert x.device.type == "meta" and x.shape == (16, 3, 16, 16) and x.dtype == torch.float32
    assert y.device.type == "meta" and y.shape == (16,)
    [(vx, vy)] = list(data.eval_batches("val"))
    assert vx.shape == (8, 3, 16, 16) and vx.device.type == "meta"
