"""Training lengths in epochs: resolved to steps once, when a search is prepared and its
training split's size is known; the manifest keeps what the user wrote, so a resume compares
equal, and the console says the steps the epochs became."""

from __future__ import annotations

import json

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import config_differences, from_manifest, prepare
from prunetune.search.setup import specs
from prunetune.search.store.manifest import MANIFEST, check_unchanged, read_manifest, write_manifest
from prunetune.search.tracking.tracker import search_params
from prunetune.trainables.base import base_key

TRAIN_IMAGES = 1077  # the tiny config's digits training split


def _in_epochs(tiny_config: dict) -> dict:
    base = {k: v for k, v in tiny_config["base"].items() if k != "steps"}
    return {
        **tiny_config,
        "base": {**base, "epochs": 2},  # batches of 64: 16 per epoch
        "finetune": {"epochs": 0.5, "lr": 0.01, "batch_size": 32},  # 33 per epoch
        "confirm": {"top": 1, "epochs": 1},  # the fine-tune's batches
    }


def test_epochs_become_steps_at_prepare_and_a_resume_sees_no_difference(tiny_config, capsys):
    written = _in_epochs(tiny_config)
    prepared = prepare(parse_config(written))
    out = capsys.readouterr().out
    config = prepared.config
    assert prepared.train_images == TRAIN_IMAGES
    assert (config.base.steps, config.finetune.steps, config.confirm.steps) == (32, 17, 33)
    assert prepared.setup.finetune.steps == 17  # what every trial fine-tunes for
    lengths = [line for line in out.splitlines() if "epoch" in line]
    assert lengths == [
        "base: 2 epochs = 32 steps of 64 images; finetune: 0.5 epochs = 17 steps of 32 images; "
        "confirm: 1 epoch = 33 steps of 32 images"
    ]
    params = search_params(config)
    assert (params["finetune.steps"], params["finetune.epochs"], params["base.epochs"]) == ("17", "0.5", "2")

    path = write_manifest(prepared)
    blob = json.loads(path.read_text())
    assert blob["config"]["finetune"]["epochs"] == 0.5 and blob["config"]["finetune"]["steps"] is None
    manifest = read_manifest(path.parent)
    check_unchanged(manifest)
    assert manifest.config == config  # resolved again from the recorded training split
    assert config_differences(manifest.config, parse_config(written)) == []
    assert from_manifest(manifest).config.finetune.steps == 17
    # Resuming with the equivalent steps instead is a different config: the user wrote another one.
    as_steps = {**written, "finetune": {"steps": 17, "lr": 0.01, "batch_size": 32}}
    assert config_differences(manifest.config, parse_config(as_steps)) == [
        "finetune.epochs: 0.5 -> None",
        "finetune.steps: None -> 17",
    ]


def test_a_base_in_epochs_is_the_base_of_the_steps_they_resolve_to(tiny_config):
    in_epochs = parse_config(_in_epochs(tiny_config)).resolved(TRAIN_IMAGES)
    base = {k: v for k, v in tiny_config["base"].items() if k != "steps"}
    in_steps = parse_config({**tiny_config, "base": {**base, "steps": 32}})
    assert base_key(*specs(in_epochs), 0) == base_key(*specs(in_steps), 0)
    assert base_key(*specs(in_epochs.resolved(2 * TRAIN_IMAGES)), 0) != base_key(*specs(in_steps), 0)


def test_a_manifest_in_epochs_without_the_split_size_is_damaged(tiny_config, tmp_path):
    from tests.search.conftest import write_manifest as hand_made

    hand_made(tmp_path / "m", parse_config({**_in_epochs(tiny_config), "name": "m"}))
    with pytest.raises(ConfigError, match=r"damaged \(missing key 'train_images'\)"):
        read_manifest(tmp_path / "m")
    assert (tmp_path / "m" / MANIFEST).is_file()


def test_asha_refuses_a_fine_tune_in_epochs_shorter_than_its_grace(tiny_config):
    config = {**_in_epochs(tiny_config), "scheduler": {"name": "asha", "grace_steps": 20}, "confirm": {}}
    with pytest.raises(ConfigError, match=r"grace_steps=20 is not below finetune.steps=17 \(finetune.epochs=0.5\)"):
        prepare(parse_config(config), show_progress=False)
