"""What a search prints while it runs: one compact live view instead of Tune's tables.

:class:`LiveView` is the Tune progress reporter of every search. It shows one line: trials done,
running, errored and left, the best accuracy so far among trials that met every budget (and
its cost), the elapsed time and an ETA. On a terminal the line is redrawn in place; in a log
or CI it is a plain line, printed when something changed and at most every
:data:`LOG_PERIOD_S`. Each errored trial gets one line with its reason and where its full log
is. The view needs Tune's legacy output engine (the new one drops any reporter), which
:func:`set_mode` selects; it also keeps a local Ray's workers from echoing their log lines
("Checkpoint successfully created ...") into the driver's console. This module imports no
Ray: :func:`set_mode` must run before Ray is imported.

Modes (``prunetune search --verbose`` / ``--quiet``), kept in the environment so a restored
Tuner's unpickled reporter sees them too: ``live`` (the default), ``quiet`` (nothing until the
result) and ``verbose`` (Tune's own output, unfiltered). :func:`was_interrupted` says whether
Ctrl-C stopped the run (Tune catches it, saves its state and returns normally).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.report import TrialReport

MODE_ENV = "PRUNETUNE_CONSOLE"
MODES = ("live", "quiet", "verbose")
LOG_PERIOD_S = 30.0  # a plain-line view prints at least this often while nothing changes
TTY_PERIOD_S = 1.0
LOOK_S = 0.25  # the live view looks at the trials at most this often (each look reads them all)
# Tune's lines that the live view replaces: a traceback per errored trial (the view prints one
# line and the log's path), "Resume experiment with: Tuner.restore(...)" (prunetune resume is
# the way) and the incomplete-trials list of an interrupted run.
_REPLACED = (
    "Trial task failed for trial",
    "Resume experiment with",
    "Trials did not complete",
    "Experiment has been interrupted",
    "Stop signal received",  # Ctrl-C or SIGTERM: the search says how to resume, once
    "Failed to fetch metrics for",  # a trial stopped before its first report: status says so
)
_INTERRUPTED = threading.Event()
_SIGNAL: list[int] = []  # the signal that stopped the run (SIGINT or SIGTERM)


def set_mode(mode: str) -> None:
    """Choose what a search in this process prints (see the module doc); call before Ray runs."""
    assert mode in MODES, mode
    os.environ[MODE_ENV] = mode
    _INTERRUPTED.clear()
    _SIGNAL.clear()
    if mode == "verbose":
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        os.environ.pop("RAY_LOG_TO_DRIVER", None)
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's legacy engine: the one that calls our reporter
    os.environ["RAY_LOG_TO_DRIVER"] = "0"  # read when Ray is imported; a joined cluster still echoes
    for name in (
        "ray.tune",
        "ray.tune.tune",
        "ray.tune.execution.tune_controller",
        "ray.tune.analysis.experiment_analysis",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Replaced) for f in logger.filters):
            logger.addFilter(_Replaced())


def mode() -> str:
    return os.environ.get(MODE_ENV, "live")


def was_interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) or SIGTERM stopped the search that ran last in this process."""
    return _INTERRUPTED.is_set()


def interrupting_signal() -> int:
    """The signal that stopped the search (SIGINT unless SIGTERM did)."""
    return _SIGNAL[0] if _SIGNAL else signal.SIGINT


