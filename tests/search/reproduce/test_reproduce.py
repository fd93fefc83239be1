"""The statistics of `prunetune experiment criteria|transfer` (search/reproduce), on hand-made
numbers: no Ray, no torch."""

from __future__ import annotations

import math

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.reproduce.criteria import summarise, verdict
from prunetune.search.reproduce.transfer import TransferSettings, analyse
from prunetune.trainables import DataSpec, ModelSpec, PruneSettings
from prunetune.trainables.trial import TrialSetup
from prunetune.trainables.variants import variant_setup


def entry(name: str, macs: float, a: float, b: float) -> dict:
    return {"name": name, "profile": {"g": macs}, "rel_macs": macs, "digits": a, "shapes": b}


def test_identical_rankings_correlate_perfectly_and_top_k_stays_on_top():
    table = [entry(f"sampled-{i}", 0.2 + 0.1 * i, 0.5 + 0.05 * i, 0.3 + 0.04 * i) for i in range(6)]
    stats = analyse(table, ("digits", "shapes"), top=2)
    assert stats["spearman"] == pytest.approx(1.0) and stats["top_overlap"] == 2
    assert [p["rank_target"] for p in stats["placement"]["digits->shapes"]] == [1.0, 2.0]


def test_reversed_rankings_and_uniform_beaten_by_cheaper_profiles():
    table = [entry(f"sampled-{i}", 0.5, 0.5 + 0.05 * i, 0.9 - 0.05 * i) for i in range(5)]
    table.append(entry("uniform-0.5", 0.6, 0.55, 0.5))
    stats = analyse(table, ("digits", "shapes"), top=1)
    assert stats["spearman"] < -0.5
    assert stats["placement"]["digits->shapes"][0]["name"] == "sampled-4"
    assert stats["placement"]["digits->shapes"][0]["rank_target"] >= 5
    (uniform,) = stats["uniform"]
    assert uniform["digits"]["beaten_by_cheaper"] == ["sampled-2", "sampled-3", "sampled-4"]


def test_a_data_set_too_easy_to_rank_the_profiles_is_named_in_the_report():
    """Digits at 28 px: every profile at 99.2-100% (3 of 360 validation images apart), where
    Fashion-MNIST spreads 3 points. The report says digits' ranks are noise."""
    from prunetune.search.reproduce.transfer import report, saturation_lines

    table = [entry(f"sampled-{i}", 0.2 + 0.05 * i, 0.85 + 0.005 * i, 0.9917 + 0.0014 * (i % 3)) for i in range(7)]
    table = [{**row, "fashion": row.pop("digits"), "digits": row.pop("shapes")} for row in table]
    stats = analyse(table, ("fashion", "digits"), top=2)
    assert stats["saturated"] == ["digits"]
    [line] = saturation_lines(stats)
    assert line.startswith("digits: every profile within 0.3 points (0.9917-0.9945)"), line
    config = parse_config({"data": {"name": "fashion_mnist"}})
    assert f"- **{line}**" in report(config, ("fashion", "digits"), TransferSettings(), stats, table, {})


def test_evaluation_noise_bounds_the_agreement_a_transfer_can_show():
    """Shapes' 14 profiles in the 300-image run, 0.9595-0.9745 on 2,000 validation images: the
    binomial noise of counting right answers (+-0.39 points) is most of that spread, so even a
    perfect transfer would show little rank agreement. With 20x the images the same spread is
    signal, and the ceiling rises to near 1."""
    from prunetune.search.reproduce.transfer import noise_lines, report

    shapes = [0.973, 0.9635, 0.9745, 0.9665, 0.9725, 0.969, 0.9645, 0.9705, 0.9655, 0.97, 0.965, 0.968, 0.9685, 0.9595]
    table = [entry(f"sampled-{i}", 0.1 + 0.01 * i, 0.85 + 0.002 * i, acc) for i, acc in enumerate(shapes)]
    few = analyse(table, ("digits", "shapes"), top=3, evaluated={"digits": 40_000, "shapes": 2_000})
    assert few["noise_sd"]["shapes"] == pytest.approx(math.sqrt(0.968 * 0.032 / 2000), rel=0.01)
    assert few["reliability"]["shapes"] < 0.2 and few["reliability"]["digits"] > 0.9 and few["ceiling"] < 0.4
    many = analyse(table, ("digits", "shapes"), top=3, evaluated={"digits": 40_000, "shapes": 40_000})
    assert many["reliability"]["shapes"] > 0.9 and many["ceiling"] > 0.9
    noise, ceiling = noise_lines(few)
    assert (
        noise.startswith("evaluation noise: digits: +-0.") and "shapes: +-0.39 points per profile from 2,000" in noise
    )
    assert f"about {few['ceiling']:.2f}, so a correlation far below 1 is no evidence" in ceiling
    config = parse_config({"data": {"name": "digits"}})
    assert "- Agreement to expect from these measurements" in report(
        config, ("digits", "shapes"), TransferSettings(), few, table, {}
    )
    assert noise_lines(analyse(table, ("digits", "shapes"), top=3)) == []  # counts unknown: no claim


