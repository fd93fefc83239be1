"""The asynchronous MLflow writer: a search's tracking written by a process of its own.

Tune's event loop runs the search's callbacks on the driver's one thread, so every MLflow
request made there delays the next trial (a child run is three requests, ~45 ms on SQLite:
more than a short trial's whole scheduling cost). :class:`TrackingWriter` moves them off that
path: the callback puts small messages on a queue and returns; a separate process (so it does
not compete with the event loop for the GIL) takes whatever has queued up since its last
write and writes it as one batch through a :class:`SearchTracker`, one write per trial however
many of its reports were queued.

Nothing is lost that Tune's files do not hold:

- every message is made from a trial's result, which the trial has already written to its
  folder, so a result still queued when the driver dies is one ``prunetune sync`` (or the
  resumed search) writes from disk;
- the end of a search (:meth:`TrackingWriter.close`) waits until the writer has written
  everything queued;
- a writer whose driver was killed writes what it has already received and exits; while it
  does, it holds the experiment folder's tracking lock (:func:`writer_lock`), which ``sync``
  and a resumed search's writer take before writing, so two writers never create one trial's
  run twice.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("prunetune.tracking")

LOCK_FILE = ".tracking.lock"
LOCK_WAIT_S = 120.0  # an orphaned writer finishing its last batch takes seconds, not minutes
_POLL_S = 0.5
_MAX_BATCH = 2000  # messages written as one batch at most


@contextmanager
def writer_lock(directory: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the tracking lock of the experiment folder ``directory``: one MLflow writer at a
    time; the file names the holder's process id while it is held, and is removed when it is
    released (a finished experiment keeps no lock naming a dead writer). The kernel releases
    the lock when its holder exits, however it exits. Waits up to ``wait_s`` for another holder
    (a killed driver's writer finishing its last batch), then goes on without it, with a
    warning."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    deadline = time.monotonic() + wait_s
    while True:
        handle = open(path, "a+")  # noqa: SIM115 - held across the yield, closed below
        if _take(handle, path, deadline, wait_s):
            break
        handle.close()  # the holder removed the file as we waited on it: take the new one
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")  # who holds it, for a person (or a test) looking
        handle.flush()
        yield
    finally:
        try:
            if _same_file(handle, path):
                path.unlink()
        except OSError:
            pass
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _same_file(handle, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except OSError:
        return False


def _take(handle, path: Path, deadline: float, wait_s: float) -> bool:
    """Lock ``handle``; False when the file it opened was removed meanwhile (retry with a new
    one). After the deadline it goes on without the lock (True), with a warning."""
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return _same_file(handle, path)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                log.warning("another MLflow writer still holds %s after %.0f s; writing anyway", path, wait_s)
                return True
            time.sleep(0.1)


# Writers whose tracking failed on a full disk and that have not said so yet (see
# ``take_full_disk_warnings``).
_unreported: list[TrackingWriter] = []


def take_full_disk_warnings() -> list[str]:
    """One warning per writer of this driver whose MLflow store failed on a full disk, each
    said once: the search prints them when it ends, or folds them into its own storage error
    (a disk full for MLflow is usually full for the experiment folder too: one line, not two)."""
    found = [writer for writer in _unreported if writer.full_disk.is_set()]
    for writer in found:
        _unreported.remove(writer)
    return [writer.full_disk_warning() for writer in found]


class TrackingWriter:
    """The driver's end of the writer process of one search (see the module doc).

    Messages are ``(kind, *arguments)``: ``("open", cluster)``, ``("trials", summaries)``,
    ``("frontier", summaries)``, ``("finish", summaries, wall_s)``, each a :class:`SearchTracker`
    call in the writer process, in the order put."""

    def __init__(self, settings) -> None:
        context = multiprocessing.get_context("spawn")  # the driver runs Ray's threads: no fork
        self.settings = settings
        self._queue = context.Queue()
        self.full_disk = context.Event()  # set by the writer process instead of its warning
        self._process = context.Process(
            target=serve, args=(settings, self._queue, self.full_disk), name="prunetune-tracking", daemon=True
        )
        self._process.start()
        self._closed = False
        _unreported.append(self)
        atexit.register(self._close_at_exit)  # a driver that fails before Tune ends the experiment

    def full_disk_warning(self) -> str:
        from prunetune.search.tracking.tracker import untracked_warning

        return untracked_warning(self.settings.uri, self.settings.directory, "the disk is full")

    def _close_at_exit(self) -> None:
        self.close()
        for line in take_full_disk_warnings():  # nobody else is left to say it
            log.warning(line)

    def put(self, kind: str, *arguments) -> None:
        if not self._closed:
            self._queue.put((kind, *arguments))

    def close(self, timeout_s: float | None = None) -> None:
        """Wait until everything put so far is written, then stop the writer process."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._queue.put(("close",))
        self._queue.close()
        self._process.join(timeout_s)
        if self._process.is_alive():  # only with a timeout: the writer is stuck on MLflow
            log.warning(
                "the MLflow writer did not finish within %.0f s; `prunetune sync` backfills the rest", timeout_s
            )
            self._process.terminate()
        if not self.full_disk.is_set() and self in _unreported:  # nothing to say: forget it
            _unreported.remove(self)

    @property
    def pid(self) -> int | None:
        return self._process.pid


def serve(settings, messages, full_disk=None) -> None:
    """The writer process: take queued messages in batches and write them, until ``close`` or
    until the driver is gone and nothing it sent is left. A full disk sets ``full_disk`` (an
    event the driver reads) instead of warning here."""
    from prunetune.search.tracking.tracker import SearchTracker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver decides
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s", level=logging.WARNING)
    driver = os.getppid()
    tracker = SearchTracker(settings.uri, settings.experiment, settings.directory, settings.config)
    if full_disk is not None:
        tracker.on_full_disk = full_disk.set
    with writer_lock(Path(settings.directory)):
        for batch in batches(messages, lambda: os.getppid() == driver):
            write(tracker, batch)
            if batch and batch[-1][0] == "close":
                return


def batches(messages, driver_alive) -> Iterator[list[tuple]]:
    """Lists of the messages that have queued up, each list ending at ``close``, or at the
    queue's end once the driver is gone (``driver_alive()`` false)."""
    while True:
        try:
            first = messages.get(timeout=_POLL_S)
        except queue.Empty:
            if not driver_alive():
                return
            continue
        except (EOFError, OSError):  # the driver's end of the pipe closed mid-message
            return
        batch = [first]
        while batch[-1][0] != "close" and len(batch) < _MAX_BATCH:
            try:
                batch.append(messages.get_nowait())
            except (queue.Empty, EOFError, OSError):
                break
        yield batch


def write(tracker, batch: list[tuple]) -> None:
    """One batch, in order: consecutive trial updates become one :meth:`SearchTracker.log_trials`;
    a frontier that a later one in the batch replaces is not drawn."""
    pending = []
    last_frontier = max((i for i, (kind, *_) in enumerate(batch) if kind in ("frontier", "finish")), default=-1)
    for i, (kind, *arguments) in enumerate(batch):
        if kind == "frontier" and i < last_frontier:
            continue
        if kind == "trials":
            pending.extend(arguments[0])
            continue
        if pending:
            tracker.log_trials(pending)
            pending = []
        if kind == "open":
            tracker.open(*arguments)
        elif kind == "frontier":
            tracker.log_frontier(*arguments)
        elif kind == "finish":
            tracker.finish(*arguments)
    if pending:
        tracker.log_trials(pending)