class _Replaced(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return mode() == "verbose" or not str(record.getMessage()).startswith(_REPLACED)


def _chain_sigint() -> None:
    """Note Ctrl-C, then let Tune's handler (installed just before) stop the run gracefully.
    SIGTERM (a scheduler, ``kill``, a container stopping) does the same: without this, Ray's
    own handler aborts the driver with a native crash dump and no resume hint."""
    if threading.current_thread() is not threading.main_thread():
        return
    tune_handler = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        _INTERRUPTED.set()
        if not _SIGNAL:
            _SIGNAL.append(signum)
        if callable(tune_handler):
            tune_handler(signal.SIGINT, frame)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class LiveView:
    """Tune's progress reporter for a search (the legacy ``ray.tune.ProgressReporter`` API:
    ``setup``, ``should_report``, ``report``; Tune duck-types it). ``cost`` is the frontier cost
    shown beside the best accuracy; ``total`` the configured trial count (Tune's own sample
    count when None)."""

    def __init__(self, cost: str, total: int | None = None) -> None:
        self.cost, self.total = cost, total
        self._start = time.time()
        self._last_line, self._last_time = "", 0.0
        self._reported_errors: set[str] = set()
        self._last_look = float("-inf")

    def __getstate__(self) -> dict:
        return dict(self.__dict__)  # plain values only: restored with the experiment

    def setup(self, start_time: float | None = None, total_samples: int | None = None, **_info) -> None:
        self._start = start_time or time.time()
        self._last_look = float("-inf")  # a monotonic clock reading: not carried across processes
        if self.total is None and total_samples and total_samples < sys.maxsize:
            self.total = total_samples
        _chain_sigint()

    def should_report(self, trials: Sequence, done: bool = False) -> bool:
        # Tune asks after every step of its event loop; looking at every trial each time would
        # cost more per trial the longer the search runs, so it looks at most every LOOK_S.
        if mode() != "live":
            return False
        if done:
            return True
        now = time.monotonic()
        if now - self._last_look < LOOK_S:
            return False
        self._last_look = now
        errored = any(t.status == "ERROR" and t.trial_id not in self._reported_errors for t in trials)
        period = TTY_PERIOD_S if self._tty else LOG_PERIOD_S
        changed = self.status_line(trials) != self._last_line
        return done or errored or time.time() - self._last_time >= period or (changed and self._tty)

    @property
    def _tty(self) -> bool:
        return sys.stdout.isatty()

    def report(self, trials: Sequence, done: bool, *sys_info: str) -> None:
        for trial in trials:
            if trial.status == "ERROR" and trial.trial_id not in self._reported_errors:
                self._reported_errors.add(trial.trial_id)
                self._write(error_line(trial), final=True)
        line = self.status_line(trials)
        if self._tty or line != self._last_line or done or time.time() - self._last_time >= LOG_PERIOD_S:
            self._write(line, final=done or not self._tty)
        self._last_line, self._last_time = line, time.time()

    def _write(self, line: str, *, final: bool) -> None:
        if self._tty:  # redraw the one live line in place; a final line stays
            sys.stdout.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def status_line(self, trials: Sequence) -> str:
        """``trials 5 done, 2 running, 1 errored, 4 left | best feasible 0.9417 at 35.2% macs |
        1:02 elapsed, ETA 1:30``"""
        counts = {s: sum(t.status == s for t in trials) for s in ("TERMINATED", "RUNNING", "ERROR")}
        done, running, errored = counts["TERMINATED"], counts["RUNNING"], counts["ERROR"]
        total = max(self.total or len(trials), len(trials))
        left = max(0, total - done - errored - running)
        elapsed = time.time() - self._start
        finished = done + errored
        eta = f", ETA {_duration(elapsed / finished * (total - finished))}" if finished and total > finished else ""
        return (
            f"trials {done} done, {running} running, {errored} errored, {left} left | {best_text(trials, self.cost)} "
            f"| {_duration(elapsed)} elapsed{eta}"
        )


def best_text(trials: Sequence, cost: str) -> str:
    """The best accuracy among finished trials that met every budget, with its cost."""
    reports = [
        TrialReport.read(t.last_result) for t in trials if t.status == "TERMINATED" and R.is_finished(t.last_result)
    ]
    feasible = [r for r in reports if r.feasible]
    if not feasible:
        return "no feasible trial yet"
    best = max(feasible, key=lambda r: r.accuracy)
    relative = best.relative.get(cost)
    where = f"{relative:.1%} {cost}" if relative is not None else f"{best.cost(cost):,.0f} {cost}"
    return f"best feasible {best.accuracy:.4f} at {where}"


def error_line(trial) -> str:
    """``errored trial_<id>: <last line of its error> (log: <path>)``: the reason read from
    Tune's copy of ``error.txt`` now, the path where it lies in the experiment folder (Tune's
    driver copy moves there when the run ends)."""
    from prunetune.search.store.trials import last_line

    staged = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    final = Path(trial.path) / "error.txt" if getattr(trial, "path", None) else staged
    try:
        reason = last_line(next(p for p in (staged, final) if p and p.is_file()).read_text())
    except (OSError, StopIteration):
        reason = last_line(getattr(trial, "error_msg", "") or "failed (no error.txt)")
    return f"errored trial_{trial.trial_id}: {reason} (log: {final})"
