"""The finished experiment the export tests read: built once per session on the session's base."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.search.artifacts.test_export import CIFAR, build_experiment


@pytest.fixture(scope="session")
def cifar_exp(tmp_path_factory, tiny_base) -> Path:
    """Resnet-20 (width 0.25, 8 px) on digits: three trials and a broken one (see build_experiment),
    pruned from the session's ``tiny_base``, which is well above chance. Tests only read it (one
    that writes into it works on a copy)."""
    raw = {**CIFAR, "base": {**CIFAR["base"], "checkpoint": str(tiny_base)}}
    return build_experiment(tmp_path_factory.mktemp("cifar"), raw)
