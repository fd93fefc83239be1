"""``method: taper`` in a search: the Tune parameter space of its sweep, and its frontier points.

A taper trial reports once per budget level, each report with its own checkpoint, so unlike a
searched trial (one profile, judged by its last report) every report is a frontier point. In
MLflow each point gets its own child run of the search (role ``taper_point``, named
``<trial id>@<level>``, with its profile, costs and checkpoint) beside the searched profiles.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from prunetune.search.config import SearchConfig
from prunetune.search.store.frontier import TrialRecord
from prunetune.search.tracking.tracker import TrialSummary
from prunetune.trainables.trial import PROFILE_FILE


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
    reports = [(m, read_profile(c), c.path) for c, m in result.best_checkpoints or [] if "level" in m]
    return [point.record() for point in point_summaries(trial_id, reports)]


def point_id(trial_id: str, level: float) -> str:
    """A taper point's name: its run's trial id and the level it was hardened at."""
    return f"{trial_id}@{level:g}"


def read_profile(checkpoint) -> dict[str, float]:
    """The profile in a Tune checkpoint, read straight from its storage (local or remote),
    without downloading the weights."""
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{PROFILE_FILE}") as stream:
        return json.loads(stream.read().decode())


def point_summaries(trial_id: str, reports: list[tuple[dict, dict, str | None]]) -> list[TrialSummary]:
    """A taper run's points from its ``(metrics, profile, checkpoint path)`` reports, each a
    finished trial of its own charged with the run's time since the previous level (so the
    points add up to the run)."""
    points, previous = [], 0.0
    for metrics, profile, checkpoint in sorted(reports, key=lambda r: r[0].get("training_iteration", 0)):
        total = float(metrics.get("time_total_s") or 0.0)
        points.append(
            TrialSummary(
                trial_id=point_id(trial_id, metrics["level"]),
                profile=dict(profile),
                metrics=metrics,
                status="FINISHED",
                checkpoint=None if checkpoint is None else str(checkpoint),
                ended=metrics.get("timestamp"),
                time_total_s=max(total - previous, 0.0),
                step=int(metrics.get("training_iteration") or 0),
                role="taper_point",
                taper_trial=trial_id,
            )
        )
        previous = total
    return points


def trial_points(trial) -> list[TrialSummary]:
    """Every point a (running or finished) taper trial of Tune's has reported so far."""
    results = trial.run_metadata.checkpoint_manager.best_checkpoint_results
    reports = [(r.metrics, read_profile(r.checkpoint), r.checkpoint.path) for r in results if "level" in r.metrics]
    return point_summaries(trial.trial_id, reports)
