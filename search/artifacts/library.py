"""The profile library: a found profile saved as versioned JSON with where it came from.

A library profile is one layer-wise profile (keep ratio per group) plus its provenance: the
architecture and model spec it was found on, every group's channel count, the criterion and
data set of the search, its budgets, what the trial measured (accuracy, costs) and which search
and trial produced it. ``prunetune export-profiles`` writes them from a finished search;
``prunetune apply`` and ``prunetune experiment`` read them.

The file is a JSON object with ``format: "prunetune-profile"`` and an integer ``version``
(:data:`VERSION`). A reader refuses a newer version with a clear error rather than guess at
fields it does not know. A profile fits a model when both name exactly the same groups
(:meth:`LibraryProfile.check_fits`): channel counts may differ (another width), since ratios
are relative, but a missing or extra group means another architecture.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunetune.budgets.errors import ConfigError
from prunetune.search.store.best import VALIDATION
from prunetune.search.store.frontier import TrialRecord, pareto
from prunetune.search.store.trials import TrialInfo, read_trials
from prunetune.trainables import Profile, ProfileError

FORMAT = "prunetune-profile"
VERSION = 1
LIBRARY_DIR = "profiles"


def prunetune_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prunetune")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class LibraryProfile:
    """One saved profile and its provenance (see the module docstring for the file format)."""

    name: str
    ratios: Mapping[str, float]
    groups: Mapping[str, int]  # group -> dense channel count on the source model
    architecture: Mapping[str, Any]  # model spec: name, width, input_size
    criterion: str
    dataset: Mapping[str, Any]  # name, seed, options
    budgets: tuple[str, ...] = ()
    accuracy: float | None = None
    accuracy_kind: str = "validation accuracy"  # which accuracy ``accuracy`` is (search/store/best.py)
    accuracy_pruned: float | None = None
    finetune_steps: int | None = None
    costs: Mapping[str, float] = field(default_factory=dict)
    relative: Mapping[str, float] = field(default_factory=dict)
    search: str = ""
    trial_id: str = ""
    prunetune_version: str = field(default_factory=prunetune_version)
    created: float = field(default_factory=time.time)

    @property
    def profile(self) -> Profile:
        return Profile(self.ratios)

    @property
    def source(self) -> str:
        """``resnet20 on digits`` (the architecture and data set it was found on)."""
        return f"{self.architecture.get('name', '?')} on {self.dataset.get('name', '?')}"

    def check_fits(self, groups: Sequence[str] | Mapping[str, int], target: str = "the model") -> None:
        """A :class:`ProfileError` naming the groups ``target`` has that the profile lacks
        (missing) and those the profile names that ``target`` lacks (extra)."""
        missing = [g for g in groups if g not in self.ratios]
        extra = [g for g in self.ratios if g not in set(groups)]
        if not missing and not extra:
            return
        parts = [
            f"missing group(s) {_few(missing)}" if missing else "",
            f"extra group(s) {_few(extra)}" if extra else "",
        ]
        raise ProfileError(
            f"profile {self.name!r} (found on {self.source}) does not fit {target}: "
            f"{'; '.join(p for p in parts if p)}; apply it to the architecture it was found on "
            "(see `prunetune inspect` for a model's groups)"
        )

    def to_dict(self) -> dict[str, Any]:
        blob = asdict(self)
        blob["ratios"], blob["groups"] = dict(self.ratios), dict(self.groups)
        return {"format": FORMAT, "version": VERSION, **blob}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, blob: Mapping[str, Any], origin: str = "profile") -> LibraryProfile:
        if not isinstance(blob, Mapping) or blob.get("format") != FORMAT:
            raise ConfigError(
                f'{origin} is not a prunetune profile (no "format": "{FORMAT}"); '
                "write one with `prunetune export-profiles RESULTS`"
            )
        version = blob.get("version")
        if not isinstance(version, int) or version < 1:
            raise ConfigError(f"{origin} has profile format version {version!r}; expected an integer 1..{VERSION}")
        if version > VERSION:
            raise ConfigError(
                f"{origin} uses profile format version {version}, newer than this prunetune reads "
                f"(up to {VERSION}); upgrade prunetune to read it"
            )
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in blob.items() if k in known}
        absent = sorted({"name", "ratios", "groups", "architecture", "criterion", "dataset"} - set(values))
        if absent:
            raise ConfigError(f"{origin} lacks required field(s) {', '.join(absent)}; re-export it")
        values["budgets"] = tuple(values.get("budgets") or ())
        profile = cls(**values)
        _ = profile.profile  # ratios in (0, 1], else a ProfileError naming the group
        return profile


def load_profile(path: str | Path) -> LibraryProfile:
    """Read a library profile; a missing file, bad JSON, other format or newer version is a
    one-line :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"profile file {str(path)!r} does not exist; pass a file `prunetune export-profiles` wrote")
    try:
        blob = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"profile file {path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    return LibraryProfile.from_dict(blob, origin=f"profile file {path}")


