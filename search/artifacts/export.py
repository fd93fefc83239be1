"""Exporting a trial's pruned model: written to a temporary path, verified, then moved into place.

:func:`export_trial` rebuilds the trial's model from its checkpoint, checks that its counted MACs
and parameters equal what the trial reported, writes the artifact in the chosen format, reloads
it from disk and compares its outputs with the trial's model on validation inputs (a full batch
and a single input, so a fixed batch size would show). Only a verified artifact reaches ``out``;
any mismatch removes the partial output and raises :class:`ExportError`.

Formats are small classes in the registry :data:`FORMATS` (:func:`register_format`,
:func:`get_format`, :func:`format_names`): ``state_dict`` (a folder
:func:`trainables.load_pruned` rebuilds), ``torch_export`` (a ``.pt2`` ExportedProgram),
``onnx`` (checked in ONNX Runtime) and the legacy ``torchscript``. Each format also says how it
is logged as an MLflow model (:meth:`ExportFormat.log_model`, used by ``prunetune export
--register``). Every artifact records the input preprocessing it expects
(:class:`~prunetune.search.artifacts.preprocess.Preprocessing`).
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import io
import json
import math
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from prunetune.budgets import get_cost
from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError, PrunetuneError
from prunetune.budgets.registry import Registry
from prunetune.budgets.runtimes import export_onnx, trace_torchscript
from prunetune.search.artifacts.preprocess import KEY as PREPROCESSING
from prunetune.search.artifacts.preprocess import Preprocessing
from prunetune.trainables import Profile, PrunedArchitecture, load_pruned, rebuild_from_checkpoint, save_pruned
from prunetune.trainables.trial import PROFILE_FILE

VERIFY_BATCH = 64
RELATIVE_TOLERANCE = 1e-4  # of the logits' largest magnitude: float reorderings, BN folding
VERIFIED_COSTS = ("macs", "params")


class ExportError(PrunetuneError):
    """An export could not be written or did not verify; nothing was left at the output path."""


Runner = Callable[[torch.Tensor], torch.Tensor]


class ExportFormat(abc.ABC):
    """One artifact format: how to write it, reload it, and check its structure.

    ``requires`` maps import names to the pip package that provides them; a missing one is a
    user error naming the package. ``write`` gets the verified reference model in eval mode.
    ``log_model`` logs the verified artifact as an MLflow model (``prunetune export --register``).
    """

    name: ClassVar[str]
    requires: ClassVar[dict[str, str]] = {}
    is_directory: ClassVar[bool] = False
    mlflow_serialization: ClassVar[str] = "pt2"  # how the default log_model has mlflow.pytorch save it

    def check_available(self) -> None:
        missing = [pkg for module, pkg in self.requires.items() if not _importable(module)]
        if missing:
            raise ConfigError(
                f"format {self.name!r} needs {' and '.join(missing)}: pip install {' '.join(missing)} "
                "(or pip install 'prunetune[export]')"
            )

    @abc.abstractmethod
    def write(self, model: nn.Module, path: Path, example: torch.Tensor, info: dict) -> None: ...

    @abc.abstractmethod
    def load(self, path: Path) -> tuple[Runner, object]:
        """The artifact reloaded from disk: a function of a batch, and the loaded object."""

    @abc.abstractmethod
    def check_structure(self, loaded: object, reference: nn.Module, example: torch.Tensor) -> None:
        """Raise :class:`ExportError` where the artifact's layers are not the reference's."""

    def log_model(
        self, loaded: object, path: Path, registered_name: str, signature, example, metadata: dict | None = None
    ):
        """Log the artifact at ``path`` (``loaded`` is what :meth:`load` returned for it) as the
        model of the active MLflow run, registered as ``registered_name``, with ``metadata`` (the
        input preprocessing) in its MLmodel file; returns MLflow's ``ModelInfo``. Called by the
        model registry only. The default logs ``loaded`` through ``mlflow.pytorch`` as
        :attr:`mlflow_serialization`, for a format that loads as a module."""
        import mlflow.pytorch

        return mlflow.pytorch.log_model(
            loaded,
            name="model",
            registered_model_name=registered_name,
            signature=signature,
            input_example=example,
            pip_requirements=requirements("torch"),
            serialization_format=self.mlflow_serialization,
            metadata=metadata,
        )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def requirements(*packages: str) -> list[str]:
    """Pinned pip requirements of a logged model: the installed versions of ``packages``."""
    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


FORMATS: Registry[type[ExportFormat]] = Registry("export format")


def register_format(name: str):
    """Class decorator: register an :class:`ExportFormat` subclass as ``name`` (its ``name``)."""

    def decorate(cls: type[ExportFormat]) -> type[ExportFormat]:
        cls.name = name
        return FORMATS.register(name)(cls)

    return decorate


def format_names() -> list[str]:
    return FORMATS.names()


def get_format(name: str) -> ExportFormat:
    """A new instance of the format registered as ``name``; an unknown name is a ConfigError
    listing the valid ones."""
    return FORMATS.get(name)()


def _counted(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    return {key: get_cost(key)(model, example) for key in VERIFIED_COSTS}


@register_format("state_dict")
class StateDictFormat(ExportFormat):
    """A folder: ``model.pt`` (weights), ``profile.json``, ``export.json`` (architecture + info)
    and ``preprocessing.json`` (the input preprocessing, also in ``export.json``)."""

    is_directory = True

    def write(self, model, path, example, info):
        arch = PrunedArchitecture(**info["architecture"])
        save_pruned(path, model, Profile(info["profile"]), arch, {k: v for k, v in info.items() if k != "architecture"})
        (Path(path) / f"{PREPROCESSING}.json").write_text(json.dumps(info[PREPROCESSING], indent=2))

    def load(self, path):
        model = load_pruned(path)
        return model, model

    def check_structure(self, loaded, reference, example):
        _same_tensors(loaded, reference)
        counted, expected = _counted(loaded, example), _counted(reference, example)
        if counted != expected:
            raise ExportError(f"the reloaded model counts {counted}, the trial's model {expected}")

    def log_model(self, loaded, path, registered_name, signature, example, metadata=None):
        """The rebuilt module in MLflow's ``pt2`` (``torch.export``) format, so loading it
        unpickles nothing, with the export folder beside it as artifacts."""
        import mlflow

        info = super().log_model(loaded, path, registered_name, signature, example, metadata)
        mlflow.log_artifacts(str(path), artifact_path="prunetune_export")
        return info


def _extra_files(info: dict) -> dict[str, str]:
    """The export info and the preprocessing as extra files of a ``.pt``/``.pt2`` archive."""
    return {"prunetune.json": json.dumps(info), f"{PREPROCESSING}.json": json.dumps(info[PREPROCESSING])}


@register_format("torch_export")
class TorchExportFormat(ExportFormat):
    """``torch.export`` of the pruned model with a dynamic batch dimension, saved as a ``.pt2``
    ExportedProgram with the export info and preprocessing as extra files; reloaded with
    ``torch.export.load(path).module()``. PyTorch's successor to TorchScript."""

    def write(self, model, path, example, info):
        batch = torch.export.Dim("batch")
        with _quiet():
            program = torch.export.export(model, (example[:2],), dynamic_shapes=({0: batch},))
            with open(path, "wb") as f:  # a file object: torch.export.save would add a .pt2 suffix to the temp name
                torch.export.save(program, f, extra_files=_extra_files(info))

    def load(self, path):
        with _quiet():
            module = torch.export.load(str(path)).module()
        return module, module

    def check_structure(self, loaded, reference, example):
        _same_tensors(loaded, reference)


