"""The environment is pinned once (environment.yml), locked fully, and installed exactly as locked."""
import json
import re
import subprocess
import sys
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from lock_env import DIGEST_PREFIX, pins_digest, pip_pins  # noqa: E402


def lock_versions() -> dict[str, str]:
    text = (ROOT / "requirements.lock.txt").read_text()
    return {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", text, re.M)}


def test_environment_yml_pins_every_pip_package_exactly():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert sorted(conda) == ["pip", "python=3.11"]
    for pin in pip_pins():
        req = Requirement(pin)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", pin
    names = {canonicalize_name(Requirement(p).name) for p in pip_pins()}
    required = {"jupyterlab", "papermill", "dvc", "nbdev", "pandas", "scikit-learn", "tensorflow-data-validation",
                "pytest", "ipykernel", "skops"}
    assert required <= names, required - names


def test_lock_agrees_with_environment_yml():
    locked = lock_versions()
    for pin in pip_pins():
        req = Requirement(pin)
        assert locked.get(canonicalize_name(req.name)) == str(next(iter(req.specifier)).version), \
            f"{pin} differs from the lock: run `make lock`"
    stamp = next(l for l in (ROOT / "requirements.lock.txt").read_text().splitlines() if l.startswith(DIGEST_PREFIX))
    assert stamp == DIGEST_PREFIX + pins_digest(pip_pins()), "environment.yml changed since the lock: run `make lock`"


def test_lock_has_hashes_for_every_package():
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", (ROOT / "requirements.lock.txt").read_text().split("\n", 2)[2])
    assert len(blocks) > 200 and all("--hash=sha256:" in b for b in blocks)


def test_installed_environment_matches_the_lock():
    # In a fresh interpreter: once imported, setuptools puts its vendored *.dist-info on sys.path.
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    listed = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    locked = lock_versions()
    installed = {canonicalize_name(name): version for name, version in listed.items()}
    wrong = {n: (v, installed.get(n)) for n, v in locked.items() if installed.get(n) != v}
    assert not wrong, f"installed versions differ from the lock (name: (locked, installed)): {wrong}"


def test_tfdv_imports_with_its_pinned_stack():
    code = ("import tensorflow_data_validation as tfdv, dill, pandas, numpy, pyarrow, tensorflow;"
            "print(tfdv.__version__, pandas.__version__, numpy.__version__, pyarrow.__version__, tensorflow.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out[0] == "1.16.1" and out[1] == "1.5.3" and out[2].startswith("1.26.") and out[3] == "10.0.1" \
        and out[4] == "2.16.2"


def test_only_the_validate_stage_imports_tensorflow():
    light = ["core", "catalog", "reporting", "modelling", "gate", "validate", "problem", "demo_data", "gather", "preprocess", "features", "select", "train", "evaluate", "score"]
    code = (f"import sys; import {', '.join('ml_lifecycle.' + m for m in light)};"
            "print(sorted(m for m in ('tensorflow', 'tensorflow_data_validation', 'apache_beam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
