"""``prunetune experiment transfer``: do good profiles on one data set stay good on another?
(the out-of-the-box profiles paper, arXiv:2004.14584, claims they do, and that some profiles
beat uniform ones)

Profiles are drawn by the exhaustive searcher in ``sampled`` mode (the paper's exhaustive random
search) over a discrete space (``space.levels``, default 0.25/0.5/0.75/1.0), plus the uniform
profile at every level as the baseline. Each is pruned from two base models of the config's
architecture, one per data set (the config's and ``other``), and fine-tuned with the config's
recipe: one Tune trial per (profile, data set).

Reported: the Spearman rank correlation of the profiles' accuracies on the two data sets; the
same with the profiles' MACs partialled out (a bigger profile is better everywhere, so the raw
correlation is partly just size: our addition); where the top-k of each data set rank on the
other; and how many sampled profiles beat the uniform profile of equal or higher MACs. A data
set on which every profile lands within ``SATURATED`` of the others is named: its ranks rest on
a handful of validation images, and the correlation with it says nothing either way. More
generally, each set's reliability (the share of its spread that is not the binomial noise of
counting right answers over its validation images) bounds the correlation any transfer could
show; the report gives both and that ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.config import DataConfig, SearchConfig, apply_overrides
from prunetune.search.reproduce.common import REPORT_JSON, REPORT_MD, library_profiles, pyplot, write_json
from prunetune.search.run.grid import check_new, finished, log_report, profile_key, run_grid

DEFAULT_LEVELS = (0.25, 0.5, 0.75, 1.0)

# A data set whose profiles all land within this of each other (1 point of accuracy) is too
# easy at this scale to rank them: Fashion-MNIST's spread 3 points where digits and shapes at
# 28 px spread 0.4-0.8 (2-3 validation images).
SATURATED = 0.01


@dataclass(frozen=True)
class TransferSettings:
    other: str | None = None  # the second data set; default shapes (digits when the config's is shapes)
    profiles: int = 12
    top: int = 3
    uniform: bool = True
    files: tuple[str, ...] = ()
    other_set: tuple[str, ...] = ()  # KEY=VALUE for the second's data section, e.g. options.n_train=300

    def __post_init__(self) -> None:
        if self.profiles < 2 or self.top < 1:
            raise ConfigError(f"--profiles {self.profiles} must be at least 2 and --top {self.top} at least 1")

    def second(self, first: str) -> str:
        other = self.other or ("digits" if first == "shapes" else "shapes")
        if other == first:
            raise ConfigError(
                f"--other {other!r} is the config's own data set; name a different one, e.g. shapes or digits"
            )
        return other

    def second_data(self, data: DataConfig) -> DataConfig:
        """The second data set's section: the config's seed and way of reading (mode, cache,
        workers, augment), none of its root or loader options (they belong to the first set),
        then ``other_set``."""
        fields = data.model_dump(include={"seed", "mode", "augment", "cache_dir", "workers"}, exclude_none=True)
        fields["name"] = self.second(data.name)
        fields = apply_overrides(fields, list(self.other_set), "--other-set", "options.n_train=300")
        try:
            data = DataConfig.model_validate(fields)
        except ValidationError as err:
            error = err.errors()[0]
            key = ".".join(str(part) for part in error["loc"])
            raise ConfigError(
                f"--other-set {key}={error.get('input')!r}: {error['msg']}; the keys are the data section's "
                "(root, seed, options.NAME, mode, augment)"
            ) from None
        from prunetune.trainables.data import check_dataset

        check_dataset(data.name, data.options)  # a bad loader option now, not after the first base trains
        return data


def data_label(data: DataConfig) -> str:
    """``shapes`` or ``shapes (n_train=300)``: the set and the loader options it was given."""
    options = ", ".join(f"{key}={value}" for key, value in data.options.items())
    return f"{data.name} ({options})" if options else data.name


@dataclass(frozen=True)
class TransferOutcome:
    directory: Path
    datasets: tuple[str, str]
    stats: dict
    rows: list[dict]  # one per profile: name, profile, rel_macs, accuracy per data set
    errors: dict[str, str]
    files: dict[str, Path]


def sampled_profiles(space, count: int, seed: int) -> list[dict[str, float]]:
    """``count`` profiles from the exhaustive searcher's sampled mode (fewer if the space is smaller)."""
    from prunetune.search.searchers import ExhaustiveSearcher

    searcher = ExhaustiveSearcher(space, seed=seed, mode="sampled")
    profiles = []
    for i in range(count):
        proposal = searcher.suggest(f"p{i}")
        if proposal == searcher.FINISHED:
            break
        profiles.append(dict(proposal["profile"]))
    return profiles


