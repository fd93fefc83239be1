"""Whole, consistent copies of Tune's experiment snapshot, so a badly timed crash cannot spoil
a resume.

Tune writes its snapshot (``experiment_state-*.json``, ``search_gen_state-*.json``,
``searcher-state-*.pkl``) into a staging folder on the driver, then copies that folder into the
experiment folder in a background thread, neither atomically and file by file: a driver killed
mid-copy leaves an empty or cut file, or files from two different moments (trials the searcher
state has never heard of). With snapshots as often as every second (what ``prunetune search``
sets while snapshots are small: ``tuner.snapshot_period``) that moment is not rare.

:class:`SnapshotKeeper` (a Tune callback in the driver) copies the set from the staging folder
right after Tune wrote it, as one unit; :func:`repair` puts that set back before
``Tuner.restore``; :func:`set_aside_orphans` moves away trial folders started after it, and
:func:`clear_stale_staging` drops them from the killed driver's staging folder too, which a
restored run reuses (and would copy back) when it runs on the same Ray session. Local
experiment folders only; object storage is not inspected.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
from pathlib import Path

from ray.tune import Callback

from prunetune.search import ray_compat
from prunetune.search.store.progress import CURRENT, KEEP_DIR, kept_dir, newest_snapshot_blob

ABANDONED_DIR = ".prunetune-abandoned"
PATTERNS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def intact(path: Path) -> bool:
    """Whether a snapshot file is whole: not empty, and ending as its format ends (a JSON object
    with ``}``, a pickle with its STOP opcode). Read from the end only, so checking a snapshot
    costs the same at ten trials and at ten thousand; the files checked are the ones Tune has
    just written on this thread, which a crash can leave cut short, not rewritten in the middle."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip()
    except OSError:
        return False
    if not tail:
        return False
    return tail.endswith(b"}") if path.name.startswith("experiment_state") else tail.endswith(pickle.STOP)


def newest(directory: Path, pattern: str) -> Path | None:
    """The latest session's file (session timestamps sort by name; mtimes are rewritten)."""
    found = sorted(directory.glob(pattern))
    return found[-1] if found else None


def _copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def keep(source: Path, directory: Path) -> bool:
    """Copy the newest snapshot set in ``source`` (Tune's staging folder, which Tune writes on
    the driver's thread, so nothing rewrites it while a callback copies it) into
    ``directory``'s keep folder as one unit, if every file of it is whole.

    The set goes into a new generation folder; ``CURRENT`` then names it (an atomic rename),
    so a reader sees the previous set or this one, never a mix."""
    files = [newest(source, pattern) for pattern in PATTERNS]
    if any(f is None for f in files) or not all(intact(f) for f in files):
        return False
    keep_root = directory / KEEP_DIR
    keep_root.mkdir(exist_ok=True)
    generation = keep_root / f"{time.time_ns()}"
    partial = keep_root / f".{generation.name}.partial"
    try:
        partial.mkdir()
        for path in files:
            shutil.copyfile(path, partial / path.name)
    except OSError as err:  # a full disk: the set kept before stays CURRENT, whole
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(err.errno, err.strerror, str(directory)) from None
    partial.rename(generation)
    pointer = keep_root / f".{CURRENT}.tmp"
    pointer.write_text(generation.name)
    os.replace(pointer, keep_root / CURRENT)
    for old in keep_root.iterdir():  # earlier generations and stray partial copies
        if old.is_dir() and old.name != generation.name:
            shutil.rmtree(old, ignore_errors=True)
    return True


def repair(directory: str | Path) -> list[str]:
    """Make the experiment folder's newest snapshot set the last kept one; the names replaced.

    A file is replaced when it is missing, broken, or differs from the kept copy: the kept set
    was taken from Tune's staging folder right after Tune wrote it, so it is at least as new as
    what Tune's background copy got through, and its files belong together."""
    directory = Path(directory)
    kept = kept_dir(directory)
    repaired = []
    for copy in sorted(kept.iterdir()) if kept else []:
        target = directory / copy.name
        if target.is_file() and target.read_bytes() == copy.read_bytes():
            continue
        _copy(copy, target)
        repaired.append(copy.name)
    return repaired


def set_aside_orphans(directory: str | Path) -> list[str]:
    """Move trial folders the snapshot does not know into ``ABANDONED_DIR``; their names.

    A trial started after the last snapshot that reached storage is unknown to the restored
    search (and to its searcher): its work is redone by a new trial, and its folder would
    otherwise sit beside the real ones, half finished, for ever."""
    from prunetune.search.store.progress import snapshot_states

    directory = Path(directory)
    moved = []
    for trial_dir in _unknown_trials(directory, snapshot_states(directory)):
        (directory / ABANDONED_DIR).mkdir(exist_ok=True)
        target = directory / ABANDONED_DIR / trial_dir.name
        if target.exists():  # set aside by an earlier resume as well
            shutil.rmtree(target)
        trial_dir.rename(target)
        moved.append(trial_dir.name)
    return moved


def _unknown_trials(folder: Path, known: dict[str, str]) -> list[Path]:
    """Trial folders in ``folder`` the snapshot (``known``: its trial ids) has no place for;
    none when there is no snapshot to judge by."""
    if not known:
        return []
    return [d for d in sorted(folder.glob("trial_*")) if d.is_dir() and d.name.removeprefix("trial_") not in known]


def stale_staging(directory: str | Path) -> Path | None:
    """The staging folder of the driver that wrote the snapshot, if it is on this machine in
    the Ray session this process is connected to (a restored run reuses it). None when Ray is
    not initialised or no trial is in the snapshot."""
    blob = newest_snapshot_blob(Path(directory))
    staging = ray_compat.snapshot_staging_dir((blob or {}).get("trial_data") or [])
    return staging if staging is not None and staging.is_dir() else None


def clear_stale_staging(directory: str | Path) -> list[str]:
    """Remove, from the killed driver's staging folder, trial folders the snapshot does not
    know; their names. Tune's restored run syncs that folder up to the experiment folder, and
    would bring back a trial set aside by :func:`set_aside_orphans` (an empty ``result.json``
    beside the real trials)."""
    from prunetune.search.store.progress import snapshot_states

    staging = stale_staging(directory)
    if staging is None:
        return []
    removed = _unknown_trials(staging, snapshot_states(Path(directory)))
    for trial_dir in removed:
        shutil.rmtree(trial_dir)
    return [d.name for d in removed]


class SnapshotKeeper(Callback):
    """Keeps the last whole snapshot set of a local experiment folder: after each driver step,
    if Tune wrote a new snapshot into its staging folder in that step, a copy of the set."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._seen: int | None = None

    def _keep_if_new(self, trials: list) -> None:
        staging = ray_compat.driver_staging_dir(trials[0]) if trials else None
        state = newest(staging, PATTERNS[0]) if staging and staging.is_dir() else None
        if state is None or not self.directory.is_dir():
            return
        stamp = state.stat().st_mtime_ns
        if stamp != self._seen and keep(staging, self.directory):
            self._seen = stamp

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._keep_if_new(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._keep_if_new(trials)
