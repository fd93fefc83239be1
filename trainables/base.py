"""The dense base model: what it is (specs), training it once, and loading it in workers.

A search prunes copies of one trained dense model. :func:`ensure_base_checkpoint` trains it on
first use and saves it under a name derived from everything that shapes it, so later searches
with the same model, data and recipe reuse it. Checkpoints are plain tensor dicts, loaded with
``torch.load(weights_only=True)``: a user's own checkpoint is never unpickled as code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.trainables.data import DataSplits, load_dataset
from prunetune.trainables.data.feed import DataLoad, TrialData, open_trial_data
from prunetune.trainables.models import build_model
from prunetune.trainables.train import Recipe, evaluate, to_device, train_base

# Bumped when a data set's train/val/test split or its decoding changes (3: uint8 at the stored
# size, statistics from a sample, photos centre-cropped, augmentation while training the base).
SPLITS_VERSION = 3


@dataclass(frozen=True)
class ModelSpec:
    """Which architecture to build: a registry name, width multiplier and input size."""

    name: str = "resnet20"
    width: float = 1.0
    input_size: int = 32
    weights: str | None = None


@dataclass(frozen=True)
class DataSpec:
    """Which data set: a registry name, its root on disk (if any), split seed and options, and
    how a trial reads it (``reading``: mode, augmentation, node cache folder)."""

    name: str = "digits"
    root: str | None = None
    seed: int = 0
    options: tuple[tuple[str, object], ...] = field(default_factory=tuple)
    reading: DataLoad = DataLoad()

    def load(self, input_size: int) -> DataSplits:
        """The whole set decoded into normalised tensors (small sets, tools and exports)."""
        return load_dataset(
            self.name, input_size=input_size, root=self.root, seed=self.seed, options=dict(self.options)
        )

    def open(self, input_size: int, device: str = "cpu", val_images: int | None = None) -> TrialData:
        """The set as a trial reads it on ``device`` (once per process)."""
        root = str(Path(self.root).expanduser().resolve()) if self.root is not None else None
        return open_trial_data(self.name, input_size, root, self.seed, self.options, self.reading, device, val_images)

    def identity(self) -> dict:
        """What of the data shapes a trained model: not how it is read (mode, cache folder)."""
        augment = self.reading.augment.model_dump() if self.reading.augment else "standard"
        return {"name": self.name, "root": self.root, "seed": self.seed, "options": self.options, "augment": augment}


def build(spec: ModelSpec, num_classes: int) -> nn.Module:
    return build_model(
        spec.name, num_classes=num_classes, input_size=spec.input_size, width=spec.width, weights=spec.weights
    )


def base_key(model: ModelSpec, data: DataSpec, recipe: Recipe, seed: int) -> str:
    """A short stable name for the base checkpoint trained from these settings."""
    # SPLITS_VERSION: a base trained before the test split existed saw today's test images.
    blob = json.dumps(
        [asdict(model), data.identity(), recipe.as_recipe().model_dump(), seed, SPLITS_VERSION],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
    return f"{model.name}-w{model.width:g}-{data.name}-{model.input_size}px-{digest}"


def save_checkpoint(model: nn.Module, path: Path, meta: dict) -> None:
    """Write ``{"state_dict", "meta"}`` atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: ours (``{"state_dict": ...}``) or a plain state dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"base checkpoint {str(path)!r} does not exist; fix `base.checkpoint` or remove it to train one"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: pickle.UnpicklingError, RuntimeError (zip), EOFError, ...
        raise _unreadable(path, err) from None
    state = blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors; "
            "give a checkpoint prunetune or torch.save(model.state_dict()) wrote"
        )
    return state


def _unreadable(path: Path, err: BaseException) -> ConfigError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError(
        f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {reason[:200]}); it is damaged "
        "or not a torch checkpoint: give another, or remove base.checkpoint to train one"
    )


def ensure_base_checkpoint(
    model: ModelSpec, data: DataSpec, recipe: Recipe, directory: Path, *, seed: int = 0, show_progress: bool = True
) -> Path:
    """Path of a trained dense checkpoint for these settings, training it if missing."""
    path = Path(directory) / f"{base_key(model, data, recipe, seed)}.pt"
    if path.exists():
        return path
    device = "cuda" if torch.cuda.is_available() else "cpu"
    feed = data.open(model.input_size, device)
    torch.manual_seed(seed)
    net = to_device(build(model, feed.num_classes), torch.device(device))
    train_base(net, feed.train_batches(recipe.batch_size, seed), recipe, show_progress=show_progress)
    accuracy, loss = evaluate(net, feed.eval_batches("val"))  # the whole validation split
    meta = {"model": asdict(model), "data": data.identity(), R.ACCURACY: accuracy, R.LOSS: loss}  # as a trial reports
    net = net.cpu().to(memory_format=torch.contiguous_format)
    save_checkpoint(net, path, meta)
    return path


def load_base(model: ModelSpec, num_classes: int, checkpoint: str | Path) -> nn.Module:
    """A fresh dense model with the checkpoint's weights (a new object on every call)."""
    if not Path(checkpoint).is_file():
        read_state_dict(checkpoint)  # raises the clear "does not exist" error
    net = build(model, num_classes)
    try:
        net.load_state_dict(_cached_state(str(checkpoint), os.path.getmtime(checkpoint)))
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise ConfigError(
            f"checkpoint {checkpoint} does not fit model {model.name!r} (width {model.width:g}): {first[0].strip()}"
        ) from None
    return net


@functools.lru_cache(maxsize=4)
def _cached_state(path: str, mtime: float) -> dict[str, torch.Tensor]:
    # One read per worker process: reused actors keep this cache between trials.
    return read_state_dict(path)
