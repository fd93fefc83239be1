"""Last good copies of Tune's experiment snapshot, so a badly timed crash cannot spoil a resume.

Tune rewrites its snapshot (``experiment_state-*.json``, ``search_gen_state-*.json``,
``searcher-state-*.pkl``) in a staging folder and copies it into the experiment folder in a
background thread, neither atomically: a driver killed mid-copy, or a copy that read a file
being rewritten, leaves an empty or cut file from which Tune cannot resume. With snapshots
every second (``TUNE_GLOBAL_CHECKPOINT_S=1``, what ``prunetune search`` sets) that moment is
not rare.
:class:`SnapshotKeeper` (a Tune callback in the driver) copies the set whenever every file of it
reads back whole; :func:`repair` puts those copies back before ``Tuner.restore``, and
:func:`set_aside_orphans` moves away trial folders started after the snapshot.
Local experiment folders only; object storage is not inspected.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

from ray.tune import Callback

KEEP_DIR = ".prunetune-snapshot"
ABANDONED_DIR = ".prunetune-abandoned"
PATTERNS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def intact(path: Path) -> bool:
    """Whether a snapshot file reads back whole (Tune's ``search_gen_state`` is a pickle)."""
    try:
        data = path.read_bytes()
        if path.name.startswith("experiment_state"):
            json.loads(data)
        else:
            pickle.loads(data)
    except Exception:  # noqa: BLE001 - any failure to read back means "not whole"
        return False
    return bool(data)


def newest(directory: Path, pattern: str) -> Path | None:
    """The latest session's file (session timestamps sort by name; mtimes are rewritten)."""
    found = sorted(directory.glob(pattern))
    return found[-1] if found else None


def _copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def keep(directory: Path) -> bool:
    """Copy the newest snapshot set into ``KEEP_DIR`` if every file of it is whole."""
    files = [newest(directory, pattern) for pattern in PATTERNS]
    if any(f is None for f in files) or not all(intact(f) for f in files):
        return False
    (directory / KEEP_DIR).mkdir(exist_ok=True)
    for path in files:
        _copy(path, directory / KEEP_DIR / path.name)
    return True


def repair(directory: str | Path) -> list[str]:
    """Replace missing or broken snapshot files by their last good copies; their names."""
    directory = Path(directory)
    kept = directory / KEEP_DIR
    repaired = []
    for copy in sorted(kept.glob("*")) if kept.is_dir() else []:
        target = directory / copy.name
        if copy.name.startswith(".") or (target.is_file() and intact(target)):
            continue
        _copy(copy, target)
        repaired.append(copy.name)
    return repaired


def set_aside_orphans(directory: str | Path) -> list[str]:
    """Move trial folders the snapshot does not know into ``ABANDONED_DIR``; their names.

    A trial started after the last snapshot that reached storage is unknown to the restored
    search (and to its searcher): its work is redone by a new trial, and its folder would
    otherwise sit beside the real ones, half finished, for ever."""
    from search.progress import snapshot_states

    directory = Path(directory)
    known = snapshot_states(directory)
    if not known:
        return []
    moved = []
    for trial_dir in sorted(directory.glob("trial_*")):
        if trial_dir.is_dir() and trial_dir.name.removeprefix("trial_") not in known:
            (directory / ABANDONED_DIR).mkdir(exist_ok=True)
            trial_dir.rename(directory / ABANDONED_DIR / trial_dir.name)
            moved.append(trial_dir.name)
    return moved


class SnapshotKeeper(Callback):
    """Keeps the last whole snapshot of a local experiment folder, at most every ``every_s``."""

    def __init__(self, directory: Path, every_s: float = 1.0):
        self.directory = Path(directory)
        self.every_s = every_s
        self._last = 0.0

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s and self.directory.is_dir():
            self._last = now
            keep(self.directory)

    def on_experiment_end(self, trials: list, **info) -> None:
        keep(self.directory)
