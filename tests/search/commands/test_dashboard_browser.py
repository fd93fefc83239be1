"""The MLflow UI in a real headless Chromium: the study, its search run and the trials nested
under it are on the page a user opens (``make test`` installs Debian's chromium if missing)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from prunetune.search.commands.ui import MODEL_TRAINING_VIEW
from tests.search.conftest import STUDY

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


def _browser_or_fail():
    """Chromium and Playwright, or a clear failure under `make test`/CI (plain pytest may skip)."""
    problem = None
    if not CHROMIUM.is_file():
        problem = (
            f"{CHROMIUM} is missing; `make test` installs it (apt-get install -y --no-install-recommends chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = (
            "the playwright package is missing; install the test extras: pip install -c constraints.txt -e '.[test]'"
        )
    if problem and (os.environ.get("CI") or os.environ.get("PRUNETUNE_REQUIRE_BROWSER")):
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


def test_mlflow_ui_shows_the_study_with_nested_trial_runs(mlflow_server, tracked_search, tmp_path):
    _browser_or_fail()
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(STUDY)
    (parent,) = client.search_runs(
        [experiment.experiment_id], "tags.`prunetune.search` = 's1' and tags.`prunetune.role` = 'search'"
    )
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    trial_names = sorted(run.info.run_name for run in children)
    runs_shot, artifacts_shot = tmp_path / "mlflow-ui-runs.png", tmp_path / "mlflow-ui-artifacts.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # The study's page in the model-training view (as `prunetune ui` links it) opens on its
            # runs, not on MLflow 3's GenAI overview and traces.
            page.goto(f"{mlflow_server}/#/experiments/{experiment.experiment_id}?{MODEL_TRAINING_VIEW}")
            row = page.locator(f'[role=row][row-id="{parent.info.run_id}"]').filter(has_text="s1").first
            expect(row).to_be_visible(timeout=60_000)
            assert "/runs" in page.url and "genai" not in page.url
            expect(page.get_by_text(STUDY).first).to_be_visible()
            assert page.get_by_text(trial_names[0]).count() == 0  # nested: hidden until expanded
            close_assistant = page.get_by_role("button", name="Close")
            if close_assistant.count():
                close_assistant.first.click()
            row.locator('button[data-component-id*="runnamecellrenderer"]').click()  # the run's expander
            for name in trial_names:
                expect(page.get_by_text(name, exact=True)).to_be_visible(timeout=30_000)
            page.screenshot(path=str(runs_shot))
            page.goto(f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}/artifacts")
            for name in ("frontier.csv", "frontier.json", "frontier.html", "frontier.png"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=60_000)
            page.get_by_text("frontier.png", exact=True).first.click()
            image = page.locator("img[alt='frontier.png']").first
            expect(image).to_be_visible(timeout=30_000)
            assert image.evaluate("img => img.naturalWidth") > 100  # the plot itself, served by MLflow
            page.screenshot(path=str(artifacts_shot))
            # The interactive frontier: MLflow shows the HTML artifact, whose plot loads its plotly.js.
            page.get_by_text("frontier.html", exact=True).first.click()
            chart = page.frame_locator("iframe").first.locator(".js-plotly-plot .scatterlayer").first
            expect(chart).to_be_visible(timeout=60_000)
        finally:
            browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    for shot in (runs_shot, artifacts_shot):
        assert shot.stat().st_size > 20_000
        shutil.copy(shot, ARTIFACTS / shot.name)
