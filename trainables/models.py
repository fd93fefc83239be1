"""The model registry: our CIFAR-style networks plus every torchvision classifier, by name.

Configs and the CLI name a model (``model: resnet20``); :func:`build_model` turns the name into
a freshly initialised ``nn.Module`` for one trial. Names resolve in this order:

1. ``tv:<name>`` always means torchvision's model (``tv:vgg16``).
2. A name registered with :func:`register_model`: our CIFAR-style ``resnet20/32/56`` and
   ``vgg11/16``, and any factory a user registers. ``vgg11`` and ``vgg16`` shadow torchvision's
   ImageNet VGGs of the same name, which stay reachable as ``tv:vgg11`` / ``tv:vgg16``.
3. Any torchvision classification model (``resnet18``, ``mobilenet_v2``, ...).

Our models are written for torch-pruning's dependency graph: shortcuts that change shape are a
1x1 conv + BatchNorm (option B of He et al. 2016), and residual sums are plain ``out + x`` so the
graph couples the channels of every branch feeding one sum.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry

TORCHVISION_PREFIX = "tv:"


class ModelFactory(Protocol):
    """Builds a randomly initialised model; :func:`build_model` calls it with keywords."""

    def __call__(self, *, num_classes: int, input_size: int, width: float, in_channels: int) -> nn.Module: ...


_MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under ``name``, like timm's ``@register_model``.

    A registered name wins over a torchvision model of the same name (``tv:`` still reaches
    that one). A name is registered once (the project's one duplicate rule, see
    :class:`~prunetune.budgets.registry.Registry`), so two plug-ins cannot silently swap models.
    """
    if not isinstance(name, str) or not name or name.startswith(TORCHVISION_PREFIX):
        raise ConfigError(
            f"model name {name!r} is invalid: it must be non-empty and not start with "
            f"{TORCHVISION_PREFIX!r}, which means torchvision"
        )
    return _MODELS.register(name)


@functools.cache
def _torchvision_names() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def model_names(pattern: str | None = None) -> list[str]:
    """Every buildable model name, sorted, optionally filtered by an fnmatch ``pattern``.

    Torchvision models shadowed by a registered name are listed with the ``tv:`` prefix.
    """
    names = set(_MODELS.names())
    for name in _torchvision_names():
        names.add(TORCHVISION_PREFIX + name if name in _MODELS else name)
    return sorted(fnmatch.filter(names, pattern) if pattern is not None else names)


def is_cifar_model(name: str) -> bool:
    """True when ``name`` builds one of our registered (CIFAR-style or user) models."""
    return name in _MODELS


