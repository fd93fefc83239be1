from __future__ import annotations

import pytest

from prunetune.trainables import Profile, ProfileError, kept_channels


@pytest.mark.parametrize(
    ("channels", "ratio", "round_to", "expected"),
    [(16, 0.5, 1, 8), (16, 1.0, 1, 16), (64, 0.3, 8, 16), (64, 0.05, 8, 8), (10, 0.26, 4, 4), (6, 1.0, 8, 6)],
)
def test_kept_channels_rounds_to_multiples_and_clamps(channels, ratio, round_to, expected):
    assert kept_channels(channels, ratio, round_to=round_to) == expected


def test_min_channels_is_a_floor():
    assert kept_channels(64, 0.1, min_channels=16) == 16


def test_a_ratio_that_empties_a_group_is_an_error_naming_the_smallest_ratio():
    with pytest.raises(ProfileError, match="smallest ratio for this group is 0.0625"):
        kept_channels(16, 0.01)


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5, float("nan")])
def test_profile_rejects_ratios_outside_unit_interval(ratio):
    with pytest.raises(ProfileError, match="group 'conv1'"):
        Profile({"conv1": ratio})


def test_profile_json_round_trip_and_defaults():
    profile = Profile({"b": 0.5, "a": 0.25})
    again = Profile.from_json(profile.to_json())
    assert again == profile
    assert again.ratio("missing") == 1.0


def test_unknown_group_error_lists_valid_groups():
    with pytest.raises(ProfileError, match=r"unknown group\(s\) nope.*stem"):
        Profile({"nope": 0.5}).check_groups(["stem", "layer1"])
