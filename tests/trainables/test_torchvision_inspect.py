"""Every torchvision classifier either has prunable groups or is refused in one line naming the
model, the layer or reason, and what to do (issue 15: no tracer traceback). The sweep runs each
model in-process at a small input size; it takes minutes, so it is an integration test. The fast
tests pin the cases it relies on: ShuffleNet's channel shuffles, a refused architecture, and an
unforeseen tracer failure."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re

import pytest
import torch
from torch import nn

from prunetune.search.cli import main
from prunetune.trainables import build_model, extract_cost_model, find_groups
from prunetune.trainables.groups import apply_profile
from prunetune.trainables.models import _torchvision_names
from prunetune.trainables.profiles import Profile
from prunetune.trainables.tracing import TracingError

# The smallest sizes these accept: inception's stem needs 75 px, ViT-H/14 a multiple of 14.
MIN_SIZE = {"inception_v3": 96, "vit_h_14": 56}


def _one_line_refusal(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("prunetune: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_shufflenet_prunes_everything_but_the_groups_its_channel_shuffles_interleave():
    model = build_model("shufflenet_v2_x0_5", num_classes=10, input_size=64)
    sample = torch.randn(2, 3, 64, 64)
    groups = find_groups(model, sample[:1])
    names = [g.name for g in groups]
    assert "conv1.0" in names and "stage2.0.branch2.0" in names
    # A block's output (branch2.5) is shuffled with the other branch: never a group of its own.
    assert not any(name.endswith("branch2.5") or name.endswith("branch1.2") for name in names)
    dense = sum(p.numel() for p in model.parameters())
    kept = apply_profile(model, Profile(dict.fromkeys(names, 0.5)), sample[:1])
    assert kept["stage2.0.branch2.0"] == 12
    assert model.eval()(sample).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) < dense
    # The exact cost model probes and checks itself by pruning: it holds across the shuffles.
    assert (
        extract_cost_model(build_model("shufflenet_v2_x0_5", num_classes=10, input_size=64), sample[:1]).dense()[
            "params"
        ]
        == dense
    )


def test_inspect_of_a_shufflenet_lists_its_groups(capsys):
    assert main(["inspect", "shufflenet_v2_x0_5", "--input-size", "64"]) == 0
    assert re.search(r"shufflenet_v2_x0_5 at 64px.* 18 prunable groups", capsys.readouterr().out)


def test_an_architecture_the_tracer_cannot_follow_is_refused_at_once_in_one_line(capsys):
    err = _one_line_refusal(capsys, "inspect", "swin_t", "--input-size", "64")
    assert "swin_t: torch-pruning cannot trace SwinTransformer: its shifted-window attention" in err
    assert "choose a convolutional model" in err


class _Unfollowable(nn.Module):
    """A conv whose output the tracer meets through an op it cannot size (a failing hook)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 2)
        self.stem.register_forward_hook(self._fail)

    @staticmethod
    def _fail(module, inputs, output):
        if output.requires_grad:  # only while torch-pruning traces
            raise ValueError("cannot size this output")

    def forward(self, x):
        return self.head(self.stem(x).mean((2, 3)))


def test_an_input_size_a_torchvision_model_cannot_take_is_one_line(capsys):
    err = _one_line_refusal(capsys, "inspect", "maxvit_t", "--input-size", "64")
    assert "torchvision's 'maxvit_t' cannot be built for input_size=64" in err


def test_an_unforeseen_tracer_failure_names_the_model_the_layer_and_the_fix():
    with pytest.raises(TracingError) as caught:
        find_groups(_Unfollowable(), torch.randn(1, 3, 8, 8))
    message = str(caught.value)
    assert "\n" not in message
    assert "torch-pruning cannot trace _Unfollowable at layer 'stem' (ValueError: cannot size this output)" in message
    assert "choose another model" in message


@pytest.fixture
def memory_given_back():
    """Hand a model's freed memory back to the system after each sweep step. Without it the
    process kept the high-water mark of the largest models (regnet_y_128gf and vit_h_14 hold
    about 2.5 GB of weights each): 9 GB in the test worker, which then shares the machine with
    Ray's trial workers and its memory monitor."""
    yield
    gc.collect()
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    if trim is not None:  # glibc; elsewhere the allocator keeps its own counsel
        trim(0)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(_torchvision_names()))
def test_every_torchvision_classifier_has_groups_or_one_line_saying_why(capsys, name, memory_given_back):
    size = MIN_SIZE.get(name, 64)
    code = main(["inspect", name, "--input-size", str(size)])
    out, err = capsys.readouterr()
    if code == 0:
        groups = int(re.search(r"(\d+) prunable groups", out).group(1))
        assert groups > 0, out
    else:
        assert code == 2 and err.strip().startswith("prunetune: error: ") and name in err, err
        assert "\n" not in err.strip() and "Traceback" not in err
