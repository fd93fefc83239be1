"""prunetune: search channel-pruning profiles for CNNs on Ray Tune.

One installed namespace over the repository's three packages, which depend one way:
``prunetune.search`` (what to try next and the run around it) -> ``prunetune.trainables``
(what one trial does) -> ``prunetune.budgets`` (what a model costs). In a source checkout the
three are the top-level folders ``search/``, ``trainables/`` and ``budgets/``; setuptools maps
them under this package (``package-dir`` in pyproject.toml). Importing it loads nothing heavy.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prunetune")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