def model_groups(config) -> list[str]:
    """Group names of ``config``'s architecture (untrained: names do not depend on weights or
    the class count), so a profile is checked before any base model is trained."""
    from prunetune.search.setup import model_spec
    from prunetune.trainables import build_model, example_of, find_groups

    model = config.model
    architecture = build_model(model.name, num_classes=10, input_size=model.input_size, width=model.width)
    return [g.name for g in find_groups(architecture, example_of(model_spec(config)))]


def _few(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(float(value)) else None


def from_trial(trial: TrialInfo, manifest, record: TrialRecord | None = None, kind: str = VALIDATION) -> LibraryProfile:
    """The library profile of a finished trial of the search ``manifest`` describes; its
    accuracy is ``record``'s (a confirmed profile's mean test accuracy) when given, else the
    trial's validation accuracy, and ``kind`` says which."""
    config = manifest.config
    report = trial.report
    return LibraryProfile(
        name=f"{config.name}-{trial.trial_id}",
        ratios={g: float(trial.profile.get(g, 1.0)) for g in manifest.groups},
        groups=dict(manifest.groups),
        architecture={"name": config.model.name, "width": config.model.width, "input_size": config.model.input_size},
        criterion=config.prune.criterion,
        dataset={"name": config.data.name, "seed": config.data.seed, "options": dict(config.data.options)},
        budgets=tuple(b.label for b in config.budgets),
        accuracy=_finite(record.accuracy if record is not None else report.accuracy),
        accuracy_kind=kind,
        accuracy_pruned=_finite(report.accuracy_pruned),
        finetune_steps=report.finetune_steps,
        costs=dict(report.costs),
        relative=dict(report.relative),
        search=config.name,
        trial_id=trial.trial_id,
    )


def choose_trials(
    trials: Mapping[str, TrialInfo], top: int, *, frontier_cost: str | None = None
) -> tuple[list[TrialRecord], str]:
    """The ``top`` best profiles by the one definition of best (search/store/best.py: confirmed
    test accuracy where the search confirmed, else validation accuracy; ties: fewer MACs), or
    with ``frontier_cost`` the ``top`` most accurate points of the accuracy-vs-cost frontier,
    and which accuracy ranks them."""
    from prunetune.search.store.best import VALIDATION, ranked, search_records

    finished = [t for t in trials.values() if t.finished and t.source_trial is None and t.profile]
    records = search_records(finished)
    if frontier_cost is not None:
        pool, kind = (
            sorted(pareto(records, frontier_cost), key=lambda r: (-r.accuracy, r.costs.get("macs", 0.0))),
            VALIDATION,
        )
    else:
        pool, kind = ranked(records)
    if not pool:
        raise ConfigError(
            f"no feasible trial among {len(finished)} finished trials: nothing to export; "
            "run more trials or loosen the budgets"
        )
    return pool[:top], kind


def export_profiles(
    experiment: str | Path, top: int, out: str | Path | None = None, *, frontier: bool = False
) -> list[Path]:
    """Write the chosen trials of a finished search as library profiles into ``out``
    (default ``<experiment>/profiles/``); returns the files, best first."""
    from prunetune.search.store.manifest import read_manifest

    if top < 1:
        raise ConfigError(f"--top {top} must be at least 1")
    manifest = read_manifest(experiment)
    cost = (manifest.config.budgets[0].key if manifest.config.budgets else "macs") if frontier else None
    trials = read_trials(manifest.directory)
    chosen, kind = choose_trials(trials, top, frontier_cost=cost)
    directory = Path(out) if out else manifest.directory / LIBRARY_DIR
    return [
        from_trial(trials[r.trial_id], manifest, r, kind).save(directory / f"{manifest.config.name}-{r.trial_id}.json")
        for r in chosen
    ]
