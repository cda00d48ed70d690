"""`make stage NAME=...` scaffolds a stage that meets every rule the project's own stages meet, and runs in DVC."""
import json
import sys

import nbformat
import pytest
import yaml

from _project import link_env
from conftest import ROOT, copy_project, run

NAME = "explain"


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    "A project copy after `make stage NAME=explain` (on this environment: .venv links to it, nothing is installed)."
    project = copy_project(tmp_path_factory.mktemp("scaffold") / "project")
    link_env(project)
    before = sorted(p.name for p in (project / "nbs").glob("[0-9][0-9]_*.ipynb"))
    run(["make", "-o", ".venv/.installed", "stage", f"NAME={NAME}"], project)
    return project, before


def test_stage_files_are_written(scaffolded):
    project, before = scaffolded
    number = int(before[-1][:2]) + 1
    notebook = project / "nbs" / f"{number:02d}_{NAME}.ipynb"
    assert notebook.is_file()
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert list(stages)[-1] == NAME, "appended to the stages, before any later top-level key"
    stage = stages[NAME]
    assert stage["cmd"] == f"tools/in-venv ml-lifecycle run {NAME}" and stage["params"] == [NAME]
    assert f"nbs/{notebook.name}" in stage["deps"] and f"reports/notebooks/{notebook.name}" in stage["outs"]
    original = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    scaffolded_yaml = yaml.safe_load((project / "dvc.yaml").read_text())
    assert {k: v for k, v in scaffolded_yaml.items() if k != "stages"} == \
        {k: v for k, v in original.items() if k != "stages"}, "the rest of dvc.yaml is untouched"
    assert yaml.safe_load((project / "params.yaml").read_text())[NAME] == {"message": "replace with the stage's parameters"}
    assert (project / "src" / "ml_lifecycle" / "stages" / f"{NAME}.py").is_file(), "make stage exports the new module"


def test_stage_meets_the_project_rules(scaffolded, tmp_path, monkeypatch):
    "The project's own notebook and parameter tests, run inside the copy, now cover the new stage too."
    project, _ = scaffolded
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "tests/test_notebooks.py", "tests/test_params.py", "tests/test_catalog.py", "-k", "not test_notebook_checks_pass"],
                 project, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"[{NAME}]" in run([sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider",
                               "tests/test_notebooks.py"], project).stdout
    notebook = next((project / "nbs").glob(f"[0-9][0-9]_{NAME}.ipynb"))
    # The linked environment has another checkout installed: put this project's package first, as its own env would.
    run(f"PYTHONPATH={project / 'src'} nbdev-test {notebook.relative_to(project)}", project)  # its check cells pass
    run(["git", "add", "-A"], project)
    hooks = run([".venv/bin/pre-commit", "run", "--all-files"], project, check=False)  # clean, in sync, lint
    assert hooks.returncode == 0, hooks.stdout


@pytest.mark.integration
def test_stage_runs_in_dvc(scaffolded):
    project, _ = scaffolded
    run(f"PYTHONPATH={project / 'src'} dvc repro {NAME}", project)
    assert json.loads((project / "reports" / f"{NAME}.json").read_text()) == {
        "stage": NAME, "message": "replace with the stage's parameters"}
    executed = nbformat.read(next((project / "reports" / "notebooks").glob(f"*_{NAME}.ipynb")), as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert "up to date" in run(["dvc", "status", NAME], project).stdout


def test_existing_or_invalid_names_are_refused(tmp_path):
    project = copy_project(tmp_path / "project")
    for bad in ("problem", "Not-A-Name"):
        result = run([sys.executable, "tools/new_stage.py", bad], project, check=False)
        assert result.returncode == 2 and "error:" in result.stderr
    assert run(["git", "status", "--porcelain"], project).stdout == ""
