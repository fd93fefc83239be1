"""The experiment manifest: what a search was, saved beside Tune's results.

``prunetune.json`` in the experiment directory records the validated config (as written: a
length in epochs without the steps it resolved to), the training split's size those steps
follow from (a folder that gained images since resumes with the steps its trials ran), the
resolved base checkpoint, class count, dense costs and group sizes. Commands that work on
finished or interrupted searches (export, resume, status, compare) rebuild everything from it
and Tune's own files, never from the user's possibly edited YAML.

An experiment is its folder: a manifest read from a renamed or moved folder describes the
search under the folder's name (its MLflow study stays the one it was logged to), so
``resume`` continues the folder it is given and never writes to another experiment that now
holds the old name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import SearchConfig, is_uri, parse_config

MANIFEST = "prunetune.json"
VERSION = 1
DIGESTS = "config_sha256"  # per config key, the hash of its value when the search started


def config_digests(config: Mapping) -> dict[str, str]:
    """A short SHA-256 of every leaf of a config's JSON form, by dotted key: what the search
    started with, so that an edit of the manifest's config is found and named on resume."""
    digests = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
            return
        digests[prefix] = hashlib.sha256(json.dumps(node, sort_keys=True).encode()).hexdigest()[:16]

    walk(config, "")
    return digests


def edited_keys(config: Mapping, recorded: Mapping[str, str] | None) -> tuple[str, ...]:
    """The keys whose value differs from ``recorded`` digests (added or removed ones too);
    none when the manifest predates the digests."""
    if not recorded:
        return ()
    now = config_digests(config)
    return tuple(sorted(k for k in now.keys() | recorded.keys() if now.get(k) != recorded.get(k)))


def check_unchanged(manifest: Manifest) -> None:
    """Refuse to resume a search whose manifest's config was edited after it started: its
    finished trials ran with the old values, the rest would run with the new ones."""
    if manifest.edited:
        keys = ", ".join(manifest.edited[:5]) + (
            f" (and {len(manifest.edited) - 5} more)" if len(manifest.edited) > 5 else ""
        )
        raise ConfigError(
            f"{manifest.directory / MANIFEST} was edited after the search started (changed: {keys}); "
            "a resumed search must run as it started: restore the value, or start a new search under a new name"
        )


@dataclass(frozen=True)
class Manifest:
    config: SearchConfig
    base_checkpoint: str
    num_classes: int
    dense_costs: dict[str, float]
    groups: dict[str, int]
    directory: Path
    extra_bases: tuple[str, ...] = ()  # the checkpoints of config.bases, in order
    edited: tuple[str, ...] = ()  # config keys changed since the search started (see check_unchanged)
    train_images: int | None = None  # the training split's size: what resolved any epochs to steps

    def setup(self):
        """The :class:`~trainables.TrialSetup` every trial of this search used."""
        from dataclasses import replace

        from prunetune.search.setup import trial_setup, with_extra_bases

        setup = replace(trial_setup(self.config), base_checkpoint=self.base_checkpoint)
        return with_extra_bases(self.config, setup, self.extra_bases)


def write_manifest(prepared) -> Path:
    """Write the manifest of a prepared search (atomically) and return its path."""
    directory = prepared.experiment_dir
    directory.mkdir(parents=True, exist_ok=True)
    blob = {
        "version": VERSION,
        "config": prepared.config.as_written().model_dump(mode="json"),  # epochs as given; steps from them below
        "train_images": prepared.train_images,
        "base_checkpoint": prepared.setup.base_checkpoint,
        "extra_bases": [other.base_checkpoint for other in prepared.setup.others],
        "num_classes": prepared.num_classes,
        "dense_costs": prepared.dense_costs,
        "groups": {g.name: g.channels for g in prepared.space.groups},
    }
    blob[DIGESTS] = config_digests(blob["config"])
    path = directory / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(blob, indent=2))
    os.replace(tmp, path)
    return path


def read_manifest(directory: str | Path) -> Manifest:
    """Read an experiment's manifest; a folder that is not a prunetune experiment is an error."""
    directory = Path(directory).resolve()
    path = directory / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"{directory} is not a prunetune experiment (no {MANIFEST}); pass the folder "
            f"`prunetune search` printed as 'results:', e.g. results/demo"
        )
    try:
        blob = json.loads(path.read_text())
        config = parse_config(blob["config"])
        train_images = blob.get("train_images")  # older manifests: none, and no epochs to resolve
        if config.in_epochs():
            config = config.resolved(int(blob["train_images"]))
        manifest = Manifest(
            config=in_folder(config, directory),
            base_checkpoint=str(blob["base_checkpoint"]),
            num_classes=int(blob["num_classes"]),
            dense_costs=dict(blob["dense_costs"]),
            groups=dict(blob["groups"]),
            directory=directory,
            extra_bases=tuple(blob.get("extra_bases", ())),
            edited=edited_keys(blob["config"], blob.get(DIGESTS)),
            train_images=None if train_images is None else int(train_images),
        )
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError, ConfigError) as err:
        detail = (
            f"missing key {err}"
            if isinstance(err, KeyError)
            else str(err).splitlines()[0]
            if str(err)
            else type(err).__name__
        )
        raise ConfigError(
            f"{path} is damaged ({detail}); restore it from a copy, or start the search again under a new name"
        ) from None
    return manifest


def in_folder(config: SearchConfig, directory: Path) -> SearchConfig:
    """``config`` as the search in ``directory``: named after the folder (a renamed one keeps
    logging to its old MLflow study). Trials on object storage stay under the recorded name."""
    if directory.name == config.name or is_uri(config.storage_path):
        return config
    tracking = config.tracking.model_copy(update={"experiment": config.tracking.experiment or config.name})
    return config.model_copy(update={"name": directory.name, "tracking": tracking})
