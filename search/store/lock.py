"""The experiment lock: one driver per experiment folder at a time.

A driver (``prunetune search``, ``prunetune resume``) holds ``<storage>/.locks/<name>`` for as
long as it runs; a second driver for the same folder is refused with one line naming the
holder. The lock lives beside the experiment folder, not in it, so a search refused before
its first write leaves nothing that blocks its name.

The lock file is created whole and atomically (written to a private file, then hard-linked to
its name: ``link`` fails when the name exists, also on NFS) and records who holds it (host,
boot, process id and start time). While held, a thread renews its modification time every
:data:`HEARTBEAT_S`. A holder that is gone is taken over:

- on the same host (and boot), at once when its process no longer runs;
- from another node of shared storage, when the lock has not been renewed for :data:`STALE_S`
  (the nodes' clocks must agree to well within that).

Take-overs are serialised by a second, short-lived file, so two drivers that both find a dead
holder cannot both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from prunetune.budgets.errors import ConfigError

LOCKS_DIR = ".locks"
HEARTBEAT_S = 5.0
STALE_S = 60.0
_TAKEOVER_STALE_S = 30.0  # a take-over takes milliseconds; a mutex this old was left by a crash


class ExperimentLocked(ConfigError):
    """Another driver holds the experiment: a user's mistake (one line, exit 2)."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None where /proc cannot tell:
    with the pid it tells a reused process id from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its file records."""

    host: str
    boot: str
    pid: int
    started: int | None
    token: str
    command: str
    since: float

    @classmethod
    def me(cls, command: str) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), _boot_id(), pid, _start_ticks(pid), uuid.uuid4().hex, command, time.time())

    def local(self) -> bool:
        return self.host == socket.gethostname() and self.boot == _boot_id()

    def alive(self, renewed_s_ago: float) -> bool:
        """Whether the holder may still run: its process on this host, else its heartbeat."""
        if self.local():
            return _pid_runs(self.pid) and (self.started is None or _start_ticks(self.pid) in (None, self.started))
        return renewed_s_ago < STALE_S

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.command} (pid {self.pid} on {self.host}, since {when})"


def lock_path(directory: Path) -> Path:
    """The lock file of an experiment folder: ``<storage>/.locks/<name>``."""
    directory = Path(directory)
    return directory.parent / LOCKS_DIR / directory.name


def _read(path: Path) -> tuple[Holder | None, float] | None:
    """The holder in ``path`` and seconds since it was renewed; None when there is no lock."""
    try:
        age = time.time() - path.stat().st_mtime
        blob = json.loads(path.read_text())
        return Holder(**blob), age
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None, age  # not ours to judge: only its age tells


def holder_of(directory: Path) -> Holder | None:
    """The live holder of an experiment folder's lock, else None (``status`` may show it)."""
    found = _read(lock_path(directory))
    if not found or found[0] is None:
        return None
    holder, age = found
    return holder if holder.alive(age) else None


class ExperimentLock:
    """Held by the driver of one experiment folder from :meth:`acquire` to :meth:`release`
    (or as a context manager). Refusal raises :class:`ExperimentLocked`."""

    def __init__(self, directory: Path, command: str = "prunetune") -> None:
        self.directory = Path(directory)
        self.path = lock_path(self.directory)
        self.holder = Holder.me(command)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._made: list[Path] = []  # folders acquire created, removed again when left empty

    def __enter__(self) -> ExperimentLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self._made = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._beat = threading.Thread(target=self._heartbeat, name="prunetune-lock", daemon=True)
                self._beat.start()
                return
            found = _read(self.path)
            if found is None:
                continue  # released meanwhile: try again
            holder, age = found
            if holder is None:
                if age < STALE_S:  # unreadable and fresh: not a file of ours; leave it be
                    raise ExperimentLocked(
                        f"{self.directory} is locked by {self.path}, which is not a prunetune lock; "
                        "remove it if no driver uses the folder"
                    )
            elif holder.alive(age):
                raise ExperimentLocked(
                    f"experiment {self.directory.name!r} in {self.directory.parent} is in use by {holder.describe()}; "
                    f"wait for it to finish, or choose another name (--set name=...)"
                )
            self._take_over(holder)
        raise ExperimentLocked(f"could not lock {self.directory}: other drivers keep taking {self.path}; try again")

    def _create(self) -> bool:
        """Create the lock file whole, atomically; False when it exists."""
        private = self.path.with_name(f".{self.path.name}.{self.holder.token}")
        private.write_text(json.dumps(asdict(self.holder)))
        try:
            os.link(private, self.path)
        except FileExistsError:
            return False
        finally:
            private.unlink()
        return True

    def _take_over(self, dead: Holder | None) -> None:
        """Remove the lock of a dead holder, unless someone else replaced it meanwhile."""
        mutex = self.path.with_name(f".{self.path.name}.takeover")
        try:
            fd = os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - mutex.stat().st_mtime > _TAKEOVER_STALE_S:
                    mutex.unlink()
            except FileNotFoundError:
                pass
            return  # another driver is taking over: look again
        os.close(fd)
        try:
            found = _read(self.path)
            if (
                found is not None
                and (found[0] is None or found[0] == dead)
                and not (found[0] and found[0].alive(found[1]))
            ):
                self.path.unlink(missing_ok=True)
        finally:
            mutex.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError as err:  # storage gone away: the run itself will fail loudly
                print(f"prunetune: warning: cannot renew the lock {self.path}: {err}", file=sys.stderr)

    def release(self) -> None:
        """Remove the lock if it is still ours, then ``.locks`` and the folders acquire made
        when nothing else was written there."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        found = _read(self.path)
        if found and found[0] is not None and found[0].token == self.holder.token:
            self.path.unlink(missing_ok=True)
        for folder in [self.path.parent, *self._made]:
            with contextlib.suppress(OSError):  # other experiments' locks, results, or already gone
                folder.rmdir()
