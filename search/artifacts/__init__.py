"""What a search leaves for its users: :func:`export_trial` (state_dict, TorchScript, ONNX;
formats by name), :func:`register_export` (the MLflow model registry), the profile library
(:func:`export_profiles`, :func:`load_profile`), :func:`apply_profiles` (known profiles on
another data set) and :func:`finetune_trial` (a chosen trial at full length). Names load on
first use."""

from __future__ import annotations

from prunetune.budgets.lazy import lazy_exports

_WHERE = {
    "export_trial": "export",
    "ExportFormat": "export",
    "ExportResult": "export",
    "get_format": "export",
    "format_names": "export",
    "register_format": "export",
    "register_export": "model_registry",
    "LibraryProfile": "library",
    "export_profiles": "library",
    "load_profile": "library",
    "apply_profiles": "apply",
    "finetune_trial": "finetune",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
