"""The input preprocessing an exported model expects, recorded with every export.

A search trains and measures its models on images that the data set's evaluation transform
prepared (``prunetune.trainables.data``): scaled to [0, 1] (uint8 divided by 255; float images
must already be in [0, 1]), resized to the model's input size (bilinear, antialiased) or, for
photo folders, resized by the shorter side to 8/7 of it and centre-cropped, gray replicated to
three channels, and normalised with the training split's per-channel mean and std. Training
augmentation is never part of it. An exported model fed raw pixels is wrong almost every time, so
each export records these steps (:class:`Preprocessing`, in ``export.json``, the TorchScript and
``.pt2`` extra file ``preprocessing.json``, the ONNX metadata key ``preprocessing``, the MLflow
model's metadata) and :meth:`Preprocessing.apply` performs them (docs/export.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

KEY = "preprocessing"  # the name under which every artifact records it
PIXELS = "pixels to [0, 1]: uint8 images divided by 255; float images must already be in [0, 1]"
SQUARE = "resize to input_size x input_size (bilinear, antialias, align_corners=False)"
CROP = "resize the shorter side to resize_to (bilinear, antialias), then keep the centre input_size x input_size"
STEPS = (PIXELS, SQUARE, "gray (1 channel) replicated to 3 channels", "per channel: (x - mean) / std")


@dataclass(frozen=True)
class Preprocessing:
    """From raw images to the model's input: the steps of :data:`STEPS` with these values."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3
    resize: str = "bilinear-antialias"
    layout: str = "NCHW"
    resize_to: int = 0  # photos: the shorter side's length before the centre crop (0: square resize)

    @classmethod
    def of_splits(cls, splits, input_size: int) -> Preprocessing:
        """What the search's data set (``DataSplits`` or a trial's ``TrialData``) went through
        at ``input_size``: the evaluation transform of its kind, its normalisation."""
        from prunetune.trainables.data import dataset_kind
        from prunetune.trainables.data.augment import stored_size

        kind = dataset_kind(splits.name)
        return cls(
            input_size,
            tuple(float(v) for v in splits.mean),
            tuple(float(v) for v in splits.std),
            resize_to=stored_size(kind, input_size) if kind == "photo" else 0,
        )

    @property
    def steps(self) -> tuple[str, ...]:
        return (PIXELS, CROP if self.resize_to else SQUARE, *STEPS[2:])

    def to_json(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std), "steps": list(self.steps)}

    @classmethod
    def from_json(cls, blob: dict | str) -> Preprocessing:
        """Read back what :meth:`to_json` wrote (a dict or its JSON text)."""
        blob = json.loads(blob) if isinstance(blob, str) else blob
        return cls(
            int(blob["input_size"]),
            tuple(blob["mean"]),
            tuple(blob["std"]),
            int(blob.get("channels", 3)),
            blob.get("resize", "bilinear-antialias"),
            blob.get("layout", "NCHW"),
            int(blob.get("resize_to", 0)),
        )

    def apply(self, images) -> torch.Tensor:
        """Raw images (a tensor or array: (N, C, H, W) or (N, H, W, C) with C 1 or 3, or
        (N, H, W) gray; uint8 or float in [0, 1]; any size) as the float32 batch the exported
        model expects. A shape that reads both ways, e.g. (N, 3, 8, 3), is taken as NCHW."""
        x = torch.as_tensor(images)
        x = x.unsqueeze(1) if x.dim() == 3 else x
        if x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2)  # channels last, as image libraries give them
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"images of shape {tuple(x.shape)}: expected (N, C, H, W) or (N, H, W, C) with C 1 or 3, or (N, H, W)"
            )
        if x.dtype != torch.uint8 and x.numel() and float(x.max()) > 1.0 + 1e-6:
            raise ValueError(f"float images must hold pixels in [0, 1] (these reach {float(x.max()):g}); divide by 255")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.resize_to:
            x = _shorter_side_then_centre(x, self.resize_to, self.input_size)
        elif x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False
            )
        x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return ((x - mean) / std).contiguous()


def _shorter_side_then_centre(x: torch.Tensor, shorter: int, size: int) -> torch.Tensor:
    """torchvision's evaluation of photos: Resize(shorter) keeps the aspect ratio, then CenterCrop."""
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(TF.resize(x, shorter, antialias=True), [size, size])