def build_model(
    name: str,
    *,
    num_classes: int,
    input_size: int = 32,
    width: float = 1.0,
    in_channels: int = 3,
    weights: str | None = None,
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and optionally load ``weights``.

    ``width`` scales every channel count of a registered model; torchvision models take only
    width 1.0 and 3 input channels. ``weights`` is None (random init), a torchvision weights
    name such as ``"ResNet18_Weights.IMAGENET1K_V1"`` (read from the torch hub cache, never
    downloaded), or the path of a saved state dict. Where the weights were trained for another
    class count, everything but the classifier head is loaded.
    """
    _check_positive(num_classes=num_classes, input_size=input_size, width=width, in_channels=in_channels)
    if name in _MODELS:
        model = _MODELS.get(name)(num_classes=num_classes, input_size=input_size, width=width, in_channels=in_channels)
    else:
        model = _build_torchvision(_torchvision_name(name), num_classes, input_size, width, in_channels)
    if weights is not None:
        _load_weights(model, name, weights, num_classes)
    return model


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"{key}={value!r} is invalid: it must be positive")


def _torchvision_name(name: str) -> str:
    """The torchvision name ``name`` stands for, or a ConfigError suggesting close matches."""
    bare = name.removeprefix(TORCHVISION_PREFIX)
    if bare in _torchvision_names():
        return bare
    close = difflib.get_close_matches(name, model_names(), n=5)
    guess = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ConfigError(
        f"unknown model {name!r}{guess}; run `prunetune models` (or call "
        "prunetune.trainables.model_names()) to list every model name"
    )


# Torchvision's transformers bake the image size into their position embeddings.
_TORCHVISION_SIZE_KWARGS: Mapping[str, Callable[[int], dict[str, object]]] = {
    "vit_": lambda size: {"image_size": size},
    "maxvit_": lambda size: {"input_size": (size, size)},
}


def _build_torchvision(name: str, num_classes: int, input_size: int, width: float, in_channels: int) -> nn.Module:
    import torchvision

    if width != 1.0:
        raise ConfigError(f"width={width} is only supported by our own models; torchvision's {name!r} needs width=1.0")
    if in_channels != 3:
        raise ConfigError(f"in_channels={in_channels} is not supported by torchvision's {name!r}; use 3")
    kwargs: dict[str, object] = {}
    for prefix, size_kwargs in _TORCHVISION_SIZE_KWARGS.items():
        if name.startswith(prefix):
            kwargs.update(size_kwargs(input_size))
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (ValueError, AssertionError) as err:  # e.g. MaxViT: the size does not divide into windows
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"torchvision's {name!r} cannot be built for input_size={input_size}: {reason}; "
            "choose an input size it accepts (e.g. 224)"
        ) from None


# --- weights ---------------------------------------------------------------------------------

_WEIGHTS_NAME = re.compile(r"^\w+_Weights\.\w+$")


def _load_weights(model: nn.Module, name: str, weights: str, num_classes: int) -> None:
    if _WEIGHTS_NAME.match(weights) and not os.path.exists(weights):
        state = _torchvision_state_dict(name, weights)
    else:
        state = _file_state_dict(Path(weights))
    _load_state_dict(model, state, weights, num_classes)


def _torchvision_state_dict(name: str, weights: str) -> Mapping[str, torch.Tensor]:
    """Read torchvision weights from the torch hub cache: we have no network, so no download."""
    import torchvision

    if name in _MODELS:
        raise ConfigError(
            f"torchvision weights {weights!r} do not fit our model {name!r}; use tv:{name} or pass a state-dict path"
        )
    try:
        value = torchvision.models.get_weight(weights)
    except (ValueError, KeyError) as error:
        raise ConfigError(f"unknown torchvision weights {weights!r}: {error}") from error
    expected = torchvision.models.get_model_weights(_torchvision_name(name))
    if not isinstance(value, expected):
        raise ConfigError(f"weights {weights!r} belong to another model; {name!r} takes {expected.__name__}.<name>")
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(value.url)
    if not path.is_file():
        raise ConfigError(
            f"weights {weights!r} are not in the torch hub cache: put the file {value.url} at "
            f"{path} (prunetune never downloads), or pass a state-dict path as weights"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _file_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(
            f"weights file {str(path)!r} does not exist; pass the path of a saved "
            "state dict or a torchvision weights name"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Training scripts (torchvision's references among them) wrap the state dict in a checkpoint.
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ConfigError(f"weights file {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _load_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, num_classes: int) -> None:
    """Load ``state`` strictly, except head tensors that differ only in the class count."""
    own = model.state_dict()
    mismatched = {key for key, value in state.items() if key in own and own[key].shape != value.shape}
    heads = {key for key in mismatched if _is_class_dim_only(own[key], state[key], num_classes)}
    if mismatched - heads:
        raise ConfigError(
            f"weights {source!r} do not fit the model: shapes differ for {_preview(sorted(mismatched - heads))}"
        )
    result = model.load_state_dict({k: v for k, v in state.items() if k not in heads}, strict=False)
    missing = [key for key in result.missing_keys if key not in heads]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f"weights {source!r} do not fit the model: missing "
            f"{_preview(missing)}; unexpected {_preview(result.unexpected_keys)}"
        )


def _is_class_dim_only(own: torch.Tensor, theirs: torch.Tensor, num_classes: int) -> bool:
    return own.dim() == theirs.dim() >= 1 and own.shape[0] == num_classes and own.shape[1:] == theirs.shape[1:]


def _preview(keys: Sequence[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")


# --- CIFAR-style models ----------------------------------------------------------------------


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _init_weights(model: nn.Module) -> None:
    """Kaiming init for convs, unit BatchNorm, a small normal for the classifier."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a residual sum; a 1x1 conv + BN shortcut where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016's CIFAR ResNet: a 3x3 stem, then stages of 16/32/64 channels x width."""

    def __init__(self, blocks_per_stage: int, num_classes: int, width: float, in_channels: int) -> None:
        super().__init__()
        widths = [_scaled(channels, width) for channels in (16, 32, 64)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.layer1 = _stage(widths[0], widths[0], blocks_per_stage, stride=1)
        self.layer2 = _stage(widths[0], widths[1], blocks_per_stage, stride=2)
        self.layer3 = _stage(widths[1], widths[2], blocks_per_stage, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    first = BasicBlock(in_channels, out_channels, stride)
    return nn.Sequential(first, *(BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)))


# VGG configurations A (vgg11) and D (vgg16): channel counts, "M" for a 2x2 max-pool.
_VGG_CONFIGS: Mapping[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class CifarVGG(nn.Module):
    """VGG with BatchNorm after every conv and one Linear ``classifier`` after global pooling.

    Max-pools that would shrink the feature map below 1x1 (a small ``input_size``) are left out.
    """

    def __init__(
        self,
        config: Sequence[int | str],
        num_classes: int,
        input_size: int,
        width: float,
        in_channels: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for entry in config:
            if entry == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = _scaled(int(entry), width)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _register_resnet(name: str, depth: int) -> None:
    def factory(*, num_classes: int, input_size: int, width: float, in_channels: int) -> nn.Module:
        return CifarResNet((depth - 2) // 6, num_classes, width, in_channels)

    factory.__doc__ = f"CIFAR ResNet-{depth}: 3 stages of {(depth - 2) // 6} basic blocks."
    register_model(name)(factory)


def _register_vgg(name: str) -> None:
    def factory(*, num_classes: int, input_size: int, width: float, in_channels: int) -> nn.Module:
        return CifarVGG(_VGG_CONFIGS[name], num_classes, input_size, width, in_channels)

    factory.__doc__ = f"CIFAR {name.upper()} with BatchNorm and a single Linear classifier."
    register_model(name)(factory)


for _depth in (20, 32, 56):
    _register_resnet(f"resnet{_depth}", _depth)
for _name in _VGG_CONFIGS:
    _register_vgg(_name)
