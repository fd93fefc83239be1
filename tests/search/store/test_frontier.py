from __future__ import annotations

import csv
import json
import re

from prunetune.search.store.frontier import (
    Reference,
    TrialRecord,
    format_table,
    pareto,
    write_frontier,
)
from prunetune.search.store.plots import plot_frontier


def _rec(tid, acc, macs, feasible=True, profile=None, meets=None):
    meets = {"macs": feasible} if meets is None else meets
    return TrialRecord(
        tid, acc, 0.1, feasible, {"macs": macs}, {"macs": macs / 100}, profile or {"g": 0.5}, meets=meets
    )


RECORDS = [
    _rec("a", 0.90, 50),
    _rec("b", 0.80, 30),
    _rec("c", 0.85, 60),
    _rec("d", 0.95, 40, feasible=False),
    _rec("e", 0.70, 20),
]
REFERENCE = Reference(
    dense_accuracy=0.97, dense_costs={"macs": 100.0}, limits={"macs": 55.0}, labels={"macs": "macs<=55%"}
)


def test_pareto_keeps_only_undominated_feasible_trials_cheapest_first():
    assert [r.trial_id for r in pareto(RECORDS, "macs")] == ["e", "b", "a"]


def test_frontier_files_and_table(tmp_path):
    front = pareto(RECORDS, "macs")
    paths = write_frontier(front, "macs", tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["trial_id"] for r in rows] == ["e", "b", "a"] and float(rows[2]["validation_accuracy"]) == 0.9
    blob = json.loads(paths["json"].read_text())
    assert blob["frontier"][0]["profile"] == {"g": 0.5} and blob["partial"] is False
    assert "0.9000" in format_table(front, "macs")
    png = plot_frontier(RECORDS, "macs", tmp_path / "f.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_empty_frontier_says_what_to_do():
    assert "no feasible trial" in format_table([], "macs")


def test_table_starts_with_the_dense_row_and_reads_each_trial_as_a_share_of_it():
    lines = format_table(pareto(RECORDS, "macs"), "macs", REFERENCE).splitlines()
    assert lines[0].split()[:5] == ["trial", "val", "acc", "of", "dense"]  # the figure says which accuracy
    dense = lines[2].split()
    assert dense[:5] == ["dense", "0.9700", "100.0%", "100", "100.0%"]
    a = next(line for line in lines if line.startswith("a "))
    assert "92.8%" in a and "50.0%" in a  # 0.90 / 0.97 of dense accuracy, 50 of 100 MACs


def test_partial_frontier_is_marked():
    assert "partial" in format_table(pareto(RECORDS, "macs"), "macs", partial=True).splitlines()[-1]


def test_profile_column_names_the_groups_that_vary():
    fixed = {f"layer{i}.conv": 0.5 for i in range(6)}
    front = [
        _rec(f"t{i}", 0.5 + i / 10, 10 + i, profile={**fixed, "stem": 0.25 * (i + 1), "head": 1.0}) for i in range(3)
    ]
    table = format_table(front, "macs")
    assert "groups that vary" in table
    rows = [row for row in table.splitlines() if re.match(r"t\d", row)]
    assert [re.search(r"stem=(\S+)", row).group(1) for row in rows] == ["0.25", "0.50", "0.75"]
    assert "head=" not in table and "layer0" not in table  # constant groups are left out


def test_profile_column_summarises_stages_when_many_groups_vary():
    def profile(i):
        return {
            "stem.0": 0.2 * i + 0.1,
            **{f"layer1.{j}": 0.1 * (i + j) for j in range(3)},
            **{f"layer2.{j}": 0.3 + 0.05 * i + j / 100 for j in range(3)},
        }

    table = format_table([_rec(f"t{i}", 0.5, 10 + i, profile=profile(i)) for i in range(1, 3)], "macs")
    assert "per stage" in table
    assert re.search(r"stem 0\.30 layer1 0\.20 layer2 0\.36", table)  # t1: mean keep ratio of each stage


def _figure(records, reference=REFERENCE):
    from prunetune.search.store.plots import frontier_figure

    return frontier_figure(records, "macs", "demo", reference=reference)


def test_frontier_png_reads_costs_as_share_of_dense_with_budget_and_dense_point():
    import matplotlib.pyplot as plt

    fig = _figure(RECORDS)
    ax = fig.axes[0]
    try:
        assert "% of the dense" in ax.get_xlabel()
        assert ax.xaxis.get_major_formatter()(0.5, 0) == "50%"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert {"frontier", "feasible", "dense model", "budget macs<=55%", "over macs<=55%"} <= set(labels)
        budget = next(line for line in ax.get_lines() if line.get_label() == "budget macs<=55%")
        assert list(budget.get_xdata()) == [0.55, 0.55]
        dense = next(c for c in ax.collections if c.get_label() == "dense model")
        assert dense.get_offsets().tolist() == [[1.0, 0.97]]
        over = next(c for c in ax.collections if c.get_label() == "over macs<=55%")
        assert over.get_offsets().tolist() == [[0.4, 0.95]]  # trial d, drawn at 40% of dense
        # a second axis gives the absolute cost
        assert any("absolute" in child.get_xlabel() for child in ax.child_axes)
        # the legend sits beside the axes, never over a point
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer))
    finally:
        plt.close(fig)


