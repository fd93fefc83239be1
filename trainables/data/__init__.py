"""Data sets: the registry, the loaders, and what a trial trains and evaluates on.

``load_dataset`` decodes a small set into normalised in-memory tensors (:class:`DataSplits`),
as the base model, exports and tools use it. A trial reads its data through
:func:`open_trial_data` instead: one uint8 copy per node (a memory-mapped node cache) or a
stream decoded per batch, with the standard augmentation applied in batches on the trial's
device (``data.mode``, ``data.augment``; see docs/data.md).
"""

from prunetune.trainables.data import builtin, files, folder, idx  # noqa: F401 - registers the loaders
from prunetune.trainables.data.splits import (
    DatasetLoader,
    DataSplits,
    Prepared,
    RawSplits,
    check_dataset,
    dataset_kind,
    dataset_names,
    load_dataset,
    prepare_dataset,
    register_dataset,
)

SHAPE_CLASSES = builtin.SHAPE_CLASSES

__all__ = [
    "SHAPE_CLASSES",
    "DataSplits",
    "DatasetLoader",
    "Prepared",
    "RawSplits",
    "check_dataset",
    "dataset_kind",
    "dataset_names",
    "load_dataset",
    "prepare_dataset",
    "register_dataset",
]
