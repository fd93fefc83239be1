"""The project's root error.

Every mistake a user can fix (a bad config value, a missing file, a budget no profile can
meet) raises a subclass of :class:`PrunetuneError`. Its message names the bad value, what is
allowed and the fix; the CLI prints it as one line and exits with code 2. It lives in
``budgets`` because that package imports nothing of ours, so every package can share it.
"""

from __future__ import annotations

import errno

# A write that failed for want of space or rights: one line naming the path, never a traceback.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class PrunetuneError(Exception):
    """A user's mistake: the message says what was wrong and how to fix it."""


class ConfigError(PrunetuneError):
    """A configuration value is invalid."""


class BudgetError(PrunetuneError):
    """A budget is malformed or cannot be met."""


class StorageError(PrunetuneError):
    """A folder cannot be written (full disk, over quota, read-only, no permission): the
    message names the path and the fix. The CLI prints it as one line and exits with code 1
    (the machine's state, not the config, is at fault)."""


class MachineError(PrunetuneError):
    """The machine ran short of what the search needs (Ray stopped its trial workers for want of
    memory): the message says what and how to resume. The CLI prints it as one line and exits
    with code 1, as for :class:`StorageError`."""


def storage_message(err: OSError, where: object = None) -> str:
    """One line for a failed write (:data:`STORAGE_ERRNOS`): the path (``where`` when the error
    names none), why, and what to do."""
    path = err.filename2 or err.filename or where or "a file"
    why = err.strerror or str(err)
    return f"cannot write {path}: {why}; free space there or make it writable (or choose another storage_path)"
