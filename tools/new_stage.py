"""Scaffold a new lifecycle stage: `make stage NAME=<name>` (this script, then `nbdev-export`).

Writes, for a stage called `explain` in a project whose last notebook is `12_monitor.ipynb`:

- `nbs/13_explain.ipynb`: the skeleton every stage follows (a narrative, its exported parameter contract
  `PARAMS_SCHEMA`, an exported function with a check under it, `run(params, root)` checked on a toy project, and a
  **Run the stage** section with papermill's `parameters` cell), clean;
- its entry in the pipeline (`nbs/00a_catalog.ipynb`: `EXPLAIN_SUMMARY` and `PIPELINE["explain"]`: the params it
  reads, what it reads and writes), from which `make stage` then regenerates `dvc.yaml` (`ml-lifecycle dvc-yaml`);
- an `explain:` section at the end of `params.yaml`.

Then edit the notebook and its `PIPELINE` entry, `make export`, and `dvc repro explain`.
"""
import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_notebooks import clean_text  # noqa: E402


def package_and_script(root: Path) -> tuple[str, str]:
    "The package (from nbdev's lib_path) and the console script that runs stages (from [project.scripts])."
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    package = Path(pyproject["tool"]["nbdev"]["lib_path"]).name
    scripts = pyproject.get("project", {}).get("scripts", {})
    script = next((k for k, v in scripts.items() if v == f"{package}.cli:main"), package.replace("_", "-"))
    return package, script


def notebook(name: str, number: str, package: str) -> dict:
    title, summary = name.replace("_", " ").capitalize(), f"{name.upper()}_SUMMARY"
    md = lambda s: {"cell_type": "markdown", "metadata": {}, "source": s}  # noqa: E731
    code = lambda s, **meta: {"cell_type": "code", "execution_count": None, "metadata": meta,  # noqa: E731
                              "outputs": [], "source": s}
    cells = [
        md(f"# {title}: what this stage decides\n\n"
           f"> Stage {int(number)} of the lifecycle. Replace this skeleton's narrative, functions and checks with "
           "the stage's own."),
        md("**What the stage does.** Say what it reads, what it decides and why, and what it writes. The notebook "
           "is the stage's documentation: a short narrative, then small exported functions each with a check under "
           "it, then `run`, the whole stage as one function checked on a toy project, then **Run the stage**, which "
           "`dvc repro` runs through papermill."),
        code(f"#| default_exp stages.{name}"),
        code(f"#| export\nfrom __future__ import annotations\n\n"
             f"from collections.abc import Mapping\nfrom pathlib import Path\n\n"
             f"from {package} import catalog\n"
             f"from {package}.core import resolve\n"
             f"from {package}.params import params_contract\n"
             f"from {package}.tables import write_json"),
        code(f"#| hide\nfrom {package}.check import toy_project\nfrom {package}.core import project_root\n"
             f"from {package}.params import declared_view, stage_params"),
        md("## The parameters and their rules\n\n"
           f"`PARAMS_SCHEMA` is the contract for `{name}:` in `params.yaml`: `ml-lifecycle check`, which runs before "
           "every stage, names a wrong type or an impossible value before any stage starts. Every key the stage "
           "reads is declared in its `PIPELINE` entry's `params` (the catalog), so DVC reruns the stage when it changes."),
        code(f"#| export\nPARAMS_SCHEMA = params_contract(\"{name}\", {{\"message\": {{\"type\": \"string\", \"minLength\": 1}}}})"),
        md("## What the stage computes\n\nOne small function per decision, with a check right under it "
           "(`nbdev-test` runs the checks; `make test` runs `nbdev-test`)."),
        code(f"#| export\ndef summarise(settings: Mapping) -> dict:\n"
             f'    "What the stage writes. Replace with the stage\'s work."\n'
             f'    return {{"stage": "{name}", "message": settings["message"]}}'),
        code('assert summarise({"message": "hello"}) == {"stage": "' + name + '", "message": "hello"}'),
        md("## The whole stage\n\n`run` reads the stage's parameters and writes every output the catalog names for it; "
           "the check under it runs it on a toy project in a temporary folder."),
        code(f"#| export\ndef run(params: Mapping, root: str | Path | None = None) -> dict:\n"
             f'    "Run the {name} stage: write its summary (`catalog.{summary}`) and return it."\n'
             f'    summary = summarise(params["{name}"])\n'
             f"    write_json(summary, resolve(catalog.{summary}, root))\n"
             f"    return summary"),
        code(f'with toy_project({{"{name}": {{"message": "hello"}}}}) as (toy_root, toy_values):\n'
             f'    assert run(declared_view("{name}", toy_values), toy_root) == {{"stage": "{name}", "message": "hello"}}\n'
             f"    assert (toy_root / catalog.{summary}).is_file()"),
        md("## Run the stage"),
        code('params_file = "params.yaml"', tags=["parameters"]),
        code(f"#| eval: false\n"
             f'params = stage_params("{name}", params_file, PARAMS_SCHEMA)\n'
             f"summary = run(params, project_root())\n"
             f"summary"),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"{number}c{i:03d}"
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "python3", "language": "python",
                                                        "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def catalog_cell(name: str) -> dict:
    "The catalog entries of the new stage: its summary file, and what it reads and writes."
    summary = f"{name.upper()}_SUMMARY"
    return {"cell_type": "code", "execution_count": None, "id": f"catalog-{name}", "metadata": {}, "outputs": [],
            "source": f"#| export\n{summary} = \"reports/{name}.json\"\n"
                      f"PIPELINE[\"{name}\"] = {{\"params\": [\"{name}\"], \"reads\": [CHECK_RECORD], \"writes\": [{summary}]}}\n"
                      f"IN_GIT.add({summary})\nMETRIC_FILES.add({summary})"}


def scaffold(name: str, root: Path = ROOT) -> list[Path]:
    import yaml

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"stage name {name!r}: use lowercase letters, digits and '_', starting with a letter")
    nbs, dvc_path, params_path = root / "nbs", root / "dvc.yaml", root / "params.yaml"
    stages = (yaml.safe_load(dvc_path.read_text()) or {}).get("stages", {})
    params = yaml.safe_load(params_path.read_text()) or {}
    if name in stages or name in params or list(nbs.glob(f"[0-9][0-9]_{name}.ipynb")):
        raise ValueError(f"stage {name!r} already exists (in dvc.yaml, params.yaml or nbs/)")
    numbers = [int(p.name[:2]) for p in nbs.glob("[0-9][0-9]_*.ipynb")]
    number = f"{max(numbers, default=0) + 1:02d}"
    package, script = package_and_script(root)

    nb_path = nbs / f"{number}_{name}.ipynb"
    nb_path.write_text(clean_text(json.dumps(notebook(name, number, package)), root), encoding="utf-8")
    catalog_nb = next(nbs.glob("*_catalog.ipynb"))
    catalog = json.loads(catalog_nb.read_text())
    catalog["cells"].append(catalog_cell(name))
    catalog_nb.write_text(clean_text(json.dumps(catalog), root), encoding="utf-8")
    text = params_path.read_text()
    params_path.write_text(text.rstrip("\n") + "\n\n"
                           f"{name}:                          # nbs/{nb_path.name}; read as the catalog's PIPELINE declares\n"
                           f"  message: replace with the stage's parameters\n")
    return [nb_path, catalog_nb, params_path]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the stage name: lowercase letters, digits and '_'")
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(p.relative_to(ROOT).as_posix() for p in written))
    print(f"next: edit {written[0].relative_to(ROOT).as_posix()}, then `make export` and `dvc repro {args.name}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
