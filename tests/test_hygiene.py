"""Notebook hygiene for a team: the JupyterLab save hook, the pre-commit hooks, and the notebook merge/diff drivers.

The save hook is what keeps `dvc repro` honest for people who explore in JupyterLab: a stage notebook that was run
and saved, but not edited, must keep the bytes (and so the DVC hash) it was committed with.
"""
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from _jupyter import jupyter_lab, request
from _project import link_env
from conftest import ROOT, copy_project, run

NOTEBOOK = "01_problem.ipynb"
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


@pytest.fixture(autouse=True)
def pre_commit_home(tmp_path_factory, monkeypatch):
    "pre-commit keeps its (tiny, for local hooks) store in a temporary folder, not in ~/.cache."
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path_factory.getbasetemp() / "pre-commit-home"))


def with_outputs(nb: dict) -> dict:
    "The notebook as JupyterLab sends it after running every cell: outputs, counts, volatile metadata."
    nb = json.loads(json.dumps(nb))
    for n, cell in enumerate(nb["cells"], 1):
        cell["source"] = "".join(cell["source"])  # the browser sends sources as one string
        if cell["cell_type"] == "code":
            cell["execution_count"] = n
            cell["metadata"].update({"execution": {"iopub.execute_input": "2026-01-01T00:00:00Z"}, "scrolled": True})
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"output {n}\n"},
                               {"output_type": "execute_result", "execution_count": n, "metadata": {},
                                "data": {"text/plain": f"<object at 0x7f{n:04x}>"}}]
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    return nb


def save(lab, path: str, nb: dict):
    return request(lab, "PUT", f"contents/{path}", {"type": "notebook", "format": "json", "content": nb})


def dvc_status(project: Path, stage: str) -> dict:
    return json.loads(run(["dvc", "status", "--json", stage], project).stdout or "{}")


# ---------------------------------------------------------------- JupyterLab save hook

@pytest.fixture(scope="module")
def lab_project(tmp_path_factory):
    """A copy of the project, its `problem` stage run by DVC (so dvc.lock records the notebook's hash), after the check
    stage it depends on (a project made from the template has no reports yet), served by JupyterLab exactly as
    `make lab` starts it."""
    project = copy_project(tmp_path_factory.mktemp("lab") / "project")
    run(["dvc", "repro", "problem"], project)
    assert dvc_status(project, "problem") == {}, "the stage is up to date before anyone opens JupyterLab"
    with jupyter_lab(project, tmp_path_factory.mktemp("jupyter")) as lab:
        yield project, lab


def test_make_lab_uses_the_project_server_config():
    recipe = re.search(r"(?m)^lab:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text()).group(1)
    assert "jupyter lab --notebook-dir=nbs --config=jupyter_server_config.py" in recipe
    assert "pre_save_hook" in (ROOT / "jupyter_server_config.py").read_text()


def test_saving_a_run_notebook_keeps_its_committed_bytes(lab_project):
    project, lab = lab_project
    path = project / "nbs" / NOTEBOOK
    committed = path.read_bytes()

    answer = save(lab, NOTEBOOK, with_outputs(json.loads(committed)))

    assert answer["type"] == "notebook"
    assert path.read_bytes() == committed, "a saved notebook must be written exactly as committed (clean)"
    assert run(["git", "status", "--porcelain", "--", f"nbs/{NOTEBOOK}"], project).stdout == ""
    assert dvc_status(project, "problem") == {}, "dvc sees no change: `dvc repro` would not rerun the stage"


def test_a_real_edit_is_saved_clean_and_is_a_change_for_dvc(lab_project):
    project, lab = lab_project
    path = project / "nbs" / NOTEBOOK
    committed = path.read_bytes()
    nb = with_outputs(json.loads(committed))
    tagged = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    tagged["source"] += "\n# an edit a person made"
    try:
        save(lab, NOTEBOOK, nb)
        saved = nbformat.read(path, as_version=4)
        assert "# an edit a person made" in path.read_text()
        assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in saved.cells)
        assert [c.metadata.get("tags") for c in saved.cells if c.metadata] == [["parameters"]], "tags kept"
        assert set(saved.metadata) == {"kernelspec"}
        changed = dvc_status(project, "problem").get("problem", [])
        assert {"changed deps": {f"nbs/{NOTEBOOK}": "modified"}} in changed, "a real edit reruns the stage"
    finally:
        path.write_bytes(committed)


def test_notebooks_outside_the_stage_folders_are_saved_as_sent(lab_project):
    "The hook touches only the project's notebooks: scratch folders (`_*`, as nbdev skips them) keep outputs."
    project, lab = lab_project
    (project / "nbs" / "_scratch").mkdir(exist_ok=True)
    save(lab, f"_scratch/{NOTEBOOK}", with_outputs(json.loads((project / "nbs" / NOTEBOOK).read_text())))
    saved = nbformat.read(project / "nbs" / "_scratch" / NOTEBOOK, as_version=4)
    assert any(c.get("outputs") for c in saved.cells) and "language_info" in saved.metadata


# ---------------------------------------------------------------- pre-commit hooks

def test_pre_commit_config_runs_the_project_tools_locally():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {"clean-notebooks", "src-in-sync", "ruff"} <= set(hooks)
    assert all(h["language"] == "system" and h["entry"].startswith("tools/in-venv ") for h in hooks.values())
    run(["pre-commit", "validate-config", ".pre-commit-config.yaml"], ROOT)


