"""MLflow tracking: :class:`SearchTracker` (idempotent writes of a search and its trials), the
live Tune callback (:func:`tracking_callback`), :func:`sync` (backfill from the folder on disk)
and :func:`compare` (searches of one study side by side). Names load on first use, so using
the tracker loads neither Ray nor MLflow until it talks to a server."""

from __future__ import annotations

from prunetune.budgets.lazy import lazy_exports

_WHERE = {
    "SearchTracker": "tracker",
    "TrialSummary": "tracker",
    "LocalState": "tracker",
    "TrackingUnavailable": "tracker",
    "ensure_experiment": "tracker",
    "experiment_name": "tracker",
    "tracking_uri": "tracker",
    "tracking_callback": "callback",
    "SyncResult": "sync",
    "Comparison": "compare",
    "point_summaries": "points",
    "trial_points": "points",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
