"""A pruned model on disk without pickled code: weights, profile and architecture as data.

:func:`save_pruned` writes a directory a deployment can rebuild from with nothing but
``trainables`` installed; :func:`load_pruned` rebuilds it: the base architecture from the
registry, the profile applied structurally (channels physically removed), then the weights,
read with ``torch.load(weights_only=True)`` so no Python object is ever unpickled.

The directory holds ``model.pt`` (the pruned state dict), ``profile.json`` (keep ratios by group)
and ``export.json`` (:class:`PrunedArchitecture` under ``"architecture"`` plus whatever the
exporter records about where the model came from).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from prunetune.budgets.errors import PrunetuneError
from prunetune.trainables.groups import PruneSettings, apply_profile
from prunetune.trainables.models import build_model
from prunetune.trainables.profiles import Profile
from prunetune.trainables.trial import PROFILE_FILE, WEIGHTS_FILE

EXPORT_FILE = "export.json"
FORMAT = "prunetune.pruned_state_dict"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PrunedArchitecture:
    """What rebuilds the pruned structure: the registry model, its input and the channel rule.

    ``criterion`` is recorded for the reader; the rebuild does not need it, because the saved
    weights replace whichever channels a criterion would pick.
    """

    model: str
    width: float
    input_size: int
    num_classes: int
    round_to: int = 1
    min_channels: int = 1
    criterion: str = "l1"
    in_channels: int = 3

    def example_input(self, batch: int = 1) -> torch.Tensor:
        shape = (batch, self.in_channels, self.input_size, self.input_size)
        return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def save_pruned(
    directory: str | Path,
    model: nn.Module,
    profile: Profile,
    architecture: PrunedArchitecture,
    info: dict | None = None,
) -> Path:
    """Write ``model`` (already pruned to ``profile``) into ``directory``; ``info`` (plain JSON:
    accuracy, costs, source trial) is stored beside the architecture in ``export.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    (directory / PROFILE_FILE).write_text(profile.to_json())
    blob = {"format": FORMAT, "version": FORMAT_VERSION, "architecture": asdict(architecture), **(info or {})}
    (directory / EXPORT_FILE).write_text(json.dumps(blob, indent=2))
    return directory


def read_export_info(directory: str | Path) -> dict:
    """The parsed ``export.json`` of a saved pruned model (architecture and provenance)."""
    path = Path(directory) / EXPORT_FILE
    if not path.is_file():
        raise PrunetuneError(
            f"{Path(directory)} is not an exported pruned model (no {EXPORT_FILE}); pass the folder "
            "`prunetune export --format state_dict` wrote"
        )
    blob = json.loads(path.read_text())
    if blob.get("format") != FORMAT or blob.get("version", 0) > FORMAT_VERSION:
        raise PrunetuneError(
            f"{path} has format {blob.get('format')!r} version {blob.get('version')!r}; this prunetune "
            f"reads {FORMAT!r} up to version {FORMAT_VERSION}: upgrade prunetune"
        )
    return blob


def load_pruned(directory: str | Path) -> nn.Module:
    """The exact pruned model saved by :func:`save_pruned`, on the CPU, in eval mode."""
    directory = Path(directory)
    arch = PrunedArchitecture(**read_export_info(directory)["architecture"])
    profile = Profile.from_json((directory / PROFILE_FILE).read_text())
    model = build_model(
        arch.model,
        num_classes=arch.num_classes,
        input_size=arch.input_size,
        width=arch.width,
        in_channels=arch.in_channels,
    )
    structural = PruneSettings("l1", arch.round_to, arch.min_channels)
    apply_profile(model, profile, arch.example_input(), structural)
    state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
