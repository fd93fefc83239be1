"""Latencies measured once, kept across searches: keyed by (device, runtime, architecture, profile).

A pruned model's latency depends on its layers and their shapes, not on its weights, so
:func:`architecture_signature` (every module's type and every parameter and buffer's shape,
with the input shape) stands for (architecture, profile). :func:`device_fingerprint` names the
hardware and software that measured it (CPU model and count, GPU name, runtime versions).
:class:`LatencyCache` stores one small JSON file per key in a folder, written atomically, so
several searches and measuring processes can share it; a search measures each profile once, and
the next search with the same device and runtime asks the cache first.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from prunetune.budgets.timing import Measurement

__all__ = ["CACHE_ENV", "LatencyCache", "architecture_signature", "default_cache_dir", "device_fingerprint"]

CACHE_ENV = "PRUNETUNE_LATENCY_CACHE"


def default_cache_dir() -> Path:
    """``$PRUNETUNE_LATENCY_CACHE``, else ``~/.cache/prunetune/latency`` (on the measuring node)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "prunetune" / "latency"


def architecture_signature(model: nn.Module, batch_shape: tuple[int, ...]) -> str:
    """A digest of what a latency depends on: module types in order, parameter and buffer
    shapes and dtypes, and the input batch's shape."""
    parts = [str(tuple(batch_shape))]
    for name, module in model.named_modules():
        parts.append(f"{name}:{type(module).__qualname__}:{_hyper(module)}")
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        parts.append(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _hyper(module: nn.Module) -> str:
    """Shape-changing hyper-parameters that are not tensors (a conv's stride and groups)."""
    keys = ("stride", "padding", "dilation", "groups", "kernel_size", "output_size")
    return ",".join(f"{k}={getattr(module, k)}" for k in keys if hasattr(module, k))


def device_fingerprint(device: torch.device, versions: dict[str, str], threads: int) -> dict[str, str]:
    """What identifies the measuring hardware and software."""
    blob = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": str(os.cpu_count()),
        "threads": str(threads),
        "device": device.type,
        **{f"version:{k}": v for k, v in sorted(versions.items())},
    }
    if device.type == "cuda":
        blob["gpu"] = torch.cuda.get_device_name(device)
    return blob


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


class LatencyCache:
    """Measurements in ``directory``, one JSON file per key; :meth:`key` builds the key."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(fingerprint: dict[str, str], runtime: str, signature: str, protocol: dict) -> str:
        blob = json.dumps(
            {"device": fingerprint, "runtime": runtime, "model": signature, "protocol": protocol}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:40]

    def get(self, key: str) -> Measurement | None:
        try:
            blob = json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None  # absent, or unreadable: measured again
        return Measurement(**blob["measurement"]).with_(cached=True)

    def put(self, key: str, measurement: Measurement, about: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        stored = asdict(measurement.with_(cached=False))
        tmp.write_text(json.dumps({"measurement": stored, **about}, sort_keys=True))
        os.replace(tmp, path)
