"""The repository is a copier template: a new project gets its own names, is sound, and takes later template
changes with `copier update` while keeping its own edits.

Everything runs on temporary git repositories: a copy of this template (tagged v0.1.0, then v0.2.0) and the
projects made from it. The generated project reuses this environment (no second install of the stack): its package
is installed editable into a throw-away venv layered on this one, and its quick tests run there.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT, VENV_BIN, copy_project, run

NESTED = "TEMPLATE_TEST_NESTED"  # set for the generated project's own test run: no template test inside it
pytestmark = [
    pytest.mark.integration,
    pytest.mark.demo,   # projects made from this template, with and without its example business
    pytest.mark.skipif(not (ROOT / "copier.yml").is_file(), reason="a project made from the template has no copier.yml"),
    pytest.mark.skipif(os.environ.get(NESTED) == "1", reason="already inside the template test: no recursion"),
]

ANSWERS = {"project_name": "Churn Radar", "author_name": "Data Team", "description": "Who will churn next quarter"}
PACKAGE, DIST = "churn_radar", "churn-radar"
OLD_WORDS = re.compile(r"(?<![\w-])ml[_-]lifecycle(?![\w])")
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


@pytest.fixture(scope="module", autouse=True)
def git_identity():
    "Commits made here and inside copier work on a machine with no git identity configured."
    with pytest.MonkeyPatch.context() as mp:
        for k, v in GIT_IDENTITY.items():
            mp.setenv(k, v)
        yield


def commit(repo: Path, message: str):
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


def copier(*args, cwd):
    return run([str(VENV_BIN / "copier"), *args], cwd)


def tracked_text_files(project: Path):
    for f in run(["git", "ls-files"], project).stdout.splitlines():
        try:
            yield f, (project / f).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    "A git copy of this template, tagged v0.1.0."
    tpl = copy_project(tmp_path_factory.mktemp("template") / "ml-template")
    run(["git", "tag", "v0.1.0"], tpl)
    return tpl


@pytest.fixture(scope="module")
def generated(template, tmp_path_factory):
    "A project made from v0.1.0 with its own names, committed as a team would."
    dest = tmp_path_factory.mktemp("generated") / DIST
    data = [a for k, v in ANSWERS.items() for a in ("--data", f"{k}={v}")]
    copier("copy", "--trust", "--defaults", "--vcs-ref", "v0.1.0", *data, str(template), str(dest), cwd=dest.parent)
    run(["git", "init", "-q"], dest)
    commit(dest, "project from template v0.1.0")
    return dest


def test_generated_project_has_its_own_names(generated):
    answers = yaml.safe_load((generated / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.1.0" and answers["package_name"] == PACKAGE
    assert {k: answers[k] for k in ANSWERS} == ANSWERS

    assert (generated / "src" / PACKAGE / "core.py").is_file() and not (generated / "src" / "ml_lifecycle").exists()
    leftovers = [f for f, text in tracked_text_files(generated)
                 if f != "tools/rename_package.py" and OLD_WORDS.search(text)]
    assert not leftovers, f"the template's names are left in {leftovers}"

    pyproject = (generated / "pyproject.toml").read_text()
    assert f'name = "{DIST}"' in pyproject and f'lib_path = "src/{PACKAGE}"' in pyproject
    assert f'{DIST} = "{PACKAGE}.cli:main"' in pyproject
    assert 'description = "Who will churn next quarter"' in pyproject and 'authors = [{ name = "Data Team" }]' in pyproject
    stages = yaml.safe_load((generated / "dvc.yaml").read_text())["stages"]
    assert stages.pop("check")["cmd"] == f"tools/in-venv {DIST} check --record"
    assert stages and all(s["cmd"] == f"tools/in-venv {DIST} run {name}" for name, s in stages.items())
    assert yaml.safe_load((generated / "environment.yml").read_text())["name"] == DIST
    assert f"{DIST}-dvc-remote" in (generated / ".dvc" / "config").read_text()
    assert (generated / "README.md").read_text().startswith("# Churn Radar\n\nWho will churn next quarter\n")
    nb = nbformat.read(generated / "nbs" / "00_core.ipynb", as_version=4)
    assert nb.cells  # still a valid notebook after the rename

    # the template's own machinery and run state stay behind; reviewed schemas come along
    for absent in ("copier.yml", "dvc.lock", "reports", "models", ".venv", ".dvc/cache"):
        assert not (generated / absent).exists(), absent
    assert list((generated / "data" / "schema").glob("*.pbtxt"))
    assert not [p for p in (generated / "data").rglob("*") if p.is_file() and p.name not in (".gitignore", ".gitkeep")
                and "schema" not in p.parts]   # .gitkeep: the empty folders outcomes and batches arrive in


def test_rename_is_idempotent(generated):
    run([sys.executable, "tools/rename_package.py", "--package", PACKAGE, "--project-name", ANSWERS["project_name"],
         "--author", ANSWERS["author_name"], "--description", ANSWERS["description"]], generated)
    assert run(["git", "status", "--porcelain"], generated).stdout == ""


def test_rename_refuses_a_package_name_that_is_not_an_identifier(tmp_path):
    result = run([sys.executable, str(ROOT / "tools" / "rename_package.py"), "--package", "9-lives", "--root",
                  str(tmp_path)], tmp_path, check=False)
    assert result.returncode == 2 and "not a lowercase Python identifier" in result.stderr


def test_copier_rejects_an_invalid_package_name(template, tmp_path):
    result = run([str(VENV_BIN / "copier"), "copy", "--trust", "--defaults", "--vcs-ref", "v0.1.0",
                  "--data", "package_name=Not-Valid", str(template), str(tmp_path / "bad")], tmp_path, check=False)
    assert result.returncode != 0 and "lowercase Python identifier" in result.stdout + result.stderr
    assert not (tmp_path / "bad" / "src").exists()


def test_a_project_on_its_own_data_carries_no_demo(template, tmp_path):
    "Answering no to `demo`: the demo stage, its params and anything it would write are left out; the rest stays."
    dest = tmp_path / "own"
    copier("copy", "--trust", "--defaults", "--vcs-ref", "v0.1.0", "--data", "demo=false", str(template), str(dest),
           cwd=tmp_path)
    stages = yaml.safe_load((dest / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((dest / "params.yaml").read_text())
    assert "demo_data" not in stages and "demo_data" not in params
    assert list(stages)[:3] == ["check", "gather", "problem"] and "gather" in params and "# " in (dest / "params.yaml").read_text()
    assert not (dest / "data/external/crm.sqlite").exists() and not (dest / "data/external/events").exists()
    default = tmp_path / "default"
    copier("copy", "--trust", "--defaults", "--vcs-ref", "v0.1.0", str(template), str(default), cwd=tmp_path)
    assert "demo_data" in yaml.safe_load((default / "dvc.yaml").read_text())["stages"]   # the default keeps it


@pytest.fixture(scope="module")
def project_env(generated, tmp_path_factory):
    """A throw-away venv on top of this environment (a .pth file points at its site-packages) with the generated
    package installed editable: its console script and metadata are real, and nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], venv.parent)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_template_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e",
         str(generated)], generated)
    # Tools of this environment that the project's tests start (nbdev-test, papermill kernels) find its package too.
    return {**os.environ, **GIT_IDENTITY, NESTED: "1", "PYTHONPATH": str(generated / "src"),
            "PATH": os.pathsep.join([str(venv / "bin"), str(VENV_BIN), os.environ["PATH"]]),
            "TF_CPP_MIN_LOG_LEVEL": "2", "VIRTUAL_ENV": str(venv), "_VENV_PYTHON": str(venv / "bin" / "python")}


