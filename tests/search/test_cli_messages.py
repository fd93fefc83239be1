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
    listing = subprocess.Popen([sys.executable, "-m", "prunetune", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.close()  # like `| head` exiting before the list is written
    err = listing.stderr.read().decode()
    assert listing.wait() == 0
    assert "BrokenPipeError" not in err and "Traceback" not in err, err


def test_every_finetune_option_has_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    text = capsys.readouterr().out
    assert "--epochs N" in text and "whole passes over the training set" in text
