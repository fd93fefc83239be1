"""Measured costs: latency and peak memory of one inference on a named device.

Both run a deep copy of the model in eval mode under ``torch.inference_mode`` on a batch made
of ``batch_size`` copies of the example input's first item, so the caller's model, its mode
and its device are left alone. The device is checked for a valid name when the cost is built
(a config is validated on the driver, which may have no GPU) and for availability when the
cost is measured (on the worker that runs the trial).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from prunetune.budgets.costs import CostFunction, first_item, register_cost
from prunetune.budgets.errors import BudgetError


@register_cost("latency")
class Latency(CostFunction):
    """Median wall time, in milliseconds, of one forward pass at ``batch_size`` on ``device``.

    Noisy: the number depends on the machine, its load and whatever else runs on it, so
    compare latencies only within one run on one kind of device; :meth:`measure` also gives
    the interquartile range so callers can log the spread. The protocol (our choice):
    ``warmup`` untimed forwards, then ``repeats`` forwards each timed alone with
    ``time.perf_counter`` between CUDA synchronisations; the median of those. Torch's
    intra-op thread count is set to ``threads`` while measuring and restored afterwards.
    Not monotone: a layer with fewer channels can run slower (e.g. off a kernel's tile size).
    """

    unit = "ms"
    key_options = ("device", "batch_size", "threads")
    monotone = False
    deterministic = False
    analytic = False

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 1,
        threads: int = 1,
        warmup: int = 3,
        repeats: int = 10,
    ) -> None:
        self.device = parse_device(device)
        self.batch_size = _check_count("batch_size", batch_size, minimum=1)
        self.threads = _check_count("threads", threads, minimum=1)
        self.warmup = _check_count("warmup", warmup, minimum=0)
        self.repeats = _check_count("repeats", repeats, minimum=1)

    def __repr__(self) -> str:
        return (
            f"Latency(device={str(self.device)!r}, batch_size={self.batch_size}, "
            f"threads={self.threads}, warmup={self.warmup}, repeats={self.repeats})"
        )

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        median, _ = self.measure(model, example_input)
        return median

    def measure(self, model: torch.nn.Module, example_input: torch.Tensor) -> tuple[float, float]:
        """``(median_ms, iqr_ms)`` over ``repeats`` timed forward passes."""
        require_available(self.device)
        net = _inference_copy(model, self.device)
        batch = _batch(example_input, self.batch_size, self.device)
        with _num_threads(self.threads), torch.inference_mode():
            for _ in range(self.warmup):
                net(batch)
            times = [self._time_one(net, batch) for _ in range(self.repeats)]
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        return float(median), float(q3 - q1)

    def _time_one(self, net: torch.nn.Module, batch: torch.Tensor) -> float:
        _synchronize(self.device)
        start = time.perf_counter()
        net(batch)
        _synchronize(self.device)
        return (time.perf_counter() - start) * 1e3


@register_cost("peak_memory")
class PeakMemory(CostFunction):
    """Bytes that one inference at ``batch_size`` needs on ``device``.

    On CUDA it is measured: ``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``, minus what was allocated before the model copy was made, so
    it counts the copy's parameters and buffers, the input batch, activations and kernel
    workspaces. Resetting the peak is process-wide on that device. cuDNN's choice of
    algorithm can move the CUDA number slightly between runs.

    On CPU, which has no peak counter, it is an estimate (our choice): parameter and buffer
    bytes, plus the largest, over every module including the root, of the bytes of that
    module's input tensors plus its output tensors (memory shared by several of them, e.g. an
    in-place ReLU's input and output, counted once). That is the live set of a chain of
    layers in which each input is freed once its output exists; it ignores tensors held for
    skip connections, a layer's temporaries and the allocator's overhead, so for branched
    models it is a lower bound. It depends only on shapes and dtypes: deterministic, and
    monotone in channel counts.
    """

    unit = "bytes"
    monotone = True
    deterministic = True
    analytic = False

    def __init__(self, *, device: str = "cpu", batch_size: int = 1) -> None:
        self.device = parse_device(device)
        self.batch_size = _check_count("batch_size", batch_size, minimum=1)

    def __repr__(self) -> str:
        return f"PeakMemory(device={str(self.device)!r}, batch_size={self.batch_size})"

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        require_available(self.device)
        if self.device.type == "cuda":
            return self._cuda_peak(model, example_input)
        return self._cpu_estimate(model, example_input)

    def _cuda_peak(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        net = _inference_copy(model, self.device)
        batch = _batch(example_input, self.batch_size, self.device)
        with torch.inference_mode():
            net(batch)
        torch.cuda.synchronize(self.device)
        return float(torch.cuda.max_memory_allocated(self.device) - before)

    def _cpu_estimate(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        net = _inference_copy(model, self.device)
        batch = _batch(example_input, self.batch_size, self.device)
        largest = 0

        def record(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            nonlocal largest
            largest = max(largest, _distinct_bytes([inputs, output]))

        handles = [module.register_forward_hook(record) for module in net.modules()]
        try:
            with torch.inference_mode():
                net(batch)
        finally:
            for handle in handles:
                handle.remove()
        weights = _distinct_bytes([*net.parameters(), *net.buffers()])
        return float(weights + largest)


def parse_device(spec: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a ``torch.device``; anything else is a BudgetError."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise BudgetError(f"device {spec!r} is not one of: cpu, cuda, cuda:N")
    return device


def require_available(device: torch.device) -> None:
    """Raise BudgetError when ``device`` does not exist on this machine."""
    if device.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (device.index or 0) >= count:
        raise BudgetError(
            f"device {str(device)!r} is not available here ({count} CUDA devices); "
            "run the trial on a GPU worker or measure with device: cpu"
        )


def _check_count(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BudgetError(f"option {name}={value!r} must be an integer >= {minimum}")
    return value


def _inference_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return copy.deepcopy(model).to(device).eval()


def _batch(example_input: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    sample = first_item(example_input)
    return sample.repeat(batch_size, *([1] * (sample.ndim - 1))).to(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _num_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _distinct_bytes(values: Any) -> int:
    """Bytes of every tensor in a nested tuple/list/dict, memory shared by several counted once."""
    sizes: dict[int, int] = {}
    stack = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            pointer = value.data_ptr()
            sizes[pointer] = max(sizes.get(pointer, 0), value.numel() * value.element_size())
        elif isinstance(value, (tuple, list)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return sum(sizes.values())
