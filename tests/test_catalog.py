"""One source for the pipeline: dvc.yaml is generated from the catalog and the stage modules' imports."""
import importlib.util
import shlex
import pytest
import yaml

from conftest import ROOT, run

# This project's own modules, from its src/ (the installed package may be another checkout's, e.g. in a scaffold test).
_spec = importlib.util.spec_from_file_location("project_catalog", ROOT / "src" / "ml_lifecycle" / "catalog.py")
catalog = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(catalog)

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]


def entries(items):
    return [next(iter(i)) if isinstance(i, dict) else i for i in items or []]


def test_dvc_yaml_is_what_the_catalog_generates():
    "Regenerating dvc.yaml changes nothing: it is never edited by hand."
    result = generate(ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def generate(project, *args):
    "`ml-lifecycle dvc-yaml` with the project's own package (the environment may have another checkout's installed)."
    argv = ["dvc-yaml", *args]
    code = f"import sys; from ml_lifecycle.cli import main; sys.exit(main({argv!r}))"
    return run(f"PYTHONPATH={ROOT / 'src'} python -c {shlex.quote(code)}", project, check=False)


def test_the_up_to_date_check_has_teeth(tmp_path):
    for name in ["params.yaml", "dvc.yaml", "pyproject.toml"]:
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "nbs").mkdir()
    for nb in (ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"):
        (tmp_path / "nbs" / nb.name).touch()
    (tmp_path / "src").symlink_to(ROOT / "src")
    assert generate(tmp_path, "--check").returncode == 0
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text().replace("params: [problem, train]", "params: [train]"))
    assert generate(tmp_path, "--check").returncode == 1   # a hand edit is caught
    assert generate(tmp_path).returncode == 0 and (tmp_path / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()


def test_every_stage_is_in_the_catalog():
    listed = [s for s in catalog.PIPELINE if s in STAGES or s not in catalog.OPTIONAL_STAGES]
    assert listed == list(STAGES), "catalog.PIPELINE lists the dvc.yaml stages, in order"


@pytest.mark.parametrize("stage", [s for s in STAGES if s != catalog.CHECK_STAGE])
def test_a_stage_depends_on_its_code_and_no_plumbing(stage):
    src = [d.removeprefix("src/ml_lifecycle/").removesuffix(".py") for d in STAGES[stage]["deps"] if d.startswith("src/")]
    assert src[0] == f"stages/{stage}", "a stage's own module comes first"
    assert not [m for m in src[1:] if m.startswith("stages/")], f"stage '{stage}' imports another stage: {src}"
    assert not {"cli", "execution", "check", "pipeline", "catalog"} & set(src), f"{stage} depends on plumbing: {src}"
    assert {"core", "params"} <= set(src)


def test_every_plot_is_declared_once():
    top = [next(iter(p)) for p in DVC.get("plots", [])]
    assert len(top) == len(set(top)), "a top-level plot is declared twice"
    drawn = [f for p in DVC.get("plots", []) for f in (next(iter(p.values())).get("y") or {})]
    in_stages = [p for s in STAGES.values() for p in entries(s.get("plots"))]
    assert not set(drawn) & set(in_stages), "a file drawn by a top-level plot is also a stage plot: DVC draws it twice"
    assert sorted(drawn) == sorted(set(drawn))


def test_every_stage_runs_after_the_check():
    "DVC deletes a stage's outputs before it reruns it: the check stage runs first, so a refusal deletes nothing."
    check = STAGES[catalog.CHECK_STAGE]
    assert list(STAGES)[0] == catalog.CHECK_STAGE and check["deps"][:2] == ["params.yaml", "src/ml_lifecycle/check.py"]
    assert entries(check["outs"]) == [catalog.CHECK_RECORD]
    assert [s for s, spec in STAGES.items() if s != catalog.CHECK_STAGE and catalog.CHECK_RECORD not in spec["deps"]] == []