def test_generated_project_is_in_sync_and_importable(generated, project_env):
    run(["nbdev-export"], generated)
    run(["nbdev-clean"], generated)
    assert run(["git", "status", "--porcelain"], generated).stdout == "", "nbdev-export or nbdev-clean changed files"
    python = project_env["_VENV_PYTHON"]
    code = (f"import {PACKAGE}.core, {PACKAGE}.stages.problem, importlib.metadata as m;"
            f"print({PACKAGE}.core.__file__); print(m.version('{DIST}'))")
    out = subprocess.run([python, "-c", code], env=project_env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == str(generated / "src" / PACKAGE / "core.py")
    assert (Path(python).parent / DIST).is_file(), "the console script dvc.yaml calls is installed"
    usage = subprocess.run([str(Path(python).parent / DIST), "--help"], env=project_env, capture_output=True, text=True)
    assert usage.returncode == 0 and "run" in usage.stdout


def test_generated_project_quick_tests_pass(generated, project_env):
    "Its own quick suite (its template test skips itself: no copier.yml, and the nested flag is set)."
    result = subprocess.run([project_env["_VENV_PYTHON"], "-m", "pytest", "-m", "not integration", "-q", "-x",
                             "-p", "no:cacheprovider"], cwd=generated, env=project_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)
    assert run(["git", "status", "--porcelain"], generated).stdout == "", "its tests left files behind"


def change_template(template: Path):
    "v0.2.0 of the template: a new exported function in the core notebook, a new file, a README change."
    nb_path = template / "nbs" / "00_core.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells += [nbformat.v4.new_markdown_cell("## Template version\n\nAdded in template v0.2.0."),
                 nbformat.v4.new_code_cell('#| export\ndef template_feature() -> str:\n'
                                           '    "Shipped by template v0.2.0."\n    return "v0.2.0"'),
                 nbformat.v4.new_code_cell('assert template_feature() == "v0.2.0"')]
    nbformat.write(nb, nb_path)
    run([sys.executable, "tools/clean_notebooks.py", str(nb_path)], template)
    run(["nbdev-export"], template)
    (template / "docs").mkdir(exist_ok=True)
    (template / "docs" / "TEAM.md").write_text("# Team conventions\n\nShipped by template v0.2.0.\n")
    readme = (template / "README.md").read_text()
    (template / "README.md").write_text(readme.replace("## Quick start\n", "## Quick start\n\nTemplate v0.2.0 note.\n", 1))
    commit(template, "template v0.2.0")
    run(["git", "tag", "v0.2.0"], template)


