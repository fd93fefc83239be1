"""Running a search: config checks before any write, the Tuner assembly, fixed grids, resume.

``prepare(config)`` -> :class:`Prepared` (everything that can fail because of the config has
been checked), ``run_search(prepared)`` -> :class:`SearchOutcome` (the trials and the
frontier). Methods (``search``, ``taper``) are a registry: :func:`get_method`.
"""

from __future__ import annotations

from prunetune.search.run.methods import METHODS, Method, get_method
from prunetune.search.run.prepare import Prepared, build_space, from_manifest, local_storage, prepare
from prunetune.search.run.tuner import SNAPSHOT_PERIOD_S, SearchOutcome, build_tuner, init_ray, run_search

__all__ = [
    "METHODS",
    "SNAPSHOT_PERIOD_S",
    "Method",
    "Prepared",
    "SearchOutcome",
    "build_space",
    "build_tuner",
    "from_manifest",
    "get_method",
    "init_ray",
    "local_storage",
    "prepare",
    "run_search",
]
