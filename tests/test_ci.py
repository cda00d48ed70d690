"""The GitHub Actions workflow is valid (schemastore's schema for workflows, vendored in check-jsonschema, so no
network) and does what a team needs: the Conda environment from environment.yml, the tests, a small-sample pipeline
run of this commit and of main, and their metrics diff in the job summary."""
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, run

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow):
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


def run_scripts(workflow) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow))


def check_schema(path):
    return run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)], ROOT,
               check=False)


def test_workflow_matches_the_github_workflow_schema():
    result = check_schema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_has_teeth(workflow, tmp_path):
    broken = yaml.safe_load(WORKFLOW.read_text())
    for job in broken["jobs"].values():
        del job["runs-on"]
    path = tmp_path / "ci.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_schema(path).returncode != 0


def test_workflow_structure(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["jobs"]
    for name, job in workflow["jobs"].items():
        assert job["runs-on"], name
        assert job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"pin actions to a major version: {step}"


def test_run_steps_are_valid_bash(workflow):
    for step in steps(workflow):
        if "run" in step:
            subprocess.run(["bash", "-n", "-c", step["run"]], check=True)


def test_workflow_does_what_a_team_needs(workflow):
    uses = [s["uses"].split("@")[0] for s in steps(workflow) if "uses" in s]
    assert "conda-incubator/setup-miniconda" in uses and "actions/checkout" in uses
    checkout = next(s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0, "main must be fetchable for the comparison"
    scripts = run_scripts(workflow)
    # `make env` builds the Conda environment from environment.yml when conda is on PATH
    assert "make env" in scripts
    assert re.search(r"env create .*--file environment\.yml", (ROOT / "Makefile").read_text())
    assert "make test" in scripts
    assert scripts.count("dvc exp run") == 2 and "origin/main" in scripts
    assert re.search(r"dvc metrics diff ci-main ci-this .*--md", scripts)
    assert '>> "$GITHUB_STEP_SUMMARY"' in scripts


def test_small_sample_overrides_name_existing_parameters(workflow):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    words = shlex.split(workflow["env"]["SMALL_SAMPLE"])
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "-S"]
    assert overrides and len(overrides) * 2 == len(words)
    for override in overrides:
        key, _ = override.split("=", 1)
        node = params
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} is not in params.yaml"
            node = node[part]
