"""One artefact catalog, one direction of imports: dvc.yaml, the catalog and the stage modules agree."""
import ast
import importlib.util

import pytest
import yaml

from conftest import ROOT

# This project's own catalog, from its src/ (the installed package may be another checkout's, e.g. in a scaffold test).
_spec = importlib.util.spec_from_file_location("project_catalog", ROOT / "src" / "ml_lifecycle" / "catalog.py")
catalog = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(catalog)

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]
PACKAGE = ROOT / "src" / "ml_lifecycle"
SHARED = {"core", "execution", "catalog", "cleaning", "reporting", "modelling", "gate"}


def entries(items):
    return [next(iter(i)) if isinstance(i, dict) else i for i in items or []]


def package_imports(module: str) -> set[str]:
    "The package modules `module` imports directly (`from .core import x`, `from . import catalog`)."
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ml_lifecycle"):
            rest = node.module.removeprefix("ml_lifecycle").lstrip(".")
            found |= {rest.split(".")[0]} if rest else {a.name for a in node.names}
    return found


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for m in package_imports(todo.pop()) - seen:
            seen.add(m)
            todo.append(m)
    return seen


OPTIONAL = {"demo_data"}   # a project on its own data leaves it out (tools/drop_demo.py)


def test_every_stage_is_in_the_catalog():
    listed = [s for s in catalog.STAGE_IO if s in STAGES or s not in OPTIONAL]
    assert listed == list(STAGES), "catalog.STAGE_IO lists the dvc.yaml stages, in order"


@pytest.mark.parametrize("stage", list(STAGES))
def test_dvc_yaml_declares_what_the_catalog_says(stage):
    spec, io = STAGES[stage], catalog.STAGE_IO[stage]
    data_deps = [d for d in spec["deps"] if not d.startswith(("nbs/", "src/"))]
    assert sorted(data_deps) == sorted(io["reads"]), f"{stage}: dvc.yaml deps differ from catalog.STAGE_IO reads"
    outs = entries(spec.get("outs")) + entries(spec.get("metrics")) + entries(spec.get("plots"))
    executed = [o for o in outs if o.startswith(catalog.EXECUTED + "/")]
    assert len(executed) == (0 if stage == catalog.CHECK_STAGE else 1)
    assert sorted(o for o in outs if o not in executed) == sorted(io["writes"]), \
        f"{stage}: dvc.yaml outs, metrics and plots differ from catalog.STAGE_IO writes"


@pytest.mark.parametrize("stage", [s for s in STAGES if s != catalog.CHECK_STAGE])
def test_a_stage_depends_on_every_module_it_imports_and_no_other_stage(stage):
    imported = closure(stage)
    assert not imported - SHARED, f"stage module '{stage}' imports stage modules {sorted(imported - SHARED)}"
    src_deps = {d.removeprefix("src/ml_lifecycle/").removesuffix(".py") for d in STAGES[stage]["deps"]
                if d.startswith("src/")}
    assert src_deps == imported, f"{stage}: dvc.yaml src deps {sorted(src_deps)} differ from its imports {sorted(imported)}"


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
    assert list(STAGES)[0] == catalog.CHECK_STAGE and "params.yaml" in check["deps"] and "src/ml_lifecycle" in check["deps"]
    assert entries(check["outs"]) == [catalog.CHECK_RECORD]
    assert [s for s, spec in STAGES.items() if s != catalog.CHECK_STAGE and catalog.CHECK_RECORD not in spec["deps"]] == []
