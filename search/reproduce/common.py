"""What both experiments (criteria, transfer) share: choosing profiles, summary statistics, writing reports."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from prunetune.budgets.errors import ConfigError
from prunetune.search.artifacts.library import load_profile, model_groups
from prunetune.search.space import ProfileSpace

REPORT_MD = "report.md"
REPORT_JSON = "report.json"


def draw_profiles(space: ProfileSpace, count: int, seed: int, max_tries: int = 10_000) -> list[dict[str, float]]:
    """``count`` distinct profiles drawn uniformly from ``space`` that meet its analytic limits."""
    rng = np.random.default_rng(seed)
    profiles: dict[str, dict[str, float]] = {}
    for _ in range(max_tries):
        if len(profiles) == count:
            break
        profile = space.sample(rng)
        if space.feasible(profile):
            profiles.setdefault(json.dumps(profile, sort_keys=True), profile)
    if len(profiles) < count:
        raise ConfigError(
            f"only {len(profiles)} of {count} profiles drawn from the space meet the budgets; "
            "loosen the budgets or widen space.low/high"
        )
    return list(profiles.values())


def library_profiles(paths: Sequence[str], config) -> list[dict[str, float]]:
    """Ratios of library profile files, each checked against ``config``'s architecture
    (before any base model is trained)."""
    groups = model_groups(config)
    target = f"{config.model.name} (width {config.model.width:g})"
    profiles = []
    for path in paths:
        profile = load_profile(path)
        profile.check_fits(groups, target)
        profiles.append(dict(profile.ratios))
    return profiles


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def write_json(path: Path, blob: Mapping) -> Path:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(dict(blob)), indent=2))
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