@pytest.fixture
def hooked(tmp_path):
    "A project copy with `make hooks` run in it (on this environment: .venv links to it, nothing is installed)."
    project = copy_project(tmp_path / "project")
    link_env(project)
    run(["make", "-o", ".venv/.installed", "hooks"], project)
    return project


def test_hooks_pass_on_the_project(hooked):
    result = run([".venv/bin/pre-commit", "run", "--all-files"], hooked, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Passed") == 3


def test_a_dirty_notebook_is_cleaned_and_the_commit_stopped(hooked):
    path = hooked / "nbs" / NOTEBOOK
    committed = path.read_bytes()
    path.write_text(json.dumps(with_outputs(json.loads(committed)), indent=2))
    run(["git", "add", "-A"], hooked)

    first = run([*GIT, "commit", "-m", "notebook with outputs"], hooked, check=False)  # the installed hook runs
    assert first.returncode != 0 and "files were modified by this hook" in first.stdout + first.stderr
    assert path.read_bytes() == committed, "the hook wrote the clean notebook, tags and all"

    run(["git", "add", "-A"], hooked)
    assert run(["git", "status", "--porcelain"], hooked).stdout == "", "nothing left to commit once clean"


def test_src_out_of_sync_is_caught_and_exported(hooked):
    path = hooked / "nbs" / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.source.startswith("#| export") and "def " in c.source)
    cell.source += "\n\ndef added_by_a_person() -> int:\n    return 1"
    nbformat.write(nb, path)
    run([sys.executable, "tools/clean_notebooks.py", str(path)], hooked)
    run(["git", "add", "-A"], hooked)

    result = run([".venv/bin/pre-commit", "run", "src-in-sync"], hooked, check=False)
    assert result.returncode == 1 and "src/ml_lifecycle/stages/problem.py" in result.stdout
    assert "def added_by_a_person" in (hooked / "src" / "ml_lifecycle" / "stages" / "problem.py").read_text()
    run(["git", "add", "-A"], hooked)
    assert run([".venv/bin/pre-commit", "run", "src-in-sync"], hooked, check=False).returncode == 0


def test_lint_catches_an_undefined_name(hooked):
    (hooked / "tools" / "broken.py").write_text("def f():\n    return undefined_name\n")
    run(["git", "add", "-A"], hooked)
    result = run([".venv/bin/pre-commit", "run", "ruff"], hooked, check=False)
    assert result.returncode == 1 and "F821" in result.stdout


# ---------------------------------------------------------------- merge and diff drivers

def edit_first_line(path: Path, cell: int, text: str):
    nb = nbformat.read(path, as_version=4)
    lines = nb.cells[cell].source.split("\n")
    nb.cells[cell].source = "\n".join([text, *lines[1:]])
    nbformat.write(nb, path)
    run([sys.executable, "tools/clean_notebooks.py", str(path)], path.parents[1])


def test_make_hooks_installs_hook_and_drivers(hooked):
    assert "pre-commit" in (hooked / ".git" / "hooks" / "pre-commit").read_text()
    config = lambda key: run(["git", "config", "--get", key], hooked).stdout.strip()  # noqa: E731
    assert config("merge.jupyternotebook.driver") == "tools/in-venv nbdev-merge %O %A %B %P"
    assert config("diff.jupyternotebook.command") == "tools/in-venv nbdev-diff-driver"
    attrs = run(["git", "check-attr", "merge", "diff", "--", f"nbs/{NOTEBOOK}"], hooked).stdout
    assert "merge: jupyternotebook" in attrs and "diff: jupyternotebook" in attrs


@pytest.mark.filterwarnings("ignore:Cell is missing an id field", "ignore:Non-unique cell id")
def test_conflicting_notebook_merge_leaves_a_valid_notebook(hooked):
    "Two branches change the same line of a notebook: nbdev-merge marks the conflict in cells, not in the JSON."
    path = hooked / "nbs" / NOTEBOOK
    run([*GIT, "checkout", "-qb", "theirs"], hooked)
    edit_first_line(path, 0, "# Problem: their title")
    run([*GIT, "commit", "-qam", "theirs"], hooked)
    run([*GIT, "checkout", "-q", "-"], hooked)
    edit_first_line(path, 0, "# Problem: our title")
    run([*GIT, "commit", "-qam", "ours"], hooked)

    merge = run([*GIT, "merge", "theirs", "-m", "merge"], hooked / "nbs", check=False)  # from a subfolder too
    assert merge.returncode != 0 and "CONFLICT" in merge.stdout
    nb = nbformat.read(path, as_version=4)  # still a notebook that JupyterLab opens
    sources = [c.source for c in nb.cells]
    assert "# Problem: our title" in sources[1] and "# Problem: their title" in sources[3]
    assert sources[0].startswith("`<<<<<<<") and sources[2] == "`=======`"


def test_notebook_diff_is_shown_cell_by_cell(hooked):
    edit_first_line(hooked / "nbs" / NOTEBOOK, 0, "# Problem: a new title")
    diff = run(["git", "diff"], hooked / "nbs").stdout
    assert diff.startswith(f"# nbs/{NOTEBOOK}") and "a new title" in diff and '"cell_type"' not in diff
    raw = run(["git", "diff", "--no-ext-diff"], hooked).stdout
    assert '"# Problem: a new title\\n"' in raw
