"""params.yaml is the single source of truth, and every parameter a notebook reads is declared in dvc.yaml."""
import ast

import nbformat
import pytest
import yaml

from conftest import ROOT
from ml_lifecycle.core import StageError
from ml_lifecycle.params import StageParams, declared_params, stage_params

STAGES = {name: stage for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()
          if name != "check"}   # the pipeline's first stage runs `ml-lifecycle check`, no notebook
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def params_read_by(notebook) -> set[str]:
    """Dotted keys a notebook reads from the object `stage_params` returns: `params["a"]["b"]` reads `a.b`;
    aliases (`s = params["a"]`, then `s["b"]`) are followed; a chain stops at its first non-constant index."""
    source = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
    module = ast.parse("\n".join(l for l in source.splitlines() if not l.startswith(("#|", "%", "!"))))
    # What a stage reads: its `run(params, root)` function, and top-level code that calls `stage_params`. Other
    # functions are left out: `check_inputs` sees the whole params.yaml on purpose.
    runs = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    tree = ast.Module(body=[n for n in module.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
                      + [stmt for f in runs for stmt in f.body], type_ignores=[])
    roots: dict[str, str] = {f.args.args[0].arg: "" for f in runs if f.args.args}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "stage_params":
            roots.update({t.id: "" for t in node.targets if isinstance(t, ast.Name)})

    def path_of(node):
        keys = []
        while isinstance(node, ast.Subscript):
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                keys.clear()  # a variable index: only the part before it is a known key
            else:
                keys.insert(0, node.slice.value)
            node = node.value
        if isinstance(node, ast.Name) and node.id in roots:
            return ".".join(p for p in [roots[node.id], *keys] if p)
        return None

    for _ in range(3):  # resolve aliases of aliases
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript):
                path = path_of(node.value)
                if path is not None:
                    roots.update({t.id: path for t in node.targets if isinstance(t, ast.Name)})
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    indexed = {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)}
    reads = {path for name, path in roots.items() if path and name not in indexed}  # `x = params["a"]["b"]`, then x used
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and not isinstance(parents.get(node), ast.Subscript):
            path = path_of(node)
            if path and not (isinstance(parents.get(node), ast.Assign) and parents[node].value is node):
                reads.add(path)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            path = path_of(node.func.value)   # `params.get("engine")`: a read of a key params.yaml may leave out
            if path is not None:
                reads.add(".".join(p for p in [path, node.args[0].value] if p))
    return reads


def covers(declared: str, read: str) -> bool:
    return read == declared or read.startswith(declared + ".")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_notebook_reads_only_declared_params(stage):
    notebook = next((ROOT / "nbs").glob(f"[0-9][0-9]_{stage}.ipynb"))
    reads, declared = params_read_by(notebook), declared_params(stage, ROOT)
    assert reads, f"found no parameter reads in {notebook.name}"
    undeclared = sorted(r for r in reads if not any(covers(d, r) for d in declared))
    assert not undeclared, f"{notebook.name} reads {undeclared}, which stage '{stage}' does not declare in dvc.yaml"
    unused = sorted(d for d in declared if not any(covers(d, r) or covers(r, d) for r in reads))
    assert not unused, f"stage '{stage}' declares {unused} but its notebook never reads them"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_declared_params_exist_in_params_yaml(stage):
    for key in declared_params(stage, ROOT):
        node = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"stage '{stage}' declares '{key}', absent from params.yaml"
            node = node[part]


def test_the_static_check_catches_an_undeclared_read(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'params = stage_params("x", params_file)\ns = params["train"]\nprint(s["seed"], params["problem"]["label"])\n'
        'k = "c"\nparams["select"]["candidates"][k]\nmetric = params["problem"]["metric"]\nprint(metric)')])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert params_read_by(tmp_path / "nb.ipynb") == {"train.seed", "problem.label", "select.candidates", "problem.metric"}


def test_the_static_check_reads_the_run_function_and_skips_other_functions(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'def run(params, root=None):\n    settings = params["train"]\n    return settings["seed"]\n'
        'def check_inputs(params, root):\n    return params["gather"]')])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert params_read_by(tmp_path / "nb.ipynb") == {"train.seed"}


def test_stage_params_refuses_undeclared_keys_at_run_time():
    params = stage_params("preprocess", "params.yaml", root=ROOT)
    assert params["preprocess"]["seed"] == PARAMS["preprocess"]["seed"]
    assert params["features"]["categorical"] == PARAMS["features"]["categorical"]
    with pytest.raises(StageError, match="does not declare") as err:
        params["features"]["impute_numeric"]
    assert err.value.field == "features.impute_numeric" and err.value.stage == "preprocess"
    assert set(params) == {"problem", "preprocess", "features", "engine", "spark"}
    assert isinstance(params["features"], StageParams)


def test_every_stage_runs_its_own_notebook_and_depends_on_it():
    for stage, spec in STAGES.items():
        notebook = next((ROOT / "nbs").glob(f"[0-9][0-9]_{stage}.ipynb"))
        assert f"nbs/{notebook.name}" in spec["deps"]
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", [])]
        assert f"reports/notebooks/{notebook.name}" in outs, "the executed copy is a versioned output"