def test_too_few_finished_profiles_is_an_error():
    table = [entry("a", 0.5, 0.5, math.nan), entry("b", 0.5, 0.6, 0.6), entry("c", 0.4, 0.4, 0.4)]
    with pytest.raises(ConfigError, match="only 2 profiles"):
        analyse(table, ("digits", "shapes"), top=1)


def test_other_data_set_defaults_and_must_differ():
    assert TransferSettings().second("digits") == "shapes" and TransferSettings().second("shapes") == "digits"
    with pytest.raises(ConfigError, match="--other 'digits'"):
        TransferSettings(other="digits").second("digits")


def test_the_second_data_set_takes_its_own_options_not_the_firsts():
    from prunetune.search.config import DataConfig
    from prunetune.search.reproduce.transfer import data_label

    first = DataConfig(name="digits", seed=3, root="/data/x", options={"val_fraction": 0.3}, mode="memory")
    second = TransferSettings(other="shapes", other_set=("options.n_train=300",)).second_data(first)
    assert (second.name, second.seed, second.mode, second.root) == ("shapes", 3, "memory", None)
    assert second.options == {"n_train": 300} and data_label(second) == "shapes (n_train=300)"
    assert TransferSettings().second_data(first).options == {}  # digits' val_fraction is no option of shapes


@pytest.mark.parametrize(
    ("other_set", "expected"),
    [
        ("options.n_trian=300", "dataset 'shapes' has no option n_trian; its options are: n_test, n_train, n_val"),
        ("mode=fast", "--other-set mode='fast': Input should be 'auto', 'memory' or 'stream'"),
        ("options.n_train", "--other-set 'options.n_train' is not KEY=VALUE; example: --other-set options.n_train=300"),
    ],
)
def test_a_bad_other_set_is_one_line_naming_it(other_set, expected):
    from prunetune.search.config import DataConfig

    with pytest.raises(ConfigError) as raised:
        TransferSettings(other="shapes", other_set=(other_set,)).second_data(DataConfig(name="digits"))
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_criteria_summary_spread_is_over_seed_means_and_verdict_compares_random():
    table = {}
    for seed, (l1, rnd) in enumerate([(0.80, 0.78), (0.82, 0.80)]):
        for p in range(2):
            table[(p, "l1", seed)] = {"accuracy": l1 + 0.01 * p, "accuracy_pruned": 0.5, "rel/macs": 0.5}
            table[(p, "random", seed)] = {"accuracy": rnd + 0.01 * p, "accuracy_pruned": 0.3, "rel/macs": 0.5}
    summary, per_profile = summarise(table, ("l1", "random"), n_profiles=2, seeds=2)
    mean, spread = summary["l1"]["accuracy"]
    assert mean == pytest.approx(0.815) and spread == pytest.approx(math.sqrt(2) * 0.01)
    assert per_profile["random"][1]["accuracy"][0] == pytest.approx(0.80)
    assert "within" in verdict(summary, "accuracy") and "outside" in verdict(summary, "accuracy_pruned")


def test_variant_setup_overrides_criterion_seed_and_base():
    setup = TrialSetup(ModelSpec(), DataSpec("digits"), "a.pt", PruneSettings("l1"))
    other = TrialSetup(ModelSpec(), DataSpec("shapes"), "b.pt", PruneSettings("l1"))
    varied = variant_setup({"criterion": "random", "seed": 3, "base": "shapes"}, setup, {"shapes": other})
    assert (varied.data.name, varied.base_checkpoint, varied.prune.criterion, varied.seed) == (
        "shapes",
        "b.pt",
        "random",
        3,
    )
    assert varied.prune.seed == 3  # the random criterion's channels change with the seed too
    assert variant_setup({"profile": {}}, setup) == setup
