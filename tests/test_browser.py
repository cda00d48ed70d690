"""JupyterLab in a real browser: open a stage notebook, run every cell, see the stage's output, save.

Debian's Chromium (`apt-get install chromium`, which .ci/run does) driven by Playwright (`playwright install` is never
run: it downloads a browser). JupyterLab starts as `make lab` does, on a copy of the project, because running the
notebook's last section writes the stage's reports into the project it runs in.

The screenshot goes to reports/screenshots/jupyterlab.png in this repository (git-ignored: the folder ignores itself).
"""
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

from _jupyter import jupyter_lab, request
from conftest import ROOT, copy_project

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))  # Debian's; another Chromium-based browser works
NOTEBOOK = "01_problem.ipynb"
SCREENSHOT = ROOT / "reports" / "screenshots" / "jupyterlab.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Render every cell (JupyterLab 4 renders only the visible ones by default) and fetch no news.
LAB_SETTINGS = {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM} (apt-get install -y chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
]


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def test_run_a_stage_notebook_in_jupyterlab(project, tmp_path):
    from playwright.sync_api import sync_playwright

    notebook = project / "nbs" / NOTEBOOK
    committed = notebook.read_bytes()
    n_code = sum(c["cell_type"] == "code" for c in json.loads(committed)["cells"])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    (SCREENSHOT.parent / ".gitignore").write_text("*\n")

    with jupyter_lab(project, tmp_path / "jupyter", lab_settings=LAB_SETTINGS) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            page.wait_for_selector(".jp-Notebook")
            page.wait_for_function("n => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === n",
                                   arg=n_code)  # cells render progressively
            # the kernel has started and the page is connected to it, before anything runs
            wait_until(lambda: any(s["kernel"]["execution_state"] == "idle" for s in request(lab, "GET", "sessions")
                                   if s["path"].endswith(NOTEBOOK)), 120, "the notebook's kernel")
            page.wait_for_selector(".jp-StatusBar-Widget:has-text('| Idle')")

            page.locator(".lm-MenuBar-item", has_text="Run").first.click()  # Run > Run All Cells, as a person would
            page.locator("li[data-command='runmenu:run-all']").click()
            # every code cell has run when each input prompt shows an execution count: [1], [2], ...
            page.wait_for_function(
                """n => { const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                          return p.length === n && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
                arg=n_code)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")

            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()
            outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            assert "Traceback" not in outputs and "Error" not in outputs
            assert "Problem definition" in outputs, outputs[:2000]

            # Save as a person would. The file on disk stays clean: same bytes as committed, so `dvc repro` would
            # not rerun the stage; the browser keeps showing the outputs.
            mtime = notebook.stat().st_mtime_ns
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Control+s")
            wait_until(lambda: notebook.stat().st_mtime_ns != mtime, 30, "the notebook to be saved")
            time.sleep(0.5)
            assert notebook.read_bytes() == committed
            assert page.locator(".jp-OutputArea-output", has_text="Problem definition").count() >= 1

            card = page.locator(".jp-OutputArea-output", has_text="Problem definition").first
            card.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT))
        except Exception:
            if browser.contexts and browser.contexts[0].pages:
                browser.contexts[0].pages[0].screenshot(path=str(SCREENSHOT.with_name("jupyterlab-failure.png")))
            raise
        finally:
            browser.close()

    # the notebook's "Run the stage" section wrote the stage's outputs into the copy, as `dvc repro` would
    assert "Problem definition" in (project / "reports" / "problem.md").read_text()
    assert SCREENSHOT.stat().st_size > 10_000