def uniform_profiles(space, levels: Sequence[float]) -> list[dict[str, float]]:
    """The uniform profile at each level that meets the space's analytic limits."""
    candidates = [dict.fromkeys(space.names, level) for level in levels]
    return [p for p in candidates if space.feasible(p)]


def run_transfer(config: SearchConfig, settings: TransferSettings) -> TransferOutcome:
    from prunetune.search.run.prepare import prepare

    first, other_data = config.data.name, settings.second_data(config.data)
    second = other_data.name
    levels = tuple(config.space.levels or DEFAULT_LEVELS)
    config = config.model_copy(update={"space": config.space.model_copy(update={"levels": list(levels)})})
    check_new(config)
    files = library_profiles(settings.files, config) if settings.files else []
    prepared = prepare(config)
    # base.checkpoint, if given, is the first data set's: the second's is trained (or found) anew.
    other = prepare(
        config.model_copy(
            update={
                "data": other_data,
                "base": config.base.model_copy(update={"checkpoint": None}),
            }
        )
    )
    named = _named_profiles(prepared.space, settings, levels, config.searcher.seed, files)
    grid = {"profile": [p for _, p in named], "base": [first, second]}
    rows, errors = finished(run_grid(prepared, grid, bases={first: prepared.setup, second: other.setup}))
    table = _table(named, rows, (first, second))
    evaluated = {first: prepared.val_images, second: other.val_images}
    stats = analyse(table, (first, second), settings.top, evaluated if None not in evaluated.values() else None)
    directory = prepared.experiment_dir
    files = {
        "md": directory / REPORT_MD,
        "json": write_json(
            directory / REPORT_JSON,
            {
                "experiment": "transfer",
                "config": config.model_dump(mode="json"),
                "datasets": [first, second],
                "other_data": other_data.model_dump(mode="json"),
                "stats": stats,
                "profiles": table,
                "errors": errors,
            },
        ),
        "png": plot(table, (first, second), stats, settings.top, directory / "transfer.png", config),
    }
    files["md"].write_text(report(prepared.config, (first, second), settings, stats, table, errors, other_data))
    log_report(prepared, list(files.values()))
    return TransferOutcome(directory, (first, second), stats, table, errors, files)


def _named_profiles(space, settings, levels, seed, files) -> list[tuple[str, dict[str, float]]]:
    if files:
        return [(Path(f).stem, p) for f, p in zip(settings.files, files)]
    named = [(f"sampled-{i}", p) for i, p in enumerate(sampled_profiles(space, settings.profiles, seed))]
    if settings.uniform:
        seen = {profile_key(p) for _, p in named}
        named += [
            (f"uniform-{p[space.names[0]]:g}", p) for p in uniform_profiles(space, levels) if profile_key(p) not in seen
        ]
    return named


