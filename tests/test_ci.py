"""The GitHub Actions workflow is valid (schemastore's schema for workflows, vendored in check-jsonschema, so no
network) and does what a team needs: the Conda environment from environment.yml, the tests, a small-sample pipeline
run of this commit and of main, and their metrics diff in the job summary; on macOS, the modern stack's fast tests and
small-sample run. `.ci/run` tests both stacks here, the modern one in a Debian trixie root (tools/test_modern.sh)."""
import os
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


def steps(workflow, job=None):
    return [s for name, j in workflow["jobs"].items() if job in (None, name) for s in j["steps"]]


def run_scripts(workflow, job=None) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow, job))


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
    scripts = run_scripts(workflow, "test")
    # `make env` builds the Conda environment from the stack's environment file when conda is on PATH; on Linux the
    # job pins the default stack (ubuntu-latest's glibc is new enough for the modern one)
    assert "make env" in scripts and workflow["jobs"]["test"]["env"]["STACK"] == "default"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"env create .*--file \$\(ENV_FILE\)", makefile)
    assert re.search(r"^ENV_FILE := environment\.yml$", makefile, re.M)
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


def test_macos_job_runs_the_modern_stack(workflow):
    job = workflow["jobs"]["macos"]
    assert job["runs-on"] == "macos-14"  # Apple Silicon
    uses = [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]
    assert "actions/checkout" in uses and "conda-incubator/setup-miniconda" in uses
    assert "STACK" not in job.get("env", {}), "macOS must get the modern stack by itself"
    cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache"))
    assert "environment.modern.yml" in cache["with"]["key"] and "requirements.modern.lock.txt" in cache["with"]["key"]
    scripts = run_scripts(workflow, "macos")
    assert 'test "$(sh tools/platform_stack.sh)" = modern' in scripts
    assert re.search(r"^make env$", scripts, re.M) and re.search(r"^make test-quick$", scripts, re.M)
    assert re.search(r"dvc exp run .*\$SMALL_SAMPLE", scripts) and '>> "$GITHUB_STEP_SUMMARY"' in scripts
    assert re.search(r"^ENV_FILE := environment\.modern\.yml$", (ROOT / "Makefile").read_text(), re.M)


def test_ci_run_tests_both_stacks():
    script = (ROOT / ".ci" / "run").read_text()
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True)
    assert re.search(r"^make test \|\| status=1$", script, re.M)
    assert re.search(r"^  make test-modern \|\| status=1$", script, re.M)
    assert re.search(r"^test-modern:\n\ttools/test_modern\.sh$", (ROOT / "Makefile").read_text(), re.M)


def test_modern_target_uses_the_workflow_small_sample(workflow):
    "The trixie-root run (tools/test_modern.sh) and the workflow use the same small sample, read from one place."
    subprocess.run(["bash", "-n", str(ROOT / "tools" / "test_modern.sh")], check=True)
    env = {k: v for k, v in os.environ.items() if k != "SMALL_SAMPLE"}
    out = subprocess.run([str(ROOT / "tools" / "test_modern.sh"), "--small-sample"], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert shlex.split(out) == shlex.split(workflow["env"]["SMALL_SAMPLE"])
