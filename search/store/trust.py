"""Whose experiment folder is this: resuming unpickles what another user may have written.

``prunetune resume`` (and ``prunetune search`` under an existing name, which resumes) hands the
folder to ``Tuner.restore``, which unpickles Tune's state (``tuner.pkl``, the experiment state
with its pickled trials) and the searcher's saved state. A pickle runs whatever code its writer
chose, so a folder owned by another user is refused unless the user passes ``--trust``.
"""

from __future__ import annotations

import os
from pathlib import Path

from prunetune.budgets.errors import ConfigError


def check_owner(directory: str | Path, *, trust: bool = False) -> None:
    """Refuse ``directory`` when it, or a state file in it that resuming unpickles, belongs to
    another user, unless ``trust``. Called by the resuming commands before Tune reads a byte."""
    if trust or not hasattr(os, "getuid"):  # no owners to compare (Windows)
        return
    me = os.getuid()
    for path in _state_paths(Path(directory)):
        try:
            owner = path.stat().st_uid
        except OSError:
            continue  # gone since listed: nothing to unpickle
        if owner != me:
            raise ConfigError(
                f"{path} belongs to {_user(owner)}, not to you ({_user(me)}): resuming unpickles its "
                f"Tune and searcher state, which can run any code its owner put there; "
                f"pass --trust if you trust {_user(owner)}"
            )


def _state_paths(directory: Path) -> list[Path]:
    """The folder, the files beside the manifest (Tune's and the searcher's state) and every
    pickle below it."""
    top = sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
    return [directory, *top, *sorted(p for p in directory.glob("*/**/*.pkl") if p.is_file())]


def _user(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
