"""`ml-lifecycle check` runs before every stage: a wrong parameter stops the pipeline at its first stage, named."""
import subprocess

import pytest

from conftest import copy_project, run, set_params


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    "A project copy as a clone has it: no data yet, so the check must accept what earlier stages will write."
    return copy_project(tmp_path_factory.mktemp("check") / "project")


def test_the_committed_params_pass_the_check_before_any_data_exists(fresh):
    result = run("ml-lifecycle check", fresh)
    assert "meets the contracts of all" in result.stdout


@pytest.mark.parametrize("changes, stage, field", [
    ({("evaluate", "segments"): ["plan", "tier"]}, "evaluate", "evaluate.segments"),
    pytest.param({("gather", "events", "path"): "data/elsewhere/*.parquet"}, "gather", "gather.events.path",
                 marks=pytest.mark.demo),   # the demo's event log source
    ({("select", "n_iter"): 0}, "select", "select.n_iter"),
    ({("score", "batch"): "data/new/batch.csv"}, "score", "score.batch"),
])
def test_a_wrong_parameter_is_named_by_the_check(fresh, tmp_path, changes, stage, field):
    project = copy_project(tmp_path / "project")
    set_params(project, changes)
    result = run("ml-lifecycle check", project, check=False)
    assert result.returncode == 1
    assert f"stage '{stage}'" in result.stderr and f"field '{field}'" in result.stderr, result.stderr


@pytest.mark.integration
def test_dvc_repro_stops_at_its_first_stage_on_a_later_stages_parameter(tmp_path):
    project = copy_project(tmp_path / "project")
    set_params(project, {("evaluate", "segments"): ["plan", "tier"]})
    result = run("dvc repro", project, check=False)
    assert result.returncode != 0 and "field 'evaluate.segments'" in result.stdout + result.stderr
    ran = [line for line in result.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'check':"], ran
    assert not (project / "reports" / "notebooks" / "01_problem.ipynb").exists(), "the check runs before the notebook"


@pytest.mark.integration
def test_dvc_from_the_environment_runs_stages_without_activating_it(tmp_path):
    "The README offers `.venv/bin/dvc repro` as well as an activated environment: stage commands must not need PATH."
    from _project import link_env
    project = copy_project(tmp_path / "project")
    link_env(project)
    result = subprocess.run([".venv/bin/dvc", "repro", "problem"], cwd=project, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "reports" / "notebooks" / "01_problem.ipynb").is_file()


@pytest.mark.integration
@pytest.mark.demo
def test_a_refused_parameter_leaves_every_output_of_the_last_run_in_place(tiny_copy):
    """DVC deletes a stage's outputs before it reruns the stage. A typo in select's section would otherwise delete
    select's outputs (its reports are not in the DVC cache) before select's own command refused it: the check stage,
    upstream of every stage, refuses it first."""
    before = {p: p.read_bytes() for p in (tiny_copy / "models").iterdir() if p.is_file()}
    set_params(tiny_copy, {("select", "n_iters"): 5})
    result = run("dvc repro", tiny_copy, check=False)
    assert result.returncode != 0 and "field 'select.n_iters'" in result.stderr and "did you mean 'n_iter'?" in result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("Running stage")] == ["Running stage 'check':"]
    assert {p: p.read_bytes() for p in (tiny_copy / "models").iterdir() if p.is_file()} == before
    assert (tiny_copy / "reports/selection.md").is_file() and (tiny_copy / "reports/notebooks/07_select.ipynb").is_file()
    assert "deleted" not in run("dvc status", tiny_copy).stdout
