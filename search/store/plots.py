"""The frontier's figures: the static PNG per cost (matplotlib), one interactive HTML page with a
plot per cost (plotly), and the overlay of several searches' frontiers that ``prunetune compare`` draws.

Every figure is read against the dense model (:class:`~prunetune.search.store.frontier.Reference`):
costs are a share of the dense model's (absolute values on a second axis and in hover text),
the budget is a line, the dense model a point, a baseline (the uniform profile) a dashed curve,
and each infeasible trial is grey and grouped by the budget it broke. HTML pages load plotly.js
from one shared file per folder tree (:func:`shared_plotlyjs`), not inlined in every page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from prunetune.search.store.frontier import (
    Reference,
    TrialRecord,
    broken_budgets,
    confirmed_points,
    pareto,
    search_trials,
    write_frontier,
)

PLOTLY_JS = "plotly.min.js"


def share_of_dense(record: TrialRecord, cost: str, dense: float | None) -> float:
    """Where a record sits on the x axis: its share of the dense cost (absolute if unknown)."""
    if dense:
        return record.relative.get(cost, record.costs[cost] / dense)
    return record.costs[cost]


def infeasible_groups(records: Sequence[TrialRecord], cost: str, reference: Reference) -> dict[str, list[TrialRecord]]:
    """Infeasible records with ``cost`` by the budgets they broke, labelled "over <budget>"."""
    groups: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.feasible or cost not in r.costs:
            continue
        broken = [reference.labels.get(key, key) for key in broken_budgets(r)]
        groups.setdefault(f"over {', '.join(broken)}" if broken else "over budget", []).append(r)
    return groups


CONFIRMED_LABEL = "confirmed (test accuracy)"


def accuracy_label(records: Sequence[TrialRecord]) -> str:
    """The y axis: validation accuracy; where confirmed profiles are drawn too, the axis says
    which marker is which (trials and frontier: validation; diamonds: test split)."""
    if any(r.confirmed for r in records):
        return "accuracy: trials validation, \u25c6 confirmed test"
    return "validation accuracy"


def frontier_figure(records: Sequence[TrialRecord], cost: str, title: str = "", *, reference: Reference | None = None):
    """The matplotlib figure :func:`frontier_png` saves (tests read it back)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    reference = reference or Reference()
    everything = [r for r in records if r.reference is None]  # reference profiles: the baseline curve
    records = search_trials(everything)  # at validation accuracy; confirmed ones drawn beside
    dense = reference.dense_cost(cost, everything)
    x = lambda r: share_of_dense(r, cost, dense)  # noqa: E731
    fig, ax = plt.subplots(figsize=(8.4, 4.6), dpi=110)
    for (label, members), marker in zip(infeasible_groups(records, cost, reference).items(), "osD^v<>p*h" * 10):
        ax.scatter(
            [x(r) for r in members], [r.accuracy for r in members], c="0.72", marker=marker, s=20, label=label, zorder=2
        )
    feasible = [r for r in records if r.feasible and cost in r.costs]
    ax.scatter([x(r) for r in feasible], [r.accuracy for r in feasible], c="tab:blue", s=20, label="feasible", zorder=3)
    front = pareto(records, cost)
    ax.step(
        [x(r) for r in front],
        [r.accuracy for r in front],
        where="post",
        c="tab:red",
        marker="o",
        ms=5,
        label="frontier",
        zorder=4,
    )
    points = [(c, s) for c, s in confirmed_points(everything) if cost in c.costs]
    for index, (point, source) in enumerate(points):
        if source is not None and cost in source.costs:  # joined to the trial it confirms
            ax.plot([x(source), x(point)], [source.accuracy, point.accuracy], c="tab:purple", lw=0.8, ls=":")
        ax.scatter(
            [x(point)], [point.accuracy], marker="D", s=36, c="tab:purple", zorder=5,
            label=CONFIRMED_LABEL if index == 0 else None,
        )  # fmt: skip
    baseline = sorted((r for r in reference.baseline if cost in r.costs), key=x)
    if baseline:
        ax.plot(
            [x(r) for r in baseline],
            [r.accuracy for r in baseline],
            ls="--",
            c="tab:green",
            marker="s",
            ms=4,
            label=reference.baseline_label,
            zorder=3,
        )
    if cost in reference.limits:
        limit = reference.limits[cost] / dense if dense else reference.limits[cost]
        ax.axvline(limit, c="tab:orange", ls=":", lw=1.5, label=f"budget {reference.labels.get(cost, cost)}", zorder=1)
    if reference.dense_accuracy is not None and dense:
        ax.scatter([1.0], [reference.dense_accuracy], marker="*", s=140, c="black", label="dense model", zorder=5)
    if dense:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(f"{cost} (% of the dense model's {dense:,.0f})")
        top = ax.secondary_xaxis("top", functions=(lambda v: v * dense, lambda v: v / dense))
        top.set_xlabel(f"{cost} (absolute)")
    else:
        ax.set_xlabel(cost)
    ax.set_ylabel(accuracy_label(everything))
    ax.set_title(title or f"accuracy vs {cost}", pad=28 if dense else 6)
    ax.grid(alpha=0.3)
    # Beside the axes, never over the points.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    fig.tight_layout()
    return fig


