"""A taper run's frontier points as tracking sees them: one finished trial per level.

A taper trial (``method: taper``) reports once per budget level, each report with its own
checkpoint, so unlike a searched trial (one profile, judged by its last report) every report is
a frontier point. In MLflow each point gets its own child run of the search (role
``taper_point``, named ``<trial id>@<level>``, with its profile, costs and checkpoint) beside the
searched profiles. The live callback reads a running trial's points with :func:`trial_points`;
``prunetune sync`` reads them from the trial folder (:meth:`TrialFolder.taper_points
<prunetune.search.store.trials.TrialFolder.taper_points>`); both turn them into summaries with
:func:`point_summaries`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from prunetune.budgets import report as R
from prunetune.search.ray_compat import reported_checkpoints
from prunetune.search.store.trials import point_id
from prunetune.search.tracking.tracker import TrialSummary
from prunetune.trainables.trial import PROFILE_FILE

__all__ = ["point_id", "point_summaries", "read_profile", "trial_points"]

Report = tuple[dict, dict, str | None]  # (metrics, profile, checkpoint path)


def read_profile(checkpoint) -> dict[str, float]:
    """The profile in a Tune checkpoint, read straight from its storage (local or remote),
    without downloading the weights."""
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{PROFILE_FILE}") as stream:
        return json.loads(stream.read().decode())


def point_summaries(trial_id: str, reports: Iterable[Report]) -> list[TrialSummary]:
    """A taper run's points from its ``(metrics, profile, checkpoint path)`` reports, each a
    finished trial of its own charged with the run's time since the previous level (so the
    points add up to the run)."""
    points, previous = [], 0.0
    for metrics, profile, checkpoint in sorted(reports, key=lambda r: r[0].get("training_iteration", 0)):
        total = float(metrics.get("time_total_s") or 0.0)
        points.append(
            TrialSummary(
                trial_id=point_id(trial_id, metrics[R.LEVEL]),
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
    reports = [(m, read_profile(c), c.path) for m, c in reported_checkpoints(trial) if R.LEVEL in m]
    return point_summaries(trial.trial_id, reports)