def test_a_one_point_frontier_and_a_baseline_are_drawn():
    import matplotlib.pyplot as plt

    uniform = (_rec("u1", 0.6, 30), _rec("u2", 0.75, 50))
    reference = Reference(dense_accuracy=0.97, dense_costs={"macs": 100.0}, baseline=uniform)
    fig = _figure([_rec("only", 0.8, 40)], reference)
    try:
        front = next(line for line in fig.axes[0].get_lines() if line.get_label() == "frontier")
        assert front.get_marker() == "o" and list(front.get_xdata()) == [0.4]
        base = next(line for line in fig.axes[0].get_lines() if line.get_label() == "uniform")
        assert list(base.get_xdata()) == [0.3, 0.5] and base.get_linestyle() == "--"
    finally:
        plt.close(fig)


def test_render_frontier_writes_a_png_per_cost_and_one_light_responsive_page(tmp_path):
    from prunetune.search.store.plots import render_frontier, shared_plotlyjs

    records = [
        TrialRecord(
            "a",
            0.9,
            0.1,
            True,
            {"macs": 50, "params": 10},
            {"macs": 0.5, "params": 0.4},
            {"g": 0.5},
            meets={"macs": True},
        ),
        TrialRecord(
            "b",
            0.8,
            0.1,
            False,
            {"macs": 70, "params": 12},
            {"macs": 0.7, "params": 0.48},
            {"g": 0.7},
            meets={"macs": False},
        ),
    ]
    experiment = tmp_path / "demo"
    script = shared_plotlyjs(tmp_path)
    files = render_frontier(records, ("macs", "params"), experiment, "demo", reference=REFERENCE, plotlyjs=script)
    assert (
        files["png:params"] == experiment / "frontier-params.png" and files["png:params"].read_bytes()[:4] == b"\x89PNG"
    )
    page = files["html"].read_text().replace("\\u003c", "<")
    assert files["html"].stat().st_size < 200_000  # plotly.js is not inlined
    assert 'src="../plotly.min.js"' in page and script.stat().st_size > 1_000_000
    assert '"responsive": true' in page and '"width"' not in page.split('"layout"')[1].split('"template"')[0]
    names = re.findall(r'"name":"([^"]+)"', page.replace(": ", ":"))
    assert {"frontier", "dense model", "over macs<=55%"} <= set(names)
    assert "budget macs<=55%" in page
    # the script is written once for the folder, not again per page
    mtime = script.stat().st_mtime_ns
    assert shared_plotlyjs(tmp_path).stat().st_mtime_ns == mtime


def test_pareto_front_works_on_plain_cost_accuracy_pairs():
    from prunetune.search.store.frontier import pareto_front

    pairs = [(50, 0.90), (30, 0.80), (60, 0.85), (30, 0.75), (20, 0.70), (40, 0.80)]
    front = pareto_front(pairs, cost=lambda p: p[0], accuracy=lambda p: p[1])
    assert front == [(20, 0.70), (30, 0.80), (50, 0.90)]  # at one cost the most accurate; ties on accuracy lose


def test_the_dense_line_keeps_the_digits_of_a_measured_latency():
    from prunetune.search.store.dense import describe_dense

    reference = Reference(dense_accuracy=0.98, dense_costs={"latency": 1.3107, "macs": 2653002.0})
    assert (
        describe_dense(reference, ["latency", "macs"]) == "dense model: accuracy 0.9800, 1.311 latency, 2,653,002 macs"
    )
