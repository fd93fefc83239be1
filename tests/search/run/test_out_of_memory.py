"""Ray's memory monitor killing a search's trial workers as they start makes Tune's fit raise
(seen on a 24 GB machine running a test suite beside a search): the user gets one line with
the memory Ray measured and how to resume, exit code 1, never Tune's traceback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import ray.exceptions

from prunetune.budgets.errors import MachineError
from prunetune.search.run.tuner import memory_errors

RAY_SAYS = (
    "2 worker(s) were killed due to the node running low on memory. Memory on the node (IP: 127.0.0.1, "
    "ID: 1a44) was 22.31GB used / 23.54GB limit (0.947743)\nOOM kill reason: Memory usage ..."
)


def prepared(tmp_path):
    return SimpleNamespace(config=SimpleNamespace(concurrency=2), experiment_dir=tmp_path / "demo")


def test_workers_killed_for_memory_are_one_line_naming_the_memory_and_the_resume(tmp_path):
    with pytest.raises(MachineError) as caught, memory_errors(prepared(tmp_path)):
        try:
            raise ray.exceptions.OutOfMemoryError(RAY_SAYS)
        except ray.exceptions.OutOfMemoryError as err:  # how Tune's actor manager re-raises it
            raise RuntimeError(f"Caught unexpected exception: {err}") from err
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "Ray stopped trial workers: the node ran low on memory (22.31GB used / 23.54GB limit); free memory "
        f"or lower concurrency (now 2), then resume with `prunetune resume {tmp_path / 'demo'}`"
    )


def test_other_runtime_errors_pass_through(tmp_path):
    with pytest.raises(RuntimeError, match="something else"), memory_errors(prepared(tmp_path)):
        raise RuntimeError("something else")


def test_the_cli_prints_it_as_one_line_and_exits_1(monkeypatch, capsys):
    from prunetune.search import cli

    def fail(_args):
        raise MachineError("Ray stopped trial workers: the node ran low on memory")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: SimpleNamespace(func=fail))
    assert cli.main(["search"]) == 1
    assert capsys.readouterr().err == "prunetune: error: Ray stopped trial workers: the node ran low on memory\n"