@register_format("torchscript")
class TorchScriptFormat(ExportFormat):
    """Legacy: ``torch.jit.trace`` of the pruned model, saved with its export info and
    preprocessing as extra files.

    TorchScript is deprecated in recent PyTorch in favour of ``torch.export`` (the
    ``torch_export`` format); it stays for serving stacks that still load it. The deprecation
    warnings are silenced for this format.
    """

    def write(self, model, path, example, info):
        traced = trace_torchscript(model, example)  # the module a torchscript latency budget measures
        with _quiet():
            torch.jit.save(traced, str(path), _extra_files=_extra_files(info))

    def load(self, path):
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
        module.eval()
        return module, module

    mlflow_serialization = "pickle"  # mlflow.pytorch saves a ScriptModule with torch.jit.save

    def check_structure(self, loaded, reference, example):
        _same_tensors(loaded, reference)


@register_format("onnx")
class OnnxFormat(ExportFormat):
    """ONNX through ``torch.onnx.export`` (the torch.export-based exporter) with a dynamic batch
    dimension, run back in ONNX Runtime. The exporter folds BatchNorm into the convs, so the
    structure check compares conv and linear kernel shapes, which fix the MACs."""

    requires = {"onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript"}

    def write(self, model, path, example, info):
        import onnx

        export_onnx(model, path, example)  # the file an onnxruntime latency budget measures
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(
            proto, {"prunetune": json.dumps(info), PREPROCESSING: json.dumps(info[PREPROCESSING])}
        )
        onnx.save(proto, str(path))

    def load(self, path):
        import onnx
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

        return run, onnx.load(str(path))

    def check_structure(self, loaded, reference, example):
        expected = sorted(tuple(m.weight.shape) for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        found = sorted(_onnx_kernel_shapes(loaded))
        if found != expected:
            raise ExportError(f"ONNX graph kernels {found} differ from the trial's model {expected}")

    def log_model(self, loaded, path, registered_name, signature, example, metadata=None):
        """The ONNX proto through ``mlflow.onnx`` (served by ONNX Runtime), weights inline."""
        import mlflow.onnx

        return mlflow.onnx.log_model(
            loaded,
            name="model",
            registered_model_name=registered_name,
            signature=signature,
            pip_requirements=requirements("onnx", "onnxruntime"),
            save_as_external_data=False,
            metadata=metadata,
        )


def _onnx_kernel_shapes(proto) -> list[tuple[int, ...]]:
    shapes = {init.name: tuple(init.dims) for init in proto.graph.initializer}
    kernels = []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.input[1] not in shapes:
            continue
        shape = shapes[node.input[1]]
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        kernels.append(shape if node.op_type == "Conv" or trans_b else shape[::-1])
    return kernels


def _same_tensors(loaded: nn.Module, reference: nn.Module) -> None:
    def shapes(module):
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    got, want = shapes(loaded), shapes(reference)
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))[:3]
        raise ExportError(f"exported tensors differ from the trial's model at {', '.join(diff)}")


