"""Notebooks are the source: committed clean, in sync with src/, tagged for papermill, and their checks pass."""
import ast
import filecmp

import nbformat
import pytest
import yaml

from conftest import ROOT, copy_project, run

STAGES = {name: stage for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()
          if name != "check"}   # the pipeline's first stage runs `ml-lifecycle check`, no notebook
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
STAGE_NOTEBOOKS = {stage: next((ROOT / "nbs").glob(f"[0-9][0-9]_{stage}.ipynb")) for stage in STAGES}


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("src") / "project")


def test_src_is_in_sync_with_notebooks(source_copy):
    run("nbdev-export", source_copy)
    src = sorted(p.relative_to(source_copy) for p in (source_copy / "src").rglob("*.py"))
    assert src == sorted(p.relative_to(ROOT) for p in (ROOT / "src").rglob("*.py") if "__pycache__" not in p.parts)
    changed = [str(p) for p in src if not filecmp.cmp(source_copy / p, ROOT / p, shallow=False)]
    assert not changed, f"src/ differs from what nbdev-export writes; run `make export`: {changed}"


def test_notebooks_are_clean(source_copy):
    run("python tools/clean_notebooks.py", source_copy)   # the one rule: make export, the save hook, pre-commit
    changed = [nb.name for nb in NOTEBOOKS if not filecmp.cmp(source_copy / "nbs" / nb.name, nb, shallow=False)]
    assert not changed, f"tools/clean_notebooks.py changes these notebooks; run `make export`: {changed}"
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, nb_path.name
            assert set(cell.metadata) <= {"tags"}, (nb_path.name, dict(cell.metadata))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_notebook_has_one_papermill_parameters_cell(stage):
    nb = nbformat.read(STAGE_NOTEBOOKS[stage], as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{STAGE_NOTEBOOKS[stage].name} must have exactly one cell tagged 'parameters'"
    assigned = {t.id for node in ast.parse(nb.cells[tagged[0]].source).body for t in node.targets}
    assert assigned == {"params_file"}
    later = "\n".join(c.source for c in nb.cells[tagged[0] + 1:] if c.cell_type == "code")
    assert f'stage_params("{stage}", params_file' in later, "the stage must read params through params_file"
    assert STAGES[stage]["cmd"] == f"tools/in-venv ml-lifecycle run {stage}"


def test_every_stage_notebook_narrates_defines_and_runs():
    for stage, path in STAGE_NOTEBOOKS.items():
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name
        assert any(c.cell_type == "markdown" and c.source.strip() == "## Run the stage" for c in nb.cells), path.name
        assert any(c.source.startswith("#| export") for c in nb.cells), path.name


def test_notebook_checks_pass():
    "Every check cell under every exported function, run by nbdev-test (stage runs are `#| eval: false`)."
    result = run("nbdev-test --n-workers 2", ROOT, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
