"""search/run/resources.py: a trial request no node can hold is refused, or awaited for at most
``resources.wait_s`` on an autoscaling cluster; clocks and clusters are fakes, nothing sleeps."""

from __future__ import annotations

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.run.resources import await_fit, fits, trial_request

SMALL = {"CPU": 8.0, "GPU": 0.0}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0}


class FakeCluster:
    """Nodes that appear after some polls; time advances only when the driver sleeps."""

    def __init__(self, nodes_per_poll: list[list[dict]]):
        self.polls = nodes_per_poll
        self.now = 0.0
        self.asked: list[dict] = []

    def nodes(self):
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _await(cluster: FakeCluster, request: dict, wait_s: float) -> None:
    await_fit(
        request,
        wait_s,
        "the cluster at head:6379",
        nodes=cluster.nodes,
        ask=cluster.asked.append,
        clock=lambda: cluster.now,
        sleep=cluster.sleep,
    )


def test_a_fractional_gpu_fits_a_node_with_one_gpu_and_zero_amounts_ask_nothing():
    assert trial_request(1, 0) == {"CPU": 1}
    assert fits(trial_request(1, 0.25), GPU_NODE) and not fits(trial_request(1, 0.25), SMALL)


def test_without_wait_s_a_request_no_node_holds_is_refused_at_once(capsys):
    cluster = FakeCluster([[SMALL, SMALL]])
    with pytest.raises(
        ConfigError,
        match=r"asks for resources 1 CPUs and 1 GPUs .* the cluster at head:6379 "
        r"has at most 8 CPUs and 0 GPUs on one node.*set resources.wait_s",
    ):
        _await(cluster, trial_request(1, 1), 0)
    assert cluster.asked == [] and cluster.now == 0


def test_an_autoscaled_node_that_arrives_in_time_is_used(capsys):
    cluster = FakeCluster([[SMALL], [SMALL], [SMALL, GPU_NODE]])
    _await(cluster, trial_request(1, 1), 600)
    assert cluster.asked == [{"CPU": 1, "GPU": 1}]  # the autoscaler was asked for the node
    assert 0 < cluster.now < 600
    assert "waiting up to 600 s (resources.wait_s)" in capsys.readouterr().err


def test_a_node_that_never_arrives_ends_the_wait_at_wait_s(capsys):
    cluster = FakeCluster([[SMALL]])
    with pytest.raises(ConfigError, match=r"after waiting 60 s, has 8 CPUs and 0 GPUs"):
        _await(cluster, trial_request(1, 1), 60)
    assert cluster.now == pytest.approx(60)
