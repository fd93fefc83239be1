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

import torch

from prunetune.budgets.costs import CostFunction, first_item, register_cost
from prunetune.budgets.errors import BudgetError
from prunetune.budgets.latency_cache import LatencyCache, architecture_signature, default_cache_dir, device_fingerprint
from prunetune.budgets.runtimes import get_runtime
from prunetune.budgets.timing import Measurement, TimingProtocol, time_until_confident

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


@register_cost("latency")
class Latency(CostFunction):
    """Median wall time, in milliseconds, of one inference at ``batch_size`` on ``device``, in
    ``runtime``, with the confidence interval of that median.

    The protocol (:class:`~prunetune.budgets.timing.TimingProtocol`): ``warmup`` untimed runs,
    then at least ``repeats`` timed runs (each alone, between CUDA synchronisations), more in
    rounds until the ``confidence`` interval of the median is within ``width`` of it or
    ``max_repeats`` runs were timed. :meth:`measure_interval` returns the figure with its
    interval; a budget is checked against the interval's upper end. Torch's (or ONNX Runtime's)
    intra-op thread count is ``threads`` while measuring; torch's is restored afterwards.

    ``runtime`` (``eager``, ``torchscript``, ``onnxruntime``, ``tensorrt``) is how the model
    runs: exported the way ``prunetune export`` does it. ``on`` names a Ray custom resource
    (e.g. ``device:orin``): the model is then measured by the one measuring actor on the node
    that offers it, alone on its device, never in the trial (see
    :mod:`prunetune.trainables.meter`); without ``on``, the trial measures it where it runs.
    ``cache`` is a folder of measurements kept across searches (:mod:`.latency_cache`); with
    ``on`` the measuring node's default folder is used when none is given. ``screen: true``
    asks the search to measure a per-layer latency table (:mod:`.latency_table`) and, where it
    predicts whole-model measurements well, screen profiles by it before any trial.

    ``clock`` is ``wall`` (elapsed time) or ``thread`` (the measuring thread's CPU time; CPU,
    ``threads: 1`` only): time the scheduler gives to other work on a shared core is then not
    counted, though their contention for caches still is.

    Noisy where it runs beside other work (without ``on``): compare latencies only within one
    run on one kind of device. Not monotone: a layer with fewer channels can run slower (e.g.
    off a kernel's tile size).
    """

    unit = "ms"
    key_options = ("device", "batch_size", "threads", "on", "runtime", "clock")
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
        max_repeats: int | None = None,
        width: float = 0.1,
        confidence: float = 0.95,
        runtime: str = "eager",
        on: str | None = None,
        cache: str | None = None,
        screen: bool = False,
        clock: str = "wall",
    ) -> None:
        self.device = parse_device(device)
        self.batch_size = _check_count("batch_size", batch_size, minimum=1)
        self.threads = _check_count("threads", threads, minimum=1)
        repeats = _check_count("repeats", repeats, minimum=1)
        cap = max(repeats, 100) if max_repeats is None else max_repeats
        self.protocol = TimingProtocol(warmup, repeats, cap, width, confidence)
        self.runtime = get_runtime(runtime).name  # an unknown name: one line listing the valid ones
        if on is not None and not (isinstance(on, str) and on.strip() and on not in ("CPU", "GPU", "memory")):
            raise BudgetError(
                f"option on={on!r} must name a custom Ray resource that the measuring node offers, "
                "e.g. on: 'device:orin' with `ray start --resources='{\"device:orin\": 1}'` on that node"
            )
        self.on = on
        self.cache = cache
        if not isinstance(screen, bool):
            raise BudgetError(f"option screen={screen!r} must be true or false")
        self.screen = screen
        if clock not in CLOCKS:
            raise BudgetError(f"option clock={clock!r} must be one of: {', '.join(CLOCKS)}")
        if clock == "thread" and (self.device.type != "cpu" or self.threads != 1):
            raise BudgetError(
                "option clock='thread' times the measuring thread's CPU time, which counts one inference only "
                "on the CPU with threads: 1; use clock: wall otherwise"
            )
        self.clock = clock
        if on is None:  # measured in the trial: a runtime this machine lacks is refused now
            get_runtime(self.runtime).check_available()

    @property
    def warmup(self) -> int:
        return self.protocol.warmup

    @property
    def repeats(self) -> int:
        return self.protocol.repeats

    def __repr__(self) -> str:
        where = f", on={self.on!r}" if self.on else ""
        return (
            f"Latency(device={str(self.device)!r}, batch_size={self.batch_size}, threads={self.threads}, "
            f"runtime={self.runtime!r}{where}, warmup={self.warmup}, repeats={self.repeats}, "
            f"max_repeats={self.protocol.max_repeats}, width={self.protocol.width})"
        )

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        return self.measure_interval(model, example_input).value

    def measure(self, model: torch.nn.Module, example_input: torch.Tensor) -> tuple[float, float]:
        """``(median_ms, interval_width_ms)``: the figure and the width of its interval."""
        measured = self.measure_interval(model, example_input)
        return measured.value, measured.high - measured.low

    def measure_interval(self, model: torch.nn.Module, example_input: torch.Tensor) -> Measurement:
        """The median and its confidence interval, here (the caller decides where "here" is:
        a trial, or the measuring actor for ``on``); from the cache when one is set and holds
        this device, runtime and model."""
        require_available(self.device)
        net = _inference_copy(model, self.device)
        batch = _batch(example_input, self.batch_size, self.device)
        cache, key, about = self._cache_entry(net, batch)
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        runtime = get_runtime(self.runtime)
        runtime.check_available()
        with _num_threads(self.threads):
            run = runtime.prepare(net, batch, self.threads)
            measured = time_until_confident(
                run, self.protocol, synchronize=lambda: _synchronize(self.device), clock=CLOCKS[self.clock]
            )
        if cache is not None:
            cache.put(key, measured, about)
        return measured

    def _cache_entry(self, net: torch.nn.Module, batch: torch.Tensor):
        folder = self.cache or (str(default_cache_dir()) if self.on else None)
        if folder is None:
            return None, "", {}
        fingerprint = device_fingerprint(self.device, get_runtime(self.runtime).versions(), self.threads)
        signature = architecture_signature(net, tuple(batch.shape))
        protocol = {
            "warmup": self.warmup,
            "width": self.protocol.width,
            "confidence": self.protocol.confidence,
            "clock": self.clock,
        }
        about = {"device": fingerprint, "runtime": self.runtime, "model": signature}
        return LatencyCache(folder), LatencyCache.key(fingerprint, self.runtime, signature, protocol), about


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