def _table(named, rows, datasets) -> list[dict]:
    """One entry per profile: its name, ratios, MACs share and accuracy on each data set
    (NaN where that trial errored)."""
    by_key = {profile_key(p): i for i, (_, p) in enumerate(named)}
    table = [
        {"name": name, "profile": p, "rel_macs": math.nan, **dict.fromkeys(datasets, math.nan)} for name, p in named
    ]
    for row in rows:
        entry = table[by_key[profile_key(row["config"]["profile"])]]
        entry[row["config"]["base"]] = float(row[R.ACCURACY])
        entry["rel_macs"] = float(row.get(R.relative_key("macs"), math.nan))
    return table


def _ranks(values: np.ndarray) -> np.ndarray:
    """1 = best (highest accuracy); ties share their mean rank."""
    from scipy.stats import rankdata

    return rankdata(-values)


def analyse(table: list[dict], datasets: tuple[str, str], top: int, evaluated: dict[str, int] | None = None) -> dict:
    """Rank correlations, top-k placements and uniform-baseline comparisons (module docstring);
    with ``evaluated`` (validation images per data set), how much of each set's spread is
    evaluation noise (:func:`reliability`)."""
    from scipy.stats import spearmanr

    a, b = datasets
    rows = [r for r in table if not (math.isnan(r[a]) or math.isnan(r[b]))]
    if len(rows) < 3:
        raise ConfigError(f"only {len(rows)} profiles finished on both data sets; a rank correlation needs at least 3")
    acc = {d: np.array([r[d] for r in rows]) for d in datasets}
    macs = np.array([r["rel_macs"] for r in rows])
    rho, p_value = spearmanr(acc[a], acc[b])
    rho_ma, rho_mb = spearmanr(macs, acc[a])[0], spearmanr(macs, acc[b])[0]
    denominator = math.sqrt(max((1 - rho_ma**2) * (1 - rho_mb**2), 0.0))
    partial = (rho - rho_ma * rho_mb) / denominator if denominator > 1e-12 else math.nan
    ranks = {d: _ranks(acc[d]) for d in datasets}
    k = min(top, len(rows))
    placement = {}
    for source, target in ((a, b), (b, a)):
        best = np.argsort(ranks[source], kind="stable")[:k]
        placement[f"{source}->{target}"] = [
            {"name": rows[i]["name"], "rank_source": float(ranks[source][i]), "rank_target": float(ranks[target][i])}
            for i in best
        ]
    top_sets = [set(np.argsort(ranks[d], kind="stable")[:k]) for d in datasets]
    return {
        "profiles": len(rows),
        "spearman": float(rho),
        "p_value": float(p_value),
        "spearman_macs": {a: float(rho_ma), b: float(rho_mb)},
        "partial_spearman_given_macs": float(partial),
        "top": k,
        "placement": placement,
        "top_overlap": len(top_sets[0] & top_sets[1]),
        "uniform": _uniform_comparison(rows, datasets, ranks),
        "range": {d: [float(acc[d].min()), float(acc[d].max())] for d in datasets},
        "saturated": [d for d in datasets if acc[d].max() - acc[d].min() < SATURATED],
        **(reliability(acc, evaluated) if evaluated else {}),
    }


def reliability(acc: dict[str, np.ndarray], evaluated: dict[str, int]) -> dict:
    """Each profile's accuracy is a count over ``evaluated[d]`` images, so it carries binomial
    noise of variance p(1-p)/n even with the model fixed. The share of a data set's spread
    across profiles that is not that noise is its reliability (1 - noise variance / observed
    variance); two measurements with reliabilities r_a and r_b cannot correlate above
    sqrt(r_a r_b) however well the true accuracies agree (Spearman's attenuation), so a low
    correlation under a low ceiling is no evidence against transfer. Training noise comes on top
    of the binomial noise, so these reliabilities are upper bounds."""
    noise_sd, reliable = {}, {}
    for d, values in acc.items():
        noise = float(np.mean(values * (1.0 - values) / evaluated[d]))
        spread = float(np.var(values, ddof=1))
        noise_sd[d] = math.sqrt(noise)
        reliable[d] = max(0.0, 1.0 - noise / spread) if spread > 0 else 0.0
    a, b = acc
    return {
        "evaluated": dict(evaluated),
        "noise_sd": noise_sd,
        "reliability": reliable,
        "ceiling": math.sqrt(reliable[a] * reliable[b]),
    }


