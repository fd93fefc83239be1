"""``method: taper`` in a search: the Tune parameter space of its sweep, and its frontier points.

A taper trial reports once per budget level, each report with its own checkpoint, so unlike a
searched trial (one profile, judged by its last report) every report is a frontier point.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from search.config import SearchConfig
from search.frontier import TrialRecord
from trainables.trial import PROFILE_FILE


def taper_param_space(config: SearchConfig) -> dict:
    """``{"taper": options}`` with every swept option as a ``tune.grid_search``: one trial per
    combination of the sweep's values."""
    from ray import tune

    options = config.taper.settings()
    options.update({name: tune.grid_search(list(values)) for name, values in config.taper.sweep.items()})
    return {"model": config.model.name, "data": config.data.name, "method": "taper", "taper": options}


def taper_trial_count(config: SearchConfig) -> int:
    """How many taper runs the sweep launches."""
    return len(list(itertools.product(*config.taper.sweep.values()))) if config.taper.sweep else 1


def is_taper_result(result) -> bool:
    return (result.config or {}).get("method") == "taper"


def taper_records(result, trial_id: str) -> list[TrialRecord]:
    """One record per level a taper trial reported, named ``<trial id>@<level>``, with the
    profile and checkpoint that report carried."""
    records = []
    for checkpoint, metrics in result.best_checkpoints or []:
        if "feasible" not in metrics or "level" not in metrics:
            continue
        with checkpoint.as_directory() as directory:
            profile = json.loads((Path(directory) / PROFILE_FILE).read_text())
        name = f"{trial_id}@{metrics['level']:g}"
        records.append(TrialRecord.from_metrics(name, metrics, profile, checkpoint.path))
    return records