@contextlib.contextmanager
def _quiet():
    """Silence exporters' chatter and deprecation notices (they print, warn and log freely)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    trial_id: str
    max_abs_diff: float
    tolerance: float
    inputs: int
    costs: dict[str, float]
    info: dict


def export_info(manifest, trial, preprocessing: Preprocessing | None = None) -> dict:
    """What every artifact records about itself: architecture, profile, the trial's numbers,
    and the input preprocessing (read from the search's data set when not given)."""
    if preprocessing is None:
        setup = manifest.setup()
        preprocessing = Preprocessing.of_splits(setup.data.open(setup.model.input_size), setup.model.input_size)
    config, report = manifest.config, trial.report
    arch = PrunedArchitecture(
        model=config.model.name,
        width=config.model.width,
        input_size=config.model.input_size,
        num_classes=manifest.num_classes,
        round_to=config.prune.round_to,
        min_channels=config.prune.min_channels,
        criterion=config.prune.criterion,
    )
    return {
        "architecture": asdict(arch),
        "profile": dict(Profile.from_json((trial.checkpoint / PROFILE_FILE).read_text()).ratios),
        R.ACCURACY: report.accuracy,
        R.LOSS: report.loss if math.isfinite(report.loss) else None,
        "costs": dict(report.costs),
        "relative": dict(report.relative),
        "budgets": [b.label for b in config.budgets],
        R.FEASIBLE: report.feasible,
        "source": {
            "experiment": config.name,
            "directory": str(manifest.directory),
            "trial_id": trial.trial_id,
            R.SOURCE_TRIAL: trial.source_trial,
            "checkpoint": str(trial.checkpoint),
        },
        PREPROCESSING: preprocessing.to_json(),
        "prunetune_version": version("prunetune"),
    }


def _check_reported_costs(reference: nn.Module, example: torch.Tensor, trial) -> dict[str, float]:
    counted = _counted(reference, example)
    for key, value in counted.items():
        reported = trial.report.costs.get(key)
        if reported is not None and abs(reported - value) > 1e-6 * max(1.0, abs(value)):
            raise ExportError(
                f"trial {trial.trial_id} reported {key}={float(reported):,.0f} but its checkpoint counts "
                f"{value:,.0f}; the checkpoint does not hold the model the trial measured"
            )
    return counted


def _compare_outputs(runner: Runner, reference: nn.Module, inputs: torch.Tensor) -> tuple[float, float]:
    with torch.inference_mode():
        want = reference(inputs)
        got = torch.cat([runner(inputs), runner(inputs[:1])])
    want = torch.cat([want, want[:1]])
    tolerance = RELATIVE_TOLERANCE * max(1.0, want.abs().max().item())
    if got.shape != want.shape:
        raise ExportError(f"exported model returns shape {tuple(got.shape)}, the trial's model {tuple(want.shape)}")
    diff = (got.float() - want.float()).abs().max().item()
    if not diff <= tolerance:
        raise ExportError(f"exported outputs differ from the trial's model by {diff:.3g} (tolerance {tolerance:.3g})")
    return diff, tolerance


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ConfigError(f"output {out} already exists; choose another --out or pass --force to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist; create it or choose another --out")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def export_trial(manifest, trial, format_name: str, out: str | Path, *, force: bool = False) -> ExportResult:
    """Export ``trial`` of the experiment ``manifest`` to ``out``, verified (see module doc)."""
    fmt = get_format(format_name)
    fmt.check_available()
    out = Path(out).absolute()
    _prepare_out(out, force)
    setup = manifest.setup()
    reference = rebuild_from_checkpoint(setup, trial.checkpoint, manifest.num_classes).eval()
    data = setup.data.open(setup.model.input_size)  # the node cache (or stream): never the whole set decoded
    inputs = next(data.eval_batches("val", VERIFY_BATCH))[0].float()
    example = inputs[:1]
    counted = _check_reported_costs(reference, example, trial)
    info = export_info(manifest, trial, Preprocessing.of_splits(data, setup.model.input_size))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        fmt.write(reference, tmp, inputs, info)
        runner, loaded = fmt.load(tmp)
        fmt.check_structure(loaded, reference, example)
        diff, tolerance = _compare_outputs(runner, reference, inputs)
    except BaseException:  # a mismatch, an exporter's failure or Ctrl-C: leave nothing behind
        _remove(tmp)
        raise
    _remove(out)
    os.replace(tmp, out)
    return ExportResult(out, fmt.name, trial.trial_id, diff, tolerance, len(inputs), counted, info)