def noise_lines(stats: dict) -> list[str]:
    """How much evaluation noise bounds the agreement (empty when the counts are unknown)."""
    if "ceiling" not in stats:
        return []
    sets = "; ".join(
        f"{d}: +-{100 * stats['noise_sd'][d]:.2f} points per profile from {stats['evaluated'][d]:,} images, "
        f"reliability at most {stats['reliability'][d]:.2f}"
        for d in stats["evaluated"]
    )
    return [
        f"evaluation noise: {sets}",
        f"agreement to expect from these measurements if the true accuracies ranked identically: about "
        f"{stats['ceiling']:.2f}, so a correlation far below 1 is no evidence against transfer unless this is "
        "high (evaluate on more validation images, evaluate.val_images, to raise it)",
    ]


def _uniform_comparison(rows, datasets, ranks) -> list[dict]:
    """Each uniform profile's rank per data set, and how many sampled profiles beat it with
    no more MACs (claim b: some profiles are better than the uniform baseline)."""
    out = []
    for i, row in enumerate(rows):
        if not row["name"].startswith("uniform-"):
            continue
        entry = {"name": row["name"], "rel_macs": row["rel_macs"]}
        for d in datasets:
            beaten = [
                r["name"]
                for r in rows
                if not r["name"].startswith("uniform-") and r["rel_macs"] <= row["rel_macs"] + 1e-9 and r[d] > row[d]
            ]
            entry[d] = {R.ACCURACY: row[d], "rank": float(ranks[d][i]), "beaten_by_cheaper": beaten}
        out.append(entry)
    return out


def saturation_lines(stats: dict) -> list[str]:
    """One line per data set too easy to rank the profiles (``SATURATED``)."""
    return [
        f"{name}: every profile within {100 * (hi - lo):.1f} points ({lo:.4f}-{hi:.4f}), so its ranks "
        "are noise and so is the agreement with them; use a data set with headroom "
        "(a harder one, or fewer training images, e.g. --other-set options.n_train=300 for shapes)"
        for name, (lo, hi) in stats["range"].items()
        if name in stats["saturated"]
    ]


