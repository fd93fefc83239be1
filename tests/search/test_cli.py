"""The command line as a user meets it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml


def prunetune(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunetune", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_inspect_resnet20_json_lists_groups_and_costs():
    out = prunetune("inspect", "resnet20", "--input-size", "32", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["macs"] > 4e7 and report["params"] > 2.5e5
    assert report["groups"][0] == {"name": "stem.0", "channels": 16, "modules": report["groups"][0]["modules"]}
    assert len(report["groups"]) == 12


def test_inspect_torchvision_resnet18_at_224():
    out = prunetune("inspect", "resnet18", "--input-size", "224", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["macs"] > 1.8e9 and report["groups"][0]["name"] == "conv1"


def _refused(out) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    return lines[0]


def test_typo_key_exits_2_with_one_line_and_writes_nothing(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"modle": {"name": "resnet20"}, "storage_path": str(tmp_path / "r")}))
    line = _refused(prunetune("search", str(config)))
    assert "'modle'" in line and "did you mean 'model'" in line
    assert not (tmp_path / "r").exists()


def test_unknown_model_exits_2_naming_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "resnet21"}, "storage_path": str(tmp_path / "r")}))
    line = _refused(prunetune("search", str(config)))
    assert "resnet21" in line and "resnet20" in line
    assert not (tmp_path / "r").exists()


def test_help_lists_commands():
    out = prunetune("--help")
    assert out.returncode == 0 and "search" in out.stdout and "inspect" in out.stdout
