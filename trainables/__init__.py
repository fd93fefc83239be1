"""What one trial does: models, data, groups and profiles, pruning, fine-tuning, the trainable."""

from prunetune.trainables.base import DataSpec, ModelSpec, ensure_base_checkpoint, load_base
from prunetune.trainables.data import DataSplits, RawSplits, dataset_names, load_dataset, register_dataset
from prunetune.trainables.export import PrunedArchitecture, load_pruned, save_pruned
from prunetune.trainables.groups import (
    CRITERIA,
    GroupInfo,
    PruneSettings,
    PruningStructure,
    apply_profile,
    find_groups,
    register_criterion,
    target_channels,
)
from prunetune.trainables.models import build_model, model_names, register_model
from prunetune.trainables.profiles import Profile, ProfileError, kept_channels
from prunetune.trainables.structure import CostModelError, extract_cost_model
from prunetune.trainables.taper import TaperSettings
from prunetune.trainables.taper_trial import is_taper_trial, run_taper, taper_run, taper_trial_config
from prunetune.trainables.train import (
    DivergedError,
    EvalSettings,
    Recipe,
    Settings,
    evaluate,
    recalibrate_bn,
    train_batches,
    train_steps,
)
from prunetune.trainables.trial import (
    TrialSetup,
    example_input,
    example_of,
    prune_and_finetune,
    rebuild_from_checkpoint,
    resume_finetune,
    run_trial,
    save_trial_checkpoint,
)

__all__ = [
    "CRITERIA",
    "CostModelError",
    "DataSpec",
    "DataSplits",
    "DivergedError",
    "EvalSettings",
    "GroupInfo",
    "ModelSpec",
    "Profile",
    "ProfileError",
    "PrunedArchitecture",
    "PruneSettings",
    "PruningStructure",
    "Recipe",
    "Settings",
    "TaperSettings",
    "TrialSetup",
    "apply_profile",
    "build_model",
    "dataset_names",
    "ensure_base_checkpoint",
    "evaluate",
    "extract_cost_model",
    "example_input",
    "example_of",
    "find_groups",
    "kept_channels",
    "load_base",
    "load_dataset",
    "load_pruned",
    "model_names",
    "prune_and_finetune",
    "rebuild_from_checkpoint",
    "recalibrate_bn",
    "register_criterion",
    "register_dataset",
    "RawSplits",
    "register_model",
    "resume_finetune",
    "save_pruned",
    "save_trial_checkpoint",
    "target_channels",
    "run_taper",
    "run_trial",
    "taper_run",
    "taper_trial_config",
    "is_taper_trial",
    "train_batches",
    "train_steps",
]
