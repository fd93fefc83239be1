"""The profile library format (search/library.py): round trip, version field, group mismatch."""

from __future__ import annotations

import json

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.artifacts.library import FORMAT, VERSION, LibraryProfile, load_profile
from prunetune.trainables import ProfileError

GROUPS = {"stem.0": 8, "layer1.0.conv1": 8, "layer2.0.conv1": 16}


def library_profile(**changes) -> LibraryProfile:
    values = dict(
        name="demo-abc123",
        ratios={"stem.0": 0.5, "layer1.0.conv1": 0.75, "layer2.0.conv1": 1.0},
        groups=GROUPS,
        architecture={"name": "resnet20", "width": 0.5, "input_size": 16},
        criterion="l1",
        dataset={"name": "digits", "seed": 0, "options": {}},
        budgets=("macs<=50%",),
        accuracy=0.91,
        costs={"macs": 1.2e6, "params": 3.4e4},
        relative={"macs": 0.48},
        search="demo",
        trial_id="abc123",
    )
    return LibraryProfile(**{**values, **changes})


def test_round_trip_keeps_every_field(tmp_path):
    original = library_profile()
    path = original.save(tmp_path / "p.json")
    loaded = load_profile(path)
    assert loaded == original
    assert loaded.profile.ratio("stem.0") == 0.5 and loaded.source == "resnet20 on digits"


def test_file_names_format_version_and_provenance(tmp_path):
    blob = json.loads(library_profile().save(tmp_path / "p.json").read_text())
    assert blob["format"] == FORMAT and blob["version"] == VERSION == 1
    for key in (
        "architecture",
        "groups",
        "criterion",
        "dataset",
        "budgets",
        "accuracy",
        "costs",
        "search",
        "trial_id",
        "prunetune_version",
    ):
        assert key in blob, key
    assert blob["prunetune_version"] not in ("", None)


def test_newer_version_is_a_clear_error(tmp_path):
    blob = library_profile().to_dict() | {"version": VERSION + 1}
    (tmp_path / "p.json").write_text(json.dumps(blob))
    with pytest.raises(ConfigError, match=rf"version {VERSION + 1}, newer .*upgrade prunetune"):
        load_profile(tmp_path / "p.json")


def test_not_a_profile_and_missing_fields_are_clear_errors(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"stem.0": 0.5}))
    with pytest.raises(ConfigError, match="is not a prunetune profile"):
        load_profile(tmp_path / "other.json")
    blob = library_profile().to_dict()
    del blob["groups"]
    (tmp_path / "partial.json").write_text(json.dumps(blob))
    with pytest.raises(ConfigError, match="lacks required field.*groups"):
        load_profile(tmp_path / "partial.json")
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "missing.json")


def test_group_mismatch_names_missing_and_extra_groups():
    profile = library_profile()
    profile.check_fits(list(GROUPS))  # same groups: fits
    target = ["stem.0", "layer1.0.conv1", "layer3.0.conv1"]
    with pytest.raises(ProfileError) as err:
        profile.check_fits(target, "vgg11 on shapes")
    message = str(err.value)
    assert "\n" not in message and "vgg11 on shapes" in message
    assert "missing group(s) layer3.0.conv1" in message and "extra group(s) layer2.0.conv1" in message


def test_ratio_out_of_range_is_rejected(tmp_path):
    blob = library_profile().to_dict()
    blob["ratios"]["stem.0"] = 1.5
    (tmp_path / "p.json").write_text(json.dumps(blob))
    with pytest.raises(ProfileError, match="stem.0"):
        load_profile(tmp_path / "p.json")
