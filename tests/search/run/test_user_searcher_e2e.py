"""A user's searcher named in YAML (``searcher: {name: "mysearch:Ladder"}``), run as a user
runs it: the ``prunetune`` script started in the folder that holds ``mysearch.py`` (the
script, unlike ``python -m``, does not put that folder on ``sys.path``), then ``prunetune
resume``, whose Tune restore unpickles the searcher from that module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

MODULE = '''
from prunetune.search.searchers import ProfileSearcher, SearcherOptions


class LadderOptions(SearcherOptions):
    ratios: list[float] = [0.5, 0.75]


class Ladder(ProfileSearcher):
    """Every group at one ratio per trial, down the list in order, then FINISHED."""

    Options = LadderOptions

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, options=options)
        self.proposed = 0

    def propose(self, trial_id):
        if self.proposed == len(self.options.ratios):
            return self.FINISHED
        self.proposed += 1
        return {"profile": {g.name: self.options.ratios[self.proposed - 1] for g in self.space.groups}}

    def extra_state(self):
        return {"proposed": self.proposed}

    def load_extra_state(self, state):
        self.proposed = state["proposed"]
'''


def _prunetune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "prunetune"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_a_user_searcher_named_in_yaml_runs_and_resumes(tiny_config, tmp_path):
    (tmp_path / "mysearch.py").write_text(MODULE)
    # Every fine-tune diverges at once: the trials end errored fast, and the search is left to resume.
    tiny_config.update(
        trials=2,
        tracking={"enabled": False},
        finetune={**tiny_config["finetune"], "lr": 1e12},
        searcher={"name": "mysearch:Ladder", "options": {"ratios": [0.5, 0.75]}},
    )
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(tiny_config))

    out = _prunetune("search", "search.yaml", cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]  # ran, and every trial diverged
    assert "2 trials with the mysearch:Ladder searcher" in out.stdout
    experiment = Path(tiny_config["storage_path"]) / "tiny"
    params = [json.loads(p.read_text()) for p in experiment.glob("trial_*/params.json")]
    # Sets only compare by inclusion, so sort each trial's ratios as a tuple.
    tried = sorted(tuple(sorted(set(p["profile"].values()))) for p in params)
    assert tried == [(0.5,), (0.75,)]  # the profiles the user's searcher proposed, one per trial

    resumed = _prunetune("resume", str(experiment), cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr[-3000:]  # restored, reran both trials, diverged again
    assert "resuming tiny: 2 trials with the mysearch:Ladder searcher" in resumed.stdout
    assert "ModuleNotFoundError" not in resumed.stderr and "cannot import" not in resumed.stderr
    assert len(list(experiment.glob("trial_*"))) == 2  # the same trials rerun, no new ones
