"""Cost functions: what a (pruned) model costs, and the registry that names them.

A cost function maps ``(model, example_input)`` to one float. Trials call it on the dense
model once and on every pruned model; a :class:`~prunetune.budgets.spec.Budget` compares the two. Costs
are looked up by name (``macs``, ``params``, ``latency``, ``peak_memory``, ``model_size``) so
YAML configs and the CLI can say ``cost: latency``; a name of the form ``module:function`` is
a user's function, imported on demand.

``example_input`` is always a batch ``(N, ...)`` with ``N >= 1``; costs that count one forward
pass use its first item, so a cost never depends on the data loader's batch size.

The measured costs (latency, peak memory) live in :mod:`prunetune.budgets._measured`;
:mod:`prunetune.budgets.names` (``get_cost``, ``cost_names``) registers them with the rest.
"""

from __future__ import annotations

import abc
import copy
import inspect
import io
import math
import numbers
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch

from prunetune.budgets.errors import BudgetError
from prunetune.budgets.registry import Registry, import_path, source_path, split_path  # noqa: F401  (source_path: for callers)

__all__ = [
    "CallableCost",
    "CostFunction",
    "Macs",
    "ModelSize",
    "Params",
    "COSTS",
    "register_cost",
]


class CostFunction(abc.ABC):
    """One number that a model costs; smaller is cheaper.

    Subclasses set the class attributes below and implement :meth:`__call__`. Constructors
    take keyword options only, so ``get_cost(name, **options)`` can build any of them from a
    config. ``__call__`` must leave the model as it found it: same parameters, buffers,
    device and train/eval mode (measure on a deep copy when a forward pass is needed).

    Attributes:
        name: the registry name (set by :func:`register_cost`).
        unit: what the number counts, e.g. ``"MACs"``, ``"params"``, ``"ms"``, ``"bytes"``.
        monotone: a model with fewer channels never costs more. Searchers may rely on it to
            prune the profile space; measured costs that can break it (latency) say False.
        deterministic: two calls on the same model give the same number, so a value may be
            cached per profile.
        analytic: the value depends only on the architecture and input shape, not on weights
            or hardware, so it can be computed anywhere (e.g. on the driver, without a GPU).
        key_options: the options that change *what* is measured, which a budget's metric key
            names (None: all of them); protocol options such as repeats stay out of keys.
    """

    name: ClassVar[str]
    unit: ClassVar[str]
    monotone: ClassVar[bool]
    deterministic: ClassVar[bool]
    analytic: ClassVar[bool]
    key_options: ClassVar[tuple[str, ...] | None] = None

    @abc.abstractmethod
    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        """The cost of ``model`` on inputs shaped like ``example_input``."""

    def resolve(self) -> CostFunction:
        """Load what the cost needs before it is first called (a user's module), so a search
        fails before it writes anything; a BudgetError if that fails. Built-ins need nothing."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_C = TypeVar("_C", bound=type[CostFunction])
COSTS: Registry[type[CostFunction]] = Registry(
    "cost", error=BudgetError, hint=", or a user function given as 'module:function'"
)


def register_cost(name: str) -> Callable[[_C], _C]:
    """Class decorator: make a :class:`CostFunction` subclass available as ``name``.

    Sets ``cls.name``. A name may not contain ``":"`` (reserved for ``module:function``
    paths) and may be registered once.
    """
    if ":" in name or not name:
        raise ValueError(f"cost name {name!r} must be non-empty and contain no ':'")

    def decorate(cls: _C) -> _C:
        cls.name = name
        COSTS.add(name, cls)
        return cls

    return decorate


def _check_options(cls: type[CostFunction], options: dict[str, Any]) -> None:
    # Binding first, instead of catching TypeError from the constructor, keeps a bug inside
    # a constructor from being reported as the user's mistake.
    signature = inspect.signature(cls)
    try:
        signature.bind(**options)
    except TypeError:
        accepted = ", ".join(signature.parameters) or "none"
        raise BudgetError(f"cost {cls.name!r} got options {sorted(options)}; it accepts: {accepted}") from None


def first_item(example_input: torch.Tensor) -> torch.Tensor:
    """The first item of a batch, keeping the batch dimension (shape ``(1, ...)``)."""
    if example_input.ndim == 0 or example_input.shape[0] == 0:
        raise BudgetError(
            f"example_input must be a batch shaped (N, ...) with N >= 1, got shape {tuple(example_input.shape)}"
        )
    return example_input[:1]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@register_cost("macs")
class Macs(CostFunction):
    """Multiply-accumulates of one forward pass at batch size 1.

    Counted by ``torch_pruning.utils.count_ops_and_params`` on a deep copy in eval mode. Its
    convention counts a conv or linear layer's multiply-adds plus one op per bias element, and
    also elementwise ops (BatchNorm: 2 per element when affine, ReLU: 1 per output element,
    pooling: 1 per input element); unsupported modules count as zero.
    """

    unit = "MACs"
    monotone = True
    deterministic = True
    analytic = True

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        from torch_pruning.utils import count_ops_and_params

        sample = first_item(example_input).to(model_device(model))
        with torch.no_grad():
            macs, _ = count_ops_and_params(model, sample)
        return float(macs)


@register_cost("params")
class Params(CostFunction):
    """Number of parameters (shared parameters counted once; buffers not counted)."""

    unit = "params"
    monotone = True
    deterministic = True
    analytic = True

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        return float(sum(p.numel() for p in model.parameters()))


@register_cost("model_size")
class ModelSize(CostFunction):
    """Bytes of ``torch.save(model.state_dict())``: the checkpoint a user would ship."""

    unit = "bytes"
    monotone = True
    deterministic = True
    analytic = True

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        return float(buffer.getbuffer().nbytes)


class CallableCost(CostFunction):
    """A user's function ``fn(model, example_input, **options) -> number``, named by path.

    ``get_cost("mypkg.costs:energy")`` names ``energy`` in ``mypkg.costs``; options are passed
    to it as keyword arguments. Building one checks only the path's form: the module is
    imported by :meth:`resolve` (which :func:`~prunetune.budgets.spec.cost_functions` calls
    before a search writes anything and before a trial measures) or on the first call, so a
    config or manifest naming it parses where the module is not importable (``status``,
    ``export`` need no cost function). The function receives a deep copy of the model, so
    it may move it, switch its mode or run forwards freely. It must return a real, finite
    number (int, float, numpy scalar or a one-element tensor); anything else, or an exception,
    raises :class:`BudgetError` naming the function, which ends the trial with that message.
    We assume nothing about the function, so every flag is False.
    """

    name = "callable"
    unit = ""
    monotone = False
    deterministic = False
    analytic = False

    def __init__(self, *, path: str, options: dict[str, Any] | None = None) -> None:
        self.path = path
        _split_path(path)  # a malformed path is refused when built; the module is imported later
        self.options = dict(options or {})
        self._fn: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"CallableCost(path={self.path!r})"

    def __getstate__(self) -> dict[str, Any]:
        # A worker imports the function itself (its module may be shipped as a runtime env)
        # rather than unpickling a reference made on the driver.
        return {**self.__dict__, "_fn": None}

    def resolve(self) -> CallableCost:
        """Import the function and check it takes the options; a BudgetError otherwise."""
        if self._fn is None:
            fn = _import_callable(self.path)
            _check_call(fn, self.path, self.options)
            self._fn = fn
        return self

    @property
    def fn(self) -> Callable[..., Any]:
        """The user's function, imported on first use."""
        self.resolve()
        assert self._fn is not None
        return self._fn

    def __call__(self, model: torch.nn.Module, example_input: torch.Tensor) -> float:
        fn = self.fn
        try:
            value = fn(copy.deepcopy(model), example_input, **self.options)
        except Exception as error:
            raise BudgetError(f"cost function {self.path} raised {type(error).__name__}: {error}") from error
        return _as_finite_float(value, self.path)


def _split_path(path: str) -> tuple[str, str]:
    return split_path(path, kind="cost", form="module:function", error=BudgetError)


def _import_callable(path: str) -> Callable[..., Any]:
    fn = import_path(path, kind="cost", form="module:function", error=BudgetError)
    if not callable(fn):
        raise BudgetError(f"cost {path!r} is a {type(fn).__name__}, not a function")
    return fn


def _check_call(fn: Callable[..., Any], path: str, options: dict[str, Any]) -> None:
    """Catch a wrong option name when the budget is built, not in the middle of a trial."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature; they fail when called
        return
    try:
        signature.bind(None, None, **options)
    except TypeError as error:
        raise BudgetError(
            f"cost function {path}{signature} cannot be called as fn(model, example_input, **{options!r}): {error}"
        ) from None


def _as_finite_float(value: Any, path: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BudgetError(
            f"cost function {path} returned {value!r} ({type(value).__name__}); it must return a real number"
        )
    if not math.isfinite(value):
        raise BudgetError(f"cost function {path} returned {value!r}; it must be finite")
    return float(value)
