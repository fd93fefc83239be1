"""The command line as a user meets it: exit codes, one-line errors, JSON reports.

Most commands run in-process through ``cli.main`` (what the ``prunetune`` script calls); one
usage error and ``--help`` also run as real subprocesses, for the exit code and stderr a shell
sees.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from prunetune.search.cli import main


def prunetune(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``prunetune ARGS`` in this process: the exit code, stdout and stderr."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_resnet20_json_lists_groups_and_costs(capsys):
    code, out, err = run_main(capsys, "inspect", "resnet20", "--input-size", "32", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["macs"] > 4e7 and report["params"] > 2.5e5
    assert report["groups"][0] == {"name": "stem.0", "channels": 16, "modules": report["groups"][0]["modules"]}
    assert len(report["groups"]) == 12


def test_inspect_torchvision_resnet18_at_224(capsys):
    code, out, err = run_main(capsys, "inspect", "resnet18", "--input-size", "224", "--json")
    report = json.loads(out)
    assert code == 0 and report["macs"] > 1.8e9 and report["groups"][0]["name"] == "conv1", err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_typo_key_exits_2_with_one_line_and_writes_nothing(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"modle": {"name": "resnet20"}, "storage_path": str(tmp_path / "r")}))
    out = prunetune("search", str(config))  # a real process: the exit code and stderr a shell sees
    assert out.returncode == 2, (out.stdout, out.stderr)
    line = one_line(out.stderr)
    assert "'modle'" in line and "did you mean 'model'" in line
    assert not (tmp_path / "r").exists()


def test_unknown_model_exits_2_naming_it(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "resnet21"}, "storage_path": str(tmp_path / "r")}))
    code, _, err = run_main(capsys, "search", str(config))
    assert code == 2
    line = one_line(err)
    assert "resnet21" in line and "resnet20" in line
    assert not (tmp_path / "r").exists()


def test_steps_and_epochs_together_exit_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"finetune": {"steps": 100}, "storage_path": str(tmp_path / "r")}))
    code, _, err = run_main(capsys, "search", str(config), "--set", "finetune.epochs=2")
    assert code == 2
    line = one_line(err)
    assert "finetune.steps or finetune.epochs, not both" in line and "--set finetune.steps=null" in line
    assert not (tmp_path / "r").exists()


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["serach"])
    assert exit.value.code == 2 and "invalid choice: 'serach'" in capsys.readouterr().err


def test_help_lists_commands():
    out = prunetune("--help")
    assert out.returncode == 0 and "search" in out.stdout and "inspect" in out.stdout
