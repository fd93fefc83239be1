"""Small things a new user meets first: an empty model listing, a listing piped to `head`,
help text for every option of `finetune`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prunetune.search import cli


def test_models_with_no_match_says_so(capsys):
    assert cli.main(["models", "zzz*"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no model name matches 'zzz*'" in err and "`prunetune models`" in err


def test_models_piped_into_a_reader_that_leaves_ends_quietly():
    listing = subprocess.Popen(
        [sys.executable, "-m", "prunetune", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    listing.stdout.close()  # like `| head` exiting before the list is written
    err = listing.stderr.read().decode()
    assert listing.wait() == 0
    assert "BrokenPipeError" not in err and "Traceback" not in err, err


def test_every_finetune_option_has_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    text = capsys.readouterr().out
    assert "--epochs N" in text and "whole passes over the training set" in text


def test_train_base_prints_the_accuracy_it_reached(tiny_base, tmp_path, capsys):
    import yaml

    from tests.conftest import TINY

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "storage_path": str(tiny_base.parent.parent)}))
    # the session's base was trained under <tmp>/base0/, the path train-base derives is <storage>/base/
    (tiny_base.parent.parent / "base").mkdir(exist_ok=True)
    target = tiny_base.parent.parent / "base" / tiny_base.name
    if not target.exists():
        target.symlink_to(tiny_base)
    assert cli.main(["train-base", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"base checkpoint: {target}" in out
    accuracy = float(out.split("validation accuracy: ")[1].split()[0])
    assert 0.1 < accuracy <= 1.0