def report(config, datasets, settings, stats, table, errors, other_data: DataConfig | None = None) -> str:
    a, b = datasets
    lines = [
        "# Do good profiles on one data set stay good on another?",
        "",
        f"{config.model.name} (width {config.model.width:g}, {config.model.input_size} px), "
        f"{data_label(config.data)} vs {data_label(other_data) if other_data else b}.",
        f"{len(table)} profiles x 2 data sets ({stats['profiles']} finished on both, {len(errors)} trials errored); "
        f"levels {config.space.levels}; fine-tune {config.finetune.steps} steps at lr {config.finetune.lr:g}, "
        f"base {config.base.steps} steps per data set.",
        "",
        "## Rank agreement (the out-of-the-box profiles paper, arXiv:2004.14584, "
        "claims top profiles on one data set are top on another)",
        "",
        f"- Spearman rank correlation of accuracy, {a} vs {b}: **{stats['spearman']:.3f}** "
        f"(p = {stats['p_value']:.3g}, n = {stats['profiles']})",
        f"- Spearman of accuracy with MACs: {a} {stats['spearman_macs'][a]:.3f}, {b} {stats['spearman_macs'][b]:.3f}",
        f"- Partial rank correlation {a} vs {b} given MACs: {stats['partial_spearman_given_macs']:.3f} "
        "(what agreement is left once 'bigger is better' is taken out)",
        f"- Top-{stats['top']} overlap between the two data sets: {stats['top_overlap']} of {stats['top']}",
        *(f"- **{line}**" for line in saturation_lines(stats)),
        *(f"- {line[0].upper()}{line[1:]}" for line in noise_lines(stats)),
        "",
        f"| top-{stats['top']} of | profile | rank there | rank on the other (of {stats['profiles']}) |",
        "|---|---|---:|---:|",
    ]
    for direction, places in stats["placement"].items():
        for place in places:
            lines.append(
                f"| {direction.split('->')[0]} | {place['name']} | {place['rank_source']:g} | "
                f"{place['rank_target']:g} |"
            )
    if stats["uniform"]:
        lines += [
            "",
            "## Uniform baselines (the paper claims some profiles beat uniform ones)",
            "",
            f"| uniform profile | MACs of dense | acc {a} (rank) | sampled beating it with <= MACs on {a} | "
            f"acc {b} (rank) | ... on {b} |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for u in stats["uniform"]:
            lines.append(
                f"| {u['name']} | {u['rel_macs']:.1%} | {u[a][R.ACCURACY]:.4f} ({u[a]['rank']:g}) | "
                f"{len(u[a]['beaten_by_cheaper'])} | "
                f"{u[b][R.ACCURACY]:.4f} ({u[b]['rank']:g}) | {len(u[b]['beaten_by_cheaper'])} |"
            )
    lines += [
        "",
        "## Every profile",
        "",
        f"| profile | MACs of dense | acc {a} | acc {b} | ratios |",
        "|---|---:|---:|---:|---|",
    ]
    for r in sorted(table, key=lambda r: -np.nan_to_num(r[a], nan=-1)):
        ratios = " ".join(f"{v:.2f}" for v in r["profile"].values())
        lines.append(f"| {r['name']} | {r['rel_macs']:.1%} | {r[a]:.4f} | {r[b]:.4f} | {ratios} |")
    lines += [f"- errored {trial}: {reason}" for trial, reason in errors.items()]
    return "\n".join(lines) + "\n"


def plot(table, datasets, stats, top, path: Path, config) -> Path:
    plt = pyplot()
    a, b = datasets
    rows = [r for r in table if not (math.isnan(r[a]) or math.isnan(r[b]))]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), dpi=110)
    uniform = [r for r in rows if r["name"].startswith("uniform-")]
    sampled = [r for r in rows if not r["name"].startswith("uniform-")]
    points = axes[0].scatter(
        [r[a] for r in sampled],
        [r[b] for r in sampled],
        c=[r["rel_macs"] for r in sampled],
        cmap="viridis",
        s=28,
        label="sampled",
    )
    axes[0].scatter(
        [r[a] for r in uniform],
        [r[b] for r in uniform],
        marker="s",
        facecolors="none",
        edgecolors="tab:red",
        s=50,
        label="uniform",
    )
    fig.colorbar(points, ax=axes[0], label="MACs of dense")
    axes[0].set_xlabel(f"accuracy on {a}")
    axes[0].set_ylabel(f"accuracy on {b}")
    axes[0].set_title(f"Spearman {stats['spearman']:.2f} (given MACs {stats['partial_spearman_given_macs']:.2f})")
    axes[0].legend(loc="lower right", fontsize=8)
    ranks_a, ranks_b = _ranks(np.array([r[a] for r in rows])), _ranks(np.array([r[b] for r in rows]))
    best = set(np.argsort(ranks_a, kind="stable")[:top])
    colours = ["tab:red" if i in best else "tab:blue" for i in range(len(rows))]
    axes[1].scatter(ranks_a, ranks_b, c=colours, s=28)
    axes[1].plot([1, len(rows)], [1, len(rows)], c="lightgrey", lw=1)
    axes[1].set_xlabel(f"rank on {a} (1 = best)")
    axes[1].set_ylabel(f"rank on {b}")
    axes[1].set_title(f"top-{top} of {a} in red")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"profile transfer: {config.model.name} (width {config.model.width:g}), {a} vs {b}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
