"""The model registry: our CIFAR models, torchvision by name, errors and weights loading."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn

from prunetune.budgets.errors import ConfigError
from prunetune.trainables import models
from prunetune.trainables.models import build_model, is_cifar_model, model_names, register_model

CIFAR_MODELS = ["resnet20", "resnet32", "resnet56", "vgg11", "vgg16"]


@pytest.mark.parametrize("width", [0.5, 1.0])
@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_model_maps_a_batch_to_logits(name: str, width: float) -> None:
    model = build_model(name, num_classes=7, width=width)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_resnet20_has_three_stages_of_three_blocks_and_027m_params() -> None:
    model = build_model("resnet20", num_classes=10)
    stages = [model.layer1, model.layer2, model.layer3]
    assert [sum(isinstance(m, models.BasicBlock) for m in s.modules()) for s in stages] == [3, 3, 3]
    assert [s[0].conv2.out_channels for s in stages] == [16, 32, 64]
    assert 0.26e6 < sum(p.numel() for p in model.parameters()) < 0.28e6


def test_width_scales_every_channel_count_but_keeps_at_least_one() -> None:
    half = build_model("resnet20", num_classes=10, width=0.5)
    assert [half.layer1[0].conv1.out_channels, half.fc.in_features] == [8, 32]
    tiny = build_model("vgg11", num_classes=10, width=0.001)
    assert {m.out_channels for m in tiny.modules() if isinstance(m, nn.Conv2d)} == {1}
    assert tiny(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("size", "pools"), [(32, 5), (16, 4), (8, 3)])
def test_vgg16_skips_max_pools_that_would_shrink_below_one_pixel(size: int, pools: int) -> None:
    model = build_model("vgg16", num_classes=10, input_size=size, width=0.25)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    assert isinstance(model.classifier, nn.Linear)
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_in_channels_sets_the_stem_of_our_models() -> None:
    model = build_model("resnet20", num_classes=10, in_channels=1, width=0.25)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_residual_sum_couples_the_stem_with_every_block_of_the_first_stage() -> None:
    model = build_model("resnet20", num_classes=10, width=0.25).eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    group = graph.get_pruning_group(model.stem[0], tp.prune_conv_out_channels, idxs=[0])
    coupled = {id(dep.target.module) for dep, _ in group}
    assert all(id(block.conv2) in coupled for block in model.layer1)
    assert id(model.layer2[0].shortcut[0]) in coupled  # layer2's projection reads those channels


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_model_builds_with_our_class_count(name: str) -> None:
    model = build_model(name, num_classes=10, input_size=64).eval()
    assert not is_cifar_model(name)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_tv_prefix_reaches_torchvision_where_our_name_shadows_it() -> None:
    with torch.device("meta"):  # torchvision's VGG has 133M parameters: skip initialising them
        ours, theirs = build_model("vgg11", num_classes=10), build_model("tv:vgg11", num_classes=10)
    assert isinstance(ours, models.CifarVGG) and isinstance(theirs, torchvision.models.VGG)
    assert is_cifar_model("vgg11") and not is_cifar_model("tv:vgg11")


@pytest.mark.parametrize("kwargs", [{"width": 0.5}, {"in_channels": 1}])
def test_torchvision_models_reject_width_and_in_channels(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("resnet18", num_classes=10, **kwargs)


def test_unknown_model_suggests_close_names_and_how_to_list_them() -> None:
    with pytest.raises(ConfigError, match="'resnet2'") as error:
        build_model("resnet2", num_classes=10)
    assert "resnet20" in str(error.value) and "`prunetune models`" in str(error.value)


def test_model_names_filter_like_timm_and_cover_torchvision() -> None:
    resnets = model_names("resnet*")
    assert {"resnet20", "resnet56", "resnet18", "resnet50"} <= set(resnets)
    assert resnets == sorted(resnets)
    assert {"vgg16", "tv:vgg16", "mobilenet_v2"} <= set(model_names())


def test_registered_factory_is_buildable_and_names_are_unique(monkeypatch) -> None:
    monkeypatch.setattr(models._MODELS, "_items", dict(models._MODELS._items))  # this test only

    @register_model("tiny_mlp")
    def tiny_mlp(*, num_classes: int, input_size: int, width: float, in_channels: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size**2, num_classes))

    model = build_model("tiny_mlp", num_classes=4, input_size=8)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert "tiny_mlp" in model_names("tiny*")
    with pytest.raises(ConfigError, match="'tiny_mlp' is already registered"):
        register_model("tiny_mlp")(lambda **kwargs: tiny_mlp(**kwargs))
    with pytest.raises(ConfigError, match="torchvision"):
        register_model("tv:tiny")


def test_weights_from_a_state_dict_file_round_trip(tmp_path) -> None:
    source = build_model("resnet20", num_classes=10, width=0.5)
    torch.save(source.state_dict(), tmp_path / "resnet20.pt")
    path = tmp_path / "resnet20.pt"
    loaded = build_model("resnet20", num_classes=10, width=0.5, weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_weights_for_another_class_count_load_all_but_the_head(tmp_path) -> None:
    source = build_model("resnet20", num_classes=100, width=0.5)
    torch.save({"model": source.state_dict()}, tmp_path / "checkpoint.pth")
    path = tmp_path / "checkpoint.pth"
    loaded = build_model("resnet20", num_classes=10, width=0.5, weights=str(path))
    assert torch.equal(loaded.stem[0].weight, source.stem[0].weight)
    assert loaded.fc.weight.shape == (10, 32)


def test_weights_of_another_architecture_are_a_config_error(tmp_path) -> None:
    torch.save(build_model("resnet20", num_classes=10).state_dict(), tmp_path / "r20.pt")
    with pytest.raises(ConfigError, match="r20.pt"):
        build_model("resnet32", num_classes=10, weights=str(tmp_path / "r20.pt"))
    with pytest.raises(ConfigError, match="does not exist"):
        build_model("resnet20", num_classes=10, weights=str(tmp_path / "missing.pt"))


def test_torchvision_weights_come_from_the_hub_cache_never_the_network(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="resnet18-f37072fd.pth") as error:
        build_model("resnet18", num_classes=10, weights="ResNet18_Weights.IMAGENET1K_V1")
    assert str(tmp_path / "hub" / "checkpoints") in str(error.value)

    imagenet = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(imagenet.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model = build_model("resnet18", num_classes=10, weights="ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(model.layer1[0].conv1.weight, imagenet.layer1[0].conv1.weight)
    assert model.fc.out_features == 10
