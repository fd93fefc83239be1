"""What the peers benchmark tells a reader: its verdict, a missing peer, FastNAS's grid."""

from __future__ import annotations

import sys

from benchmarks import vs_peers
from benchmarks.vs_peers import Outcome, Row


def row(*accuracies: float) -> Row:
    return Row([Outcome(a, 0.3, 0.3, 1.0, 1.0, 1) for a in accuracies])


def test_a_lost_comparison_is_reported_as_not_met_never_hidden():
    lines = vs_peers.verdict(
        {"uniform": row(0.90, 0.91, 0.92), "fastnas": row(0.93, 0.94, 0.95), "tp-global": row(0.85, 0.86, 0.87)}
    )
    assert any("vs fastnas" in line and "below: not met" in line for line in lines)
    assert any("vs tp-global" in line and "by more than the seed spread: met" in line for line in lines)


def test_a_gap_inside_the_seed_spread_is_not_a_win():
    lines = vs_peers.verdict({"random": row(0.90, 0.93, 0.96), "tp-global": row(0.91, 0.92, 0.93)})
    assert lines == [
        "prunetune's best (random) 0.9300 vs tp-global 0.9200: gap +0.0100, seed spread 0.0300 "
        "-> at or above, within the seed spread: not met"
    ]


def test_one_seed_gives_no_verdict_either_way():
    (line,) = vs_peers.verdict({"uniform": row(0.95), "fastnas": row(0.90)})
    assert line.endswith("one seed: no spread to judge by")


def test_a_missing_peer_is_named_with_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "modelopt.torch.prune", None)  # import fails as if not installed
    missing = vs_peers.missing_peers()
    assert list(missing) == ["fastnas"]
    assert "pip install -e '.[peers]'" in missing["fastnas"]


def test_fastnas_gets_about_the_same_number_of_choices_in_every_layer():
    from prunetune.trainables import build_model

    model = build_model("vgg11", num_classes=10, input_size=16, width=0.25)
    rules = vs_peers.fastnas_rules(model, grid=8)
    widths = {name: m.out_channels for name, m in model.named_modules() if hasattr(m, "out_channels")}
    choices = {name: widths[name] // rule["channel_divisor"] for name, rule in rules["nn.Conv2d"].items()}
    assert set(choices) == set(widths)
    assert set(choices.values()) == {8}  # 16 to 128 channels, 8 choices each
    assert all(rules["nn.BatchNorm2d"][name]["feature_divisor"] >= 1 for name in rules["nn.BatchNorm2d"])


def test_every_name_a_benchmark_imports_from_prunetune_exists():
    """Benchmarks import inside functions, so a renamed helper breaks them only when run (five
    did, after the data package replaced ``_data_on``); this reads every import instead."""
    import ast
    import importlib
    from pathlib import Path

    missing = []
    for path in sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prunetune"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path.name}:{node.lineno} {node.module}.{alias.name}")
    assert not missing, f"benchmarks import names that no longer exist: {missing}"


def test_a_rerun_prints_every_seed_from_the_record_and_exits_0_on_a_lost_comparison(tmp_path, capsys, monkeypatch):
    """Outcomes already recorded with the same settings are not measured again (no Ray starts):
    the table and the verdict come from the record, and losing to a peer is not an error."""
    monkeypatch.setattr(vs_peers, "missing_peers", dict)  # importing ModelOpt takes seconds; tested above
    argv = ["--quick", "--storage", str(tmp_path), "--methods", "tp-global", "uniform", "random"]
    args = vs_peers.parse_args(argv)
    record = vs_peers.Record(args)
    for seed in (0,):
        record.append(seed, "tp-global", 0.91, Outcome(0.90, 0.299, 0.28, 2.0, 20.0, 0, "global ratio 0.470"))
        record.append(seed, "uniform", 0.91, Outcome(0.85, 0.295, 0.28, 20.0, 6.0, 1))
        record.append(seed, "random", 0.91, Outcome(0.86, 0.300, 0.27, 35.0, 6.0, 4))
    assert vs_peers.main(argv) == 0
    out = capsys.readouterr().out
    assert "3 already measured with these settings, kept" in out
    assert "dense model, test accuracy: 0.9100" in out
    lines = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.split() and line.split()[0] in {"uniform", "random", "tp-global"}
    }
    assert "0.9000" in lines["tp-global"] and "global ratio 0.470" in lines["tp-global"]
    assert "prunetune's best (random) 0.8600 vs tp-global 0.9000" in out
    assert "one seed: no spread to judge by" in out


