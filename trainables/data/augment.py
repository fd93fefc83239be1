"""Standard augmentation and evaluation transforms, applied to whole batches on the trial's device.

They follow torchvision's classification references: small images (CIFAR, Fashion-MNIST) train on
a random crop of the image padded by an eighth of its size and a horizontal flip; photo folders
train on a random resized crop (area ``scale``, aspect ``ratio``) and a flip, and evaluate on
the centre crop of the image resized to 8/7 of the input size (256 for 224). Images arrive as
uint8 (N, 3, S, S) stored at :func:`stored_size`; the random draws come from a CPU generator
seeded per batch, so a batch is the same on every device and in a retried trial.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.train import Settings

PHOTO_RESIZE = 8 / 7  # photos are stored (and evaluated from) at 8/7 of the input size


class Augment(Settings):
    """How training batches are augmented (``data.augment``); evaluation never is.

    ``crop``: ``pad`` (random crop of the image zero-padded by ``padding`` pixels, default an
    eighth of the input size), ``resized`` (torchvision's RandomResizedCrop) or ``none``;
    ``flip``: a horizontal flip with probability 1/2.
    """

    label: ClassVar[str] = "data.augment"
    crop: Literal["pad", "resized", "none"] = "pad"
    flip: bool = True
    padding: int | None = Field(None, ge=0)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @model_validator(mode="after")
    def _ranges(self) -> Augment:
        for key, (low, high) in (("scale", self.scale), ("ratio", self.ratio)):
            if not 0 < low <= high or (key == "scale" and high > 1):
                raise ValueError(f"{key} must be (low, high) with 0 < low <= high{' <= 1' if key == 'scale' else ''}")
        return self

    @property
    def active(self) -> bool:
        return self.crop != "none" or self.flip

    def describe(self) -> str:
        """One phrase for logs and summaries, e.g. ``random crop (pad 4) + flip``."""
        parts = {"pad": f"random crop (pad {self.padding if self.padding is not None else '1/8'})"}
        parts["resized"] = f"random resized crop (scale {self.scale[0]:g}-{self.scale[1]:g})"
        words = [parts[self.crop]] if self.crop != "none" else []
        words += ["flip"] if self.flip else []
        return " + ".join(words) or "none"


PRESETS: dict[str, Augment] = {
    "small": Augment(crop="pad", flip=True),
    "digits": Augment(crop="pad", flip=False),
    "photo": Augment(crop="resized", flip=True),
}
NONE = Augment(crop="none", flip=False)


def resolve(value: str | dict[str, Any] | Augment | None, kind: str) -> Augment:
    """``data.augment`` as settings: ``standard`` (the data set's kind's preset), ``none``,
    or a mapping of :class:`Augment` fields (missing ones from the preset)."""
    if isinstance(value, Augment):
        return value
    if value is None or value == "standard":
        return PRESETS[kind]
    if value == "none":
        return NONE
    if isinstance(value, dict):
        return Augment(**{**PRESETS[kind].model_dump(), **value})
    raise ConfigError(
        f"data.augment={value!r} is invalid: use standard, none or a mapping such as {{crop: pad, flip: true}}"
    )


def stored_size(kind: str, input_size: int) -> int:
    """The side length images are decoded and kept at: the input size, or 8/7 of it for photos."""
    return round(input_size * PHOTO_RESIZE) if kind == "photo" else input_size


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` part of (N, C, S, S) images (torchvision's CenterCrop)."""
    side = x.shape[-1]
    if side == size:
        return x
    top = int(round((side - size) / 2.0))
    return x[..., top : top + size, top : top + size]


def evaluation(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float [0, 1] images of uint8 ``images``: the centre crop, no randomness."""
    return centre_crop(images, size).float().div_(255.0)


def training(images: torch.Tensor, size: int, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Float [0, 1] ``size`` x ``size`` training images of uint8 (N, 3, S, S) ``images`` (on any
    device), augmented by ``augment`` with draws from the CPU ``generator``. Crops and flips
    move uint8 pixels (a quarter of the bytes of floats); only a resized crop interpolates."""
    if augment.crop == "resized":
        x = _resized_crop(images.float().div_(255.0), size, augment.scale, augment.ratio, generator)
    else:
        x = centre_crop(images, size)
        if augment.crop == "pad":
            x = _pad_crop(x, size // 8 if augment.padding is None else augment.padding, generator)
    if augment.flip:
        flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
        # a new tensor (the batch may be a view of shared, read-only pages), and no boolean
        # indexing: on a GPU that would wait for the device to count the mask
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x if x.is_floating_point() else x.float().div_(255.0)


def _pad_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``S`` x ``S`` window of each image zero-padded by ``padding`` on every side."""
    if padding == 0:
        return x
    n, _, side, _ = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    span = torch.arange(side, device=x.device)
    rows = (offsets[0][:, None] + span)[:, :, None]  # (n, S, 1)
    cols = (offsets[1][:, None] + span)[:, None, :]  # (n, 1, S)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # (n, S, S, C) -> NCHW


def _resized_crop(
    x: torch.Tensor, size: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """torchvision's RandomResizedCrop for a batch: per image, up to 10 draws of an area and
    aspect ratio, the first that fits taken (else the whole image); crops resized bilinearly."""
    from torchvision.ops import roi_align

    n, _, height, width = x.shape
    tries = 10
    area = height * width * torch.empty(n, tries).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n, tries).uniform_(
        float(torch.log(torch.tensor(ratio[0]))), float(torch.log(torch.tensor(ratio[1]))), generator=generator
    )
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1)
    chosen = torch.arange(n)
    w, h = w[chosen, first], h[chosen, first]
    none_fit = ~fits.any(dim=1)
    w[none_fit], h[none_fit] = float(width), float(height)
    top = (torch.rand(n, generator=generator) * (height - h + 1)).floor()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).floor()
    boxes = torch.stack([chosen.float(), left, top, left + w, top + h], dim=1).to(x.device, x.dtype)
    return roi_align(x, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel (one fused multiply-add)."""
    scale = (1.0 / std)[:, None, None]
    return torch.addcmul(-mean[:, None, None] * scale, x, scale)
