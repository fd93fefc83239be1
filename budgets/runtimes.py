"""Runtimes a latency is measured in: the model as it will be deployed, not as it trains.

A :class:`Runtime` turns an eval-mode model and an input batch into a zero-argument callable
that runs one inference the way the deployment does: ``eager`` (PyTorch), ``torchscript``
(traced, saved and reloaded), ``onnxruntime`` (exported to ONNX and run in an ONNX Runtime
session) and ``tensorrt`` (named, refused in one line where the ``tensorrt`` package is not
importable). The exporters here are the ones ``prunetune export`` writes its ``onnx`` and
``torchscript`` artifacts with (:mod:`prunetune.search.artifacts.export` calls
:func:`export_onnx` and :func:`trace_torchscript`), so the measured model is the deployed one.

Runtimes are registered by name in :data:`RUNTIMES` (``register_runtime``, ``get_runtime``,
``runtime_names``); an unknown name is a BudgetError listing the valid ones.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from prunetune.budgets.errors import BudgetError
from prunetune.budgets.registry import Registry

__all__ = [
    "RUNTIMES",
    "Runtime",
    "export_onnx",
    "get_runtime",
    "register_runtime",
    "runtime_names",
    "trace_torchscript",
]

Run = Callable[[], object]

RUNTIMES: Registry[type[Runtime]] = Registry("runtime", error=BudgetError)


def register_runtime(name: str) -> Callable[[type[Runtime]], type[Runtime]]:
    def decorate(cls: type[Runtime]) -> type[Runtime]:
        cls.name = name
        return RUNTIMES.register(name)(cls)

    return decorate


def get_runtime(name: str) -> Runtime:
    """A new instance of the runtime registered as ``name`` (a BudgetError listing the valid ones)."""
    return RUNTIMES.get(name)()


def runtime_names() -> list[str]:
    return RUNTIMES.names()


class Runtime(abc.ABC):
    """How one inference runs on the deployment's software stack.

    ``packages`` are the pip packages it needs (checked by :meth:`check_available` where it
    measures, and named in its :meth:`versions` for the cache's device fingerprint)."""

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]] = ("torch",)

    def check_available(self) -> None:
        """A BudgetError in one line when this machine cannot run the runtime."""
        missing = [package for package in self.packages if not _installed(package)]
        if missing:
            raise BudgetError(
                f"runtime {self.name!r} needs {' and '.join(missing)}, which is not importable on this machine; "
                f"pip install {' '.join(missing)} where it measures, or choose one of: {', '.join(runtime_names())}"
            )

    def versions(self) -> dict[str, str]:
        return {package: _version(package) for package in self.packages}

    @abc.abstractmethod
    def prepare(self, model: nn.Module, batch: torch.Tensor, threads: int) -> Run:
        """A callable running ``model`` (eval mode, on ``batch``'s device) on ``batch`` once."""


@register_runtime("eager")
class Eager(Runtime):
    """PyTorch eager mode under ``torch.inference_mode``: what a trial measured before runtimes."""

    def prepare(self, model, batch, threads):
        def run() -> object:
            with torch.inference_mode():
                return model(batch)

        return run


@register_runtime("torchscript")
class TorchScript(Runtime):
    """The traced module ``prunetune export --format torchscript`` saves, saved and reloaded."""

    def prepare(self, model, batch, threads):
        buffer = io.BytesIO()
        with _quiet():
            torch.jit.save(trace_torchscript(model, batch), buffer)
            buffer.seek(0)
            loaded = torch.jit.load(buffer, map_location=batch.device).eval()

        def run() -> object:
            with torch.inference_mode():
                return loaded(batch)

        return run


@register_runtime("onnxruntime")
class OnnxRuntime(Runtime):
    """The ``.onnx`` file ``prunetune export --format onnx`` writes, in an ONNX Runtime session
    with ``threads`` intra-op threads (CUDA execution provider for a CUDA batch)."""

    packages = ("torch", "onnx", "onnxruntime", "onnxscript")

    def prepare(self, model, batch, threads):
        import onnxruntime

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export_onnx(model, path, batch)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            cuda = batch.device.type == "cuda"
            providers = ["CUDAExecutionProvider"] if cuda else ["CPUExecutionProvider"]
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        feed = {session.get_inputs()[0].name: batch.cpu().numpy()}
        return lambda: session.run(None, feed)


@register_runtime("tensorrt")
class TensorRT(Runtime):
    """NVIDIA TensorRT: accepted as a name; measuring needs the ``tensorrt`` package and a GPU,
    which this release does not drive yet, so it is refused in one line where it would measure."""

    packages = ("torch", "tensorrt")

    def check_available(self) -> None:
        super().check_available()
        raise BudgetError(
            "runtime 'tensorrt' is importable here but prunetune does not build TensorRT engines yet; "
            "measure with runtime: onnxruntime (CUDA execution provider) or torchscript meanwhile"
        )

    def prepare(self, model, batch, threads):
        self.check_available()
        raise AssertionError("unreachable")


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor) -> None:
    """``model`` to an ONNX file through the torch.export-based exporter, with a dynamic batch
    dimension, input ``input`` and output ``logits``: the export ``prunetune export`` writes."""
    batch = torch.export.Dim("batch")
    with _quiet():
        torch.onnx.export(
            model,
            (_at_least_two(example),),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
        )


def trace_torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model`` on the first two items of ``example`` (deprecation
    warnings silenced): the module ``prunetune export --format torchscript`` saves."""
    with _quiet():
        return torch.jit.trace(model, example[:2])


def _at_least_two(example: torch.Tensor) -> torch.Tensor:
    # The exporter specialises a batch dimension of 1; two items keep it dynamic.
    return example[:2] if example.shape[0] >= 2 else example.repeat(2, *([1] * (example.ndim - 1)))


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporters' chatter and deprecation notices (they print, warn and log freely)."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        open(os.devnull, "w") as null,
        contextlib.redirect_stderr(null),
    ):
        warnings.simplefilter("ignore")
        yield