def frontier_png(
    records: Sequence[TrialRecord], cost: str, path: Path, title: str = "", *, reference: Reference | None = None
) -> Path:
    """Save :func:`frontier_figure` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = frontier_figure(records, cost, title, reference=reference)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_frontier(
    records: Sequence[TrialRecord], cost: str, path: Path, title: str = "", *, reference: Reference | None = None
) -> Path:
    """The static frontier PNG of one cost (:func:`frontier_png`): accuracy against ``cost`` as
    a share of the dense model, the budget, the dense model and ``reference``'s baseline;
    infeasible trials grey, by the budget they broke."""
    return frontier_png(records, cost, path, title, reference=reference)


def _hover(record: TrialRecord, cost: str) -> str:
    profile = ", ".join(f"{group}={ratio:.2f}" for group, ratio in record.profile.items())
    if len(profile) > 160:
        profile = profile[:157] + "..."
    relative = record.relative.get(cost)
    share = f" ({relative:.1%} of dense)" if relative is not None else ""
    broken = broken_budgets(record)
    over = f"<br>over {', '.join(broken)}" if broken else ""
    return (
        f"{record.trial_id}<br>{_figure(record)} {record.accuracy:.4f}<br>{cost} {record.costs[cost]:,.0f}{share}{over}"
        f"<br>{profile}"
    )


def _figure(record: TrialRecord) -> str:
    return "confirmed test accuracy" if record.confirmed else "validation accuracy"


def _trace(members: Sequence[TrialRecord], cost: str, x, label: str, first: bool, **style):
    import plotly.graph_objects as go

    return go.Scatter(
        x=[x(r) for r in members],
        y=[r.accuracy for r in members],
        name=label,
        legendgroup=label,
        showlegend=first,
        hovertext=[_hover(r, cost) for r in members],
        hoverinfo="text",
        **style,
    )


def _cost_traces(records: Sequence[TrialRecord], cost: str, first: bool, reference: Reference) -> list:
    import plotly.graph_objects as go

    everything = [r for r in records if r.reference is None]  # reference profiles: the baseline curve
    records = search_trials(everything)  # at validation accuracy; confirmed ones drawn beside
    dense = reference.dense_cost(cost, everything)
    x = lambda r: share_of_dense(r, cost, dense)  # noqa: E731
    grey = {"color": "lightgrey", "size": 8}
    traces = [
        _trace(members, cost, x, label, first, mode="markers", marker=grey)
        for label, members in infeasible_groups(records, cost, reference).items()
    ]
    feasible = [r for r in records if r.feasible and cost in r.costs]
    traces.append(_trace(feasible, cost, x, "feasible", first, mode="markers", marker={"color": "#1f77b4", "size": 8}))
    traces.append(
        _trace(
            pareto(records, cost),
            cost,
            x,
            "frontier",
            first,
            mode="lines+markers",
            line={"shape": "hv", "color": "#d62728"},
        )
    )
    points = [(c, s) for c, s in confirmed_points(everything) if cost in c.costs]
    if points:
        xs, ys = [], []
        for point, source in points:  # each confirmed profile joined to the trial it confirms
            if source is not None and cost in source.costs:
                xs += [x(source), x(point), None]
                ys += [source.accuracy, point.accuracy, None]
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", line={"dash": "dot", "color": "#9467bd"}, showlegend=False))
        traces.append(
            _trace(
                [p for p, _ in points],
                cost,
                x,
                CONFIRMED_LABEL,
                first,
                mode="markers",
                marker={"symbol": "diamond", "color": "#9467bd", "size": 10},
            )
        )
    baseline = sorted((r for r in reference.baseline if cost in r.costs), key=x)
    if baseline:
        traces.append(
            _trace(
                baseline,
                cost,
                x,
                reference.baseline_label,
                first,
                mode="lines+markers",
                line={"dash": "dash", "color": "#2ca02c"},
            )
        )
    if reference.dense_accuracy is not None and dense:
        traces.append(
            go.Scatter(
                x=[1.0],
                y=[reference.dense_accuracy],
                mode="markers",
                name="dense model",
                legendgroup="dense model",
                showlegend=first,
                marker={"symbol": "star", "size": 14, "color": "black"},
                hoverinfo="text",
                hovertext=[f"dense model<br>accuracy {reference.dense_accuracy:.4f}<br>{cost} {dense:,.0f}"],
            )
        )
    return traces


def shared_plotlyjs(folder: Path) -> Path:
    """``folder/plotly.min.js``, the plotly.js of the installed plotly, written once: every
    page under ``folder`` loads it instead of carrying its own 4.8 MB copy."""
    from plotly.offline import get_plotlyjs

    path = Path(folder) / PLOTLY_JS
    script = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(script.encode()):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.replace(path)
    return path


def _write_page(fig, path: Path, plotlyjs: str | Path) -> Path:
    """``fig`` as a responsive page (full window width); ``plotlyjs`` is "inline" (one
    self-contained file) or the shared script file the page loads by a relative path."""
    import os

    include = True if plotlyjs == "inline" else os.path.relpath(plotlyjs, Path(path).parent)
    fig.write_html(
        str(path), include_plotlyjs=include, full_html=True, default_width="100%", config={"responsive": True}
    )
    return path


def frontier_html(
    records: Sequence[TrialRecord],
    costs: Sequence[str],
    path: Path,
    title: str = "",
    *,
    reference: Reference | None = None,
    plotlyjs: str | Path = "inline",
) -> Path:
    """One interactive page: accuracy against each cost (a share of the dense model's),
    stacked so each plot keeps the page's full width. ``plotlyjs``: "inline", or the path of a
    shared script (:func:`shared_plotlyjs`)."""
    from plotly.subplots import make_subplots

    reference = reference or Reference()
    fig = make_subplots(
        rows=len(costs), cols=1, subplot_titles=[f"accuracy vs {c}" for c in costs], vertical_spacing=0.12
    )
    for row, cost in enumerate(costs, start=1):
        for trace in _cost_traces(records, cost, row == 1, reference):
            fig.add_trace(trace, row=row, col=1)
        dense = reference.dense_cost(cost, records)
        if cost in reference.limits:
            limit = reference.limits[cost] / dense if dense else reference.limits[cost]
            fig.add_vline(
                x=limit,
                line={"dash": "dot", "color": "#ff7f0e"},
                row=row,
                col=1,
                annotation_text=f"budget {reference.labels.get(cost, cost)}",
            )
        axis = (
            {"title_text": f"{cost} (share of dense, {dense:,.0f})", "tickformat": ".0%"}
            if dense
            else {"title_text": cost}
        )
        fig.update_xaxes(row=row, col=1, **axis)
        fig.update_yaxes(title_text=accuracy_label(records), row=row, col=1)
    fig.update_layout(
        title=title or "frontier",
        height=420 * len(costs) + 80,
        autosize=True,
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return _write_page(fig, path, plotlyjs)


def render_frontier(
    records: Sequence[TrialRecord],
    costs: Sequence[str],
    directory: Path,
    title: str,
    *,
    reference: Reference | None = None,
    partial: bool = False,
    plotlyjs: str | Path = "inline",
) -> dict[str, Path]:
    """Every frontier file of a search in ``directory``: frontier.csv/.json (first cost),
    frontier.png (first cost) and frontier-<cost>.png for each other cost, and frontier.html
    with a plot per cost. Returns them by kind (``png``, ``png:<cost>``, ...) for listing."""
    directory.mkdir(parents=True, exist_ok=True)
    uniform = reference.baseline if reference is not None else ()
    from prunetune.search.store.best import best_of

    best = best_of(records)
    files = write_frontier(
        pareto(records, costs[0]),
        costs[0],
        directory,
        partial=partial,
        uniform=uniform,
        confirmed_records=[r for r, _ in confirmed_points(records)],
        best=None if best is None else best.summary(),
    )
    for index, cost in enumerate(costs):
        name = "frontier.png" if index == 0 else f"frontier-{cost}.png"
        files["png" if index == 0 else f"png:{cost}"] = frontier_png(
            records, cost, directory / name, title, reference=reference
        )
    files["html"] = frontier_html(
        records, costs, directory / "frontier.html", title, reference=reference, plotlyjs=plotlyjs
    )
    return files


def compare_html(
    curves: dict[str, list[tuple[float, float, str]]],
    cost: str,
    path: Path,
    title: str,
    dense: Mapping[str, float | None] | None = None,
    ylabel: str = "validation accuracy",
) -> Path:
    """Overlay of frontiers: ``curves`` maps a search label to (relative cost, accuracy, trial);
    ``dense`` a label to its dense model's accuracy, drawn as a star at 100% of dense cost."""
    import plotly.colors
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    for index, (label, points) in enumerate(curves.items()):
        color = palette[index % len(palette)]
        accuracy = (dense or {}).get(label)
        if accuracy is not None:
            fig.add_trace(
                go.Scatter(
                    x=[1.0],
                    y=[accuracy],
                    mode="markers",
                    name=f"{label}: dense model",
                    marker={"symbol": "star", "size": 13, "color": color},
                    hovertext=[f"{label}<br>dense model<br>accuracy {accuracy:.4f}"],
                    hoverinfo="text",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=[x for x, _, _ in points],
                y=[y for _, y, _ in points],
                mode="lines+markers",
                line={"shape": "hv"},
                name=label,
                line_color=color,
                hovertext=[
                    f"{label}<br>{trial}<br>accuracy {y:.4f}<br>{x:.1%} of dense {cost}" for x, y, trial in points
                ],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title,
        xaxis={"title": f"{cost} (fraction of dense)", "tickformat": ".0%"},
        yaxis={"title": ylabel},
        height=520,
        autosize=True,
        template="plotly_white",
    )
    return _write_page(fig, path, "inline")


def compare_png(
    curves: dict[str, list[tuple[float, float, str]]],
    cost: str,
    path: Path,
    title: str,
    dense: Mapping[str, float | None] | None = None,
    ylabel: str = "validation accuracy",
) -> Path:
    """The same overlay as :func:`compare_html`, as a static PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=110)
    for label, points in curves.items():
        (line,) = ax.step(
            [x for x, _, _ in points], [y for _, y, _ in points], where="post", marker="o", ms=4, label=label
        )
        if (dense or {}).get(label) is not None:
            ax.plot(
                [1.0],
                [dense[label]],
                marker="*",
                ms=12,
                ls="none",
                color=line.get_color(),
                label=f"{label}: dense model",
            )
    ax.set_xlabel(f"{cost} (fraction of dense)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
