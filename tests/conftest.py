"""Shared fixtures: the project root, and throw-away copies of the project that run the real pipeline."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# The template's example business: its stage, and the schemas and data it gives. `make no-demo` leaves it out.
HAS_DEMO = "demo_data" in (yaml.safe_load((ROOT / "dvc.yaml").read_text()).get("stages") or {})
NO_DEMO = ("a test of the template's example business (the demo_data stage and its committed schemas); "
           "this project has no demo_data stage (make no-demo)")


def pytest_collection_modifyitems(config, items):
    "Skip the tests marked `demo` in a project without the example business."
    if HAS_DEMO:
        return
    skip = pytest.mark.skip(reason=NO_DEMO)
    for item in items:
        if item.get_closest_marker("demo"):
            item.add_marker(skip)

# A data profile small enough for tests; every other parameter stays as committed.
TINY_PARAMS = {
    ("demo_data", "n_customers"): 1500,
    ("select", "cv_folds"): 3,
    ("select", "n_iter"): 2,
    ("select", "candidates", "random_forest", "fixed", "n_estimators"): 40,
    ("select", "candidates", "hist_gradient_boosting", "fixed", "max_iter"): 60,
}


def run(cmd, cwd, check=True, **kwargs):
    "Run a shell command with the project environment's tools first on PATH."
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), env=env, capture_output=True, text=True,
                            **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def project_files(root=ROOT):
    "Files git tracks or would track (the committed project plus work not yet committed)."
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def copy_project(dest: Path) -> Path:
    "A fresh git repository at `dest` holding the project's source files, as a clone would."
    for f in project_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm base", dest)
    return dest


def set_params(project: Path, changes: dict, file="params.yaml"):
    "Set nested keys (tuples of names) in a project's params.yaml."
    path = project / file
    params = yaml.safe_load(path.read_text())
    for keys, value in changes.items():
        node = params
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def commit(project: Path, message="update"):
    run(f"git add -A && git -c user.email=t@t -c user.name=t commit -qm '{message}' --allow-empty", project)


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    """A project copy on the tiny profile (the demo business, shrunk) after one full `dvc repro`, committed. Treat as
    read-only: tests that change it work on `tiny_copy`. Tests that use it are marked `demo`."""
    project = copy_project(tmp_path_factory.mktemp("tiny") / "project")
    set_params(project, TINY_PARAMS)
    result = run("dvc repro", project)
    commit(project, "tiny run")
    project.joinpath(".repro_stdout").write_text(result.stdout + result.stderr)
    return project


@pytest.fixture
def tiny_copy(tiny_project, tmp_path):
    "A private copy of `tiny_project` (with its DVC cache) that a test may change."
    dest = tmp_path / "project"
    shutil.copytree(tiny_project, dest, symlinks=True)
    return dest


SPARK_CONF = {"spark.executor.memory": "768m", "spark.cores.max": "2"}   # an application's share of the test cluster


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A real standalone Spark cluster on loopback, a master and two workers (one core, 1 GB each), shared by every
    test that asks for it and stopped by PID at the end; skipped, naming the reason, where Java is absent."""
    from ml_lifecycle.spark import java_problem, standalone_cluster
    if java_problem() is not None:
        pytest.skip(f"no Spark cluster here: {java_problem()}")
    with standalone_cluster(workers=2, cores=1, memory="1g", log_dir=tmp_path_factory.mktemp("spark")) as running:
        yield running