def test_copier_update_brings_template_changes_and_keeps_local_edits(template, generated, tmp_path):
    project = tmp_path / DIST
    shutil.copytree(generated, project, symlinks=True)
    # A local edit, committed before updating: the project's own note in the README and a parameter it tuned.
    readme = (project / "README.md").read_text()
    (project / "README.md").write_text(readme + "\n## Our team's notes\n\nLocal edit that must survive.\n")
    params = (project / "params.yaml").read_text()
    assert re.search(r"(?m)^  n_customers: \d+", params)
    (project / "params.yaml").write_text(re.sub(r"(?m)^(  n_customers:) \d+", r"\1 4321", params, count=1))
    commit(project, "local edits")

    change_template(template)
    copier("update", "--trust", "--defaults", cwd=project)

    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
    core = (project / "src" / PACKAGE / "core.py").read_text()
    assert "def template_feature()" in core and "template_feature" in (project / "src" / PACKAGE / "_modidx.py").read_text()
    assert "template_feature" in (project / "nbs" / "00_core.ipynb").read_text()
    assert (project / "docs" / "TEAM.md").read_text().startswith("# Team conventions")
    readme = (project / "README.md").read_text()
    assert "Template v0.2.0 note." in readme and "Local edit that must survive." in readme
    assert readme.startswith("# Churn Radar\n")
    assert re.search(r"(?m)^  n_customers: 4321$", (project / "params.yaml").read_text())
    assert not (project / "src" / "ml_lifecycle").exists()
    conflicts = [f for f, text in tracked_text_files(project) if re.search(r"(?m)^(<{7}|>{7})( |$)", text)]
    assert not conflicts and not list(project.rglob("*.rej")), conflicts
    # still sound: the updated notebooks and src/ agree, and the new function works under the project's name
    commit(project, "template v0.2.0")
    run(["nbdev-export"], project)
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    out = subprocess.run([sys.executable, "-c", f"from {PACKAGE}.core import template_feature; print(template_feature())"],
                         env={**os.environ, "PYTHONPATH": str(project / "src")}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "v0.2.0"