def test_search_vs_baselines_reruns_from_its_record_without_measuring_again(tmp_path, capsys, monkeypatch):
    """Figures recorded with the same settings are kept (no Ray, no training): the table shows
    the dense accuracy beside the published range and the methods' spread over seeds."""
    from benchmarks import search_vs_baselines as svb

    def measure(*_):
        raise AssertionError("a recorded figure was measured again")

    monkeypatch.setattr(svb, "run_method", measure)
    monkeypatch.setattr(svb, "dense_accuracy", measure)
    monkeypatch.setattr(svb, "start_ray", measure)
    argv = ["--tasks", "vgg11", "--seeds", "2", "--methods", "uniform", "random", "--storage", str(tmp_path)]
    argv += ["--no-correlation", "--cost", "params", "--budget", "0.15"]
    args = svb.argparse.Namespace(
        data="fashion", budget=0.15, cost="params", trials=20, finetune_steps=40, top=3, confirm_steps=300,
        base_steps=2400, storage=tmp_path,
    )  # fmt: skip
    record = svb.Record(args, "vgg11")
    for seed, (dense, uniform, random) in enumerate([(0.90, 0.86, 0.87), (0.91, 0.85, 0.88)]):
        record.append(seed, "dense", svb.Figure(dense, 2400, True, 1.0))
        record.append(seed, "uniform", svb.Figure(uniform, 640, True, 0.149))
        record.append(seed, "random", svb.Figure(random, 1400, True, 0.148))
    assert svb.main(argv) == 0
    out = capsys.readouterr().out
    assert "vgg11 on Fashion-MNIST 28 px, params <= 15% of dense" in out
    assert "dense test accuracy 0.9050 (0.9000 0.9100); published: about 93-95%" in out
    assert "random          0.8750  0.0071 0.870 0.880" in out
    assert "vgg11: best method random 0.8750 vs uniform 0.8550" in out


def test_search_vs_baselines_forgets_a_fixed_method_and_measures_only_it_again(tmp_path, capsys, monkeypatch):
    """After a fix to sensitivity: ``--forget sensitivity`` sets its figures and folders aside
    and measures it again; the other methods' figures are read, not measured."""
    from benchmarks import search_vs_baselines as svb

    args = svb.argparse.Namespace(
        data="fashion", budget=0.15, cost="params", trials=20, finetune_steps=40, top=1, confirm_steps=600,
        base_steps=2400, storage=tmp_path,
    )  # fmt: skip
    record = svb.Record(args, "vgg11")
    record.append(0, "dense", svb.Figure(0.90, 2400, True, 1.0))
    record.append(0, "uniform", svb.Figure(0.87, 640, True, 0.149))
    record.append(0, "sensitivity", svb.Figure(0.83, 640, True, 0.144))
    folder = tmp_path / svb.run_name(args, "vgg11", "sensitivity", 0)
    folder.mkdir()
    measured = []

    def measure(_args, method, task, seed):
        measured.append((method, seed))
        return svb.Figure(0.89, 640, True, 0.145)

    monkeypatch.setattr(svb, "run_method", measure)
    monkeypatch.setattr(svb, "start_ray", lambda: None)
    argv = ["--tasks", "vgg11", "--seeds", "1", "--methods", "uniform", "sensitivity", "--storage", str(tmp_path)]
    argv += ["--no-correlation", "--cost", "params", "--budget", "0.15", "--top", "1", "--confirm-steps", "600"]
    assert svb.main([*argv, "--forget", "sensitivity"]) == 0
    assert measured == [("sensitivity", 0)]
    assert "sensitivity     0.8900" in capsys.readouterr().out
    assert [line["figure"]["accuracy"] for line in record.lines() if line["method"] == "sensitivity"] == [0.89]
    superseded = record.path.with_suffix(".superseded.jsonl").read_text()
    assert '"accuracy": 0.83' in superseded and "uniform" not in superseded
    assert not folder.exists() and len(list((tmp_path / "superseded").iterdir())) == 1


def test_vs_peers_builds_prunetune_methods_from_search_vs_baselines_configs():
    """vs_peers runs prunetune's methods through search_vs_baselines' configs: every setting
    those read must be on vs_peers' arguments (``--cost`` once was not, and the run failed)."""
    from benchmarks.search_vs_baselines import method_config
    from prunetune.search.config import parse_config

    args = vs_peers.parse_args(["--quick"])
    for method in vs_peers.OURS:
        config = parse_config(method_config(args, method, args.task, 0))
        assert config.budgets[0].cost == "macs" and config.budgets[0].max == args.budget
