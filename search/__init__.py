"""What to try next, and the run around it.

Rooms, lowest first (each imports only from its own rank or lower; tests/test_layout.py):

- ``config``, ``space``, ``ray_compat``: the validated YAML config; the profile space a
  searcher sees (group names, allowed ratios, the exact cost model); the Ray internals we use.
- ``searchers/``, ``setup``: the searchers by name (no torch, no Ray); config -> TrialSetup.
- ``store/``: an experiment folder read and written: manifest, Tune's trial folders,
  progress, the frontier and its plots.
- ``tracking/``: MLflow: the tracker, the live Tune callback, ``sync`` and ``compare``.
- ``run/``: checks before any write (``prepare``), the Tuner assembly, methods by name
  (``search``, ``taper``), fixed grids, snapshots and resume.
- ``artifacts/``: what a search leaves for users: export, the model registry, the profile
  library, ``apply`` and the long ``finetune``.
- ``reproduce/``: ``prunetune experiment``, claims of the out-of-the-box profiles paper put to
  the test (does the criterion matter at a fixed profile; do good profiles transfer between
  data sets). ``commands/`` and ``cli``: the ``prunetune`` verbs.

The names below load on first use, so ``import prunetune.search`` stays light.
"""

from __future__ import annotations

from prunetune.budgets.lazy import lazy_exports

_WHERE = {
    "SearchConfig": "config",
    "load_config": "config",
    "parse_config": "config",
    "ProfileSpace": "space",
    "get_searcher": "searchers",
    "searcher_names": "searchers",
    "register_searcher": "searchers",
    "Prepared": "run",
    "SearchOutcome": "run",
    "get_method": "run",
    "prepare": "run",
    "run_search": "run",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
