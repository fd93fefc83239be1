"""The manifest records a digest of every config key the search started with: an edited one is
named on resume, in one line, before anything runs."""

from __future__ import annotations

import json

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.store.manifest import DIGESTS, MANIFEST, check_unchanged, config_digests, read_manifest


def _manifest(tmp_path, edit=None):
    config = parse_config({"name": "m", "storage_path": str(tmp_path), "tracking": {"enabled": False}})
    blob = {
        "version": 1,
        "config": config.model_dump(mode="json"),
        "base_checkpoint": "base.pt",
        "num_classes": 10,
        "dense_costs": {"macs": 100.0},
        "groups": {"a": 8},
    }
    blob[DIGESTS] = config_digests(blob["config"])
    if edit:
        edit(blob["config"])
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / MANIFEST).write_text(json.dumps(blob))
    return read_manifest(directory)


def test_an_unchanged_manifest_resumes(tmp_path):
    manifest = _manifest(tmp_path)
    assert manifest.edited == ()
    check_unchanged(manifest)


def test_an_edited_key_is_named_in_one_line(tmp_path):
    def edit(config):
        config["finetune"]["steps"] = config["finetune"]["steps"] + 33

    manifest = _manifest(tmp_path, edit)
    assert manifest.edited == ("finetune.steps",)
    with pytest.raises(ConfigError) as err:
        check_unchanged(manifest)
    assert "changed: finetune.steps" in str(err.value) and "\n" not in str(err.value)
    assert str(tmp_path / "m" / MANIFEST) in str(err.value)


def test_a_manifest_from_before_the_digests_is_not_refused(tmp_path):
    config = parse_config({"name": "old", "storage_path": str(tmp_path), "tracking": {"enabled": False}})
    directory = tmp_path / "old"
    directory.mkdir()
    blob = {"version": 1, "config": config.model_dump(mode="json"), "base_checkpoint": "b.pt", "num_classes": 10}
    (directory / MANIFEST).write_text(json.dumps({**blob, "dense_costs": {}, "groups": {}}))
    assert read_manifest(directory).edited == ()
