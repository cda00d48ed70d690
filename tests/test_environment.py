"""Two stacks, each pinned once (environment.yml, environment.modern.yml), locked fully, and installed exactly as
locked; `make env` picks the stack for the machine (tools/platform_stack.sh)."""
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from lock_env import STACKS, pins_digest, pip_pins  # noqa: E402

STACK_NAMES = sorted(STACKS)
# What each stack's TFDV forces; the modern one is what TFDV 1.21.0 resolved to when it was added.
EXPECTED = {
    "default": {"tensorflow-data-validation": "1.16.1", "pandas": "1.5.3", "numpy": "1.26.", "pyarrow": "10.0.1",
                "tensorflow": "2.16.2"},
    "modern": {"tensorflow-data-validation": "1.21.0", "pandas": "2.", "numpy": "2.", "pyarrow": "25.",
               "tensorflow": "2.21."},
}


def lock_requirements(stack: str) -> list[Requirement]:
    "Every `name==version[ ; marker]` entry of a stack's lock (a universal lock may hold a name twice)."
    text = STACKS[stack].lock_file.read_text()
    return [Requirement(line) for line in re.findall(r"^([A-Za-z0-9_.\-]+==[^\s\\;]+(?: ; [^\\\n]+)?)", text, re.M)]


def lock_versions(stack: str) -> dict[str, set[str]]:
    "name -> locked versions."
    versions: dict[str, set[str]] = {}
    for req in lock_requirements(stack):
        versions.setdefault(canonicalize_name(req.name), set()).add(next(iter(req.specifier)).version)
    return versions


def installed_stack() -> str:
    "The stack this environment was installed from: the one whose lock holds the installed TFDV."
    from importlib.metadata import version
    tfdv = version("tensorflow-data-validation")
    stacks = [s for s in STACK_NAMES if tfdv in lock_versions(s).get("tensorflow-data-validation", ())]
    assert len(stacks) == 1, f"TFDV {tfdv} is in the locks of {stacks}"
    return stacks[0]


def platform_stack(**fake) -> subprocess.CompletedProcess:
    env = {**os.environ, **{f"PLATFORM_{k.upper()}": v for k, v in fake.items()}}
    return subprocess.run(["sh", str(ROOT / "tools" / "platform_stack.sh")], env=env, capture_output=True, text=True,
                          check=True)


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_environment_file_pins_every_pip_package_exactly(stack):
    env = yaml.safe_load(STACKS[stack].env_file.read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert sorted(conda) == ["pip", "python=3.11"]
    for pin in pip_pins(STACKS[stack].env_file):
        req = Requirement(pin)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", pin
    names = {canonicalize_name(Requirement(p).name) for p in pip_pins(STACKS[stack].env_file)}
    required = {"jupyterlab", "papermill", "dvc", "nbdev", "pandas", "scikit-learn", "tensorflow-data-validation",
                "pytest", "ipykernel", "skops", "dill", "uv"}
    assert required <= names, required - names


def test_the_stacks_differ_only_where_tfdv_forces_them():
    "The tools a team uses day to day are the same versions on both stacks; TFDV's own stack is what differs."
    pins = {s: {canonicalize_name(Requirement(p).name): p for p in pip_pins(STACKS[s].env_file)} for s in STACK_NAMES}
    assert pins["default"].keys() <= pins["modern"].keys()
    differ = {n for n in pins["default"] if pins["default"][n] != pins["modern"][n]}
    # pyspark follows numpy: 3.5.2 and later cap it below 2, so the modern stack's numpy needs pyspark 4
    assert differ == {"tensorflow-data-validation", "tensorflow", "apache-beam", "dill", "pandas", "numpy", "pyarrow", "pyspark"}
    for stack, expected in EXPECTED.items():
        for name, prefix in expected.items():
            assert str(Requirement(pins[stack][name]).specifier)[2:].startswith(prefix), (stack, pins[stack][name])


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_lock_agrees_with_its_environment_file(stack):
    locked, spec = lock_versions(stack), STACKS[stack]
    for pin in pip_pins(spec.env_file):
        req = Requirement(pin)
        assert locked.get(canonicalize_name(req.name)) == {str(next(iter(req.specifier)).version)}, \
            f"{pin} differs from {spec.lock_file.name}: run `make lock`"
    stamp = next(l for l in spec.lock_file.read_text().splitlines() if l.startswith(spec.digest_prefix))
    assert stamp == spec.digest_prefix + pins_digest(pip_pins(spec.env_file)), \
        f"{spec.env_file.name} changed since the lock: run `make lock`"


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_lock_has_hashes_for_every_package(stack):
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", STACKS[stack].lock_file.read_text().split("\n", 2)[2])
    assert len(blocks) > 200 and all("--hash=sha256:" in b for b in blocks)


def test_modern_lock_is_universal():
    "One modern lock serves Linux and macOS: platform-only packages sit behind markers, not in a second file."
    text = STACKS["modern"].lock_file.read_text()
    assert re.search(r"^appnope==\S+ ; sys_platform == 'darwin'", text, re.M)  # IPython's, macOS only
    assert re.search(r"^jeepney==\S+ ; sys_platform == 'linux'", text, re.M)   # keyring's, Linux only


def test_installed_environment_matches_its_lock():
    # In a fresh interpreter: once imported, setuptools puts its vendored *.dist-info on sys.path.
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    listed = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    installed = {canonicalize_name(name): version for name, version in listed.items()}
    # The entries whose markers hold here (a universal lock also lists pywin32 for Windows, appnope for macOS).
    here = [r for r in lock_requirements(installed_stack()) if r.marker is None or r.marker.evaluate()]
    assert len(here) > 200
    wrong = {r.name: (str(r.specifier), installed.get(canonicalize_name(r.name))) for r in here
             if installed.get(canonicalize_name(r.name)) != next(iter(r.specifier)).version}
    assert not wrong, f"installed versions differ from the lock (name: (locked, installed)): {wrong}"


def test_tfdv_imports_with_its_pinned_stack():
    code = ("import tensorflow_data_validation as tfdv, dill, pandas, numpy, pyarrow, tensorflow;"
            "print(tfdv.__version__, pandas.__version__, numpy.__version__, pyarrow.__version__, tensorflow.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}).stdout.split()
    expected = EXPECTED[installed_stack()]
    names = ["tensorflow-data-validation", "pandas", "numpy", "pyarrow", "tensorflow"]
    assert all(v.startswith(expected[n]) for n, v in zip(names, out, strict=True)), (out, expected)


def test_this_machine_gets_the_stack_it_can_run():
    "`make env` installs the stack tools/platform_stack.sh names for this machine (or STACK, when set), and this is it."
    chosen = os.environ.get("STACK") or platform_stack().stdout.strip()
    assert chosen == installed_stack()
    made = subprocess.run(["make", "-n", "-p", "env"], cwd=ROOT, capture_output=True, text=True).stdout
    assert re.search(rf"^LOCK := {re.escape(STACKS[chosen].lock_file.name)}$", made, re.M)
    assert re.search(rf"^ENV_FILE := {re.escape(STACKS[chosen].env_file.name)}$", made, re.M)


@pytest.mark.parametrize("os_name, arch, glibc, stack", [
    ("Darwin", "arm64", None, "modern"),
    ("Linux", "x86_64", "2.41", "modern"),   # Debian 13
    ("Linux", "x86_64", "2.39", "modern"),   # Ubuntu 24.04: TFDV 1.21's manylinux_2_39 floor
    ("Linux", "x86_64", "2.38", "default"),
    ("Linux", "x86_64", "2.36", "default"),  # Debian 12
    ("Linux", "x86_64", "2.4", "default"),   # compared as numbers, not text
    ("Linux", "x86_64", "3.0", "modern"),
])
def test_platform_stack_choice(os_name, arch, glibc, stack):
    fake = {"os": os_name, "arch": arch} | ({"glibc": glibc} if glibc else {})
    result = platform_stack(**fake)
    assert result.stdout.strip() == stack and not result.stderr


@pytest.mark.parametrize("os_name, arch, glibc", [("Darwin", "x86_64", None), ("Linux", "aarch64", "2.41"),
                                                  ("Linux", "x86_64", ""), ("MINGW64_NT-10.0", "x86_64", None)])
def test_platform_stack_warns_where_no_stack_installs(os_name, arch, glibc):
    fake = {"os": os_name, "arch": arch} | ({"glibc": glibc} if glibc is not None else {})
    result = platform_stack(**fake)
    assert result.stdout.strip() in STACKS
    assert "install will fail" in result.stderr or "unsupported" in result.stderr


def test_make_env_takes_a_stack_override():
    other = next(s for s in STACK_NAMES if s != installed_stack())
    made = subprocess.run(["make", "-n", "-p", "env", f"STACK={other}"], cwd=ROOT, capture_output=True, text=True)
    lock = re.escape(STACKS[other].lock_file.name)
    assert re.search(rf"^LOCK := {lock}$", made.stdout, re.M)
    assert re.search(rf"(--require-hashes|-r) {lock}$", made.stdout, re.M), "a stack switch reinstalls"
    bad = subprocess.run(["make", "-n", "env", "STACK=bogus"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "STACK must be" in bad.stderr


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/tensorflow-data-validation/", timeout=10).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def resolve(tmp_path_factory):
    "Resolve a lock, as uv would install it, for another platform (needs PyPI: skipped offline)."
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable: cannot resolve for another platform")
    out_dir = tmp_path_factory.mktemp("resolved")

    def resolve(stack: str, platform: str):
        out = out_dir / f"{stack}-{platform}.txt"
        result = subprocess.run([sys.executable, "-m", "uv", "pip", "compile", str(STACKS[stack].lock_file),
                                 "--python-version", "3.11", "--python-platform", platform, "--no-header",
                                 "--no-annotate", "--quiet", "-o", str(out)], capture_output=True, text=True)
        resolved = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", out.read_text(), re.M)) if result.returncode == 0 else {}
        return result, {canonicalize_name(n): v for n, v in resolved.items()}
    return resolve


@pytest.mark.parametrize("platform", ["aarch64-apple-darwin", "x86_64-manylinux_2_39"])
def test_modern_lock_resolves_for_macos_and_current_linux(resolve, platform):
    "Every package of the modern lock has a file for the platform, and the lock alone closes the dependencies."
    result, resolved = resolve("modern", platform)
    assert result.returncode == 0, result.stderr
    locked = lock_versions("modern")
    assert resolved["tensorflow-data-validation"] == "1.21.0" and len(resolved) > 200
    assert {n: v for n, v in resolved.items() if v not in locked.get(n, ())} == {}


@pytest.mark.parametrize("stack, platform", [("modern", "x86_64-manylinux_2_36"), ("default", "aarch64-apple-darwin")])
def test_the_resolve_check_has_teeth(resolve, stack, platform):
    "Why there are two stacks: TFDV 1.21 has no wheel for glibc 2.36, TFDV 1.16.1 none for Apple Silicon."
    result, _ = resolve(stack, platform)
    assert result.returncode != 0 and "tensorflow-data-validation" in result.stderr and "platform tag" in result.stderr


def test_only_the_validate_stage_imports_tensorflow():
    light = ["core", "params", "tables", "project", "check", "cli", "catalog", "cleaning", "reporting", "modelling", "gate",
             "execution", "spark", "statistics", "snapshots",
             *(f"stages.{s}" for s in ["validate", "problem", "demo_data", "gather", "preprocess", "features", "select",
                                       "train", "evaluate", "score", "backtest", "monitor"])]
    code = (f"import sys; import {', '.join('ml_lifecycle.' + m for m in light)};"
            "print(sorted(m for m in ('tensorflow', 'tensorflow_data_validation', 'apache_beam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_importing_the_spark_module_starts_no_spark():
    "pyspark (and a JVM) only when a function of ml_lifecycle.spark is called: the pandas engine never pays for it."
    code = "import sys, ml_lifecycle.spark; print('pyspark' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_project_check_imports_no_model_library():
    "Every stage's command first checks every stage's contract, so importing the stage modules stays cheap."
    code = ("import sys; from ml_lifecycle.check import check_project; check_project(); "
            "print(sorted(m for m in ('sklearn', 'skops', 'scipy.stats', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def avx2_x86_64_linux() -> bool:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return False
    with open("/proc/cpuinfo") as f:
        return "avx2" in next((line for line in f if line.startswith("flags")), "").split()


@pytest.mark.skipif(not avx2_x86_64_linux(), reason="the OpenBLAS kernel is pinned on x86-64 Linux CPUs with AVX2 only")
def test_every_stage_process_runs_openblas_on_the_pinned_kernel():
    """OpenBLAS picks its kernel by CPU, and its kernels round the last bit differently: a toy logistic regression's
    mean probability printed 0.4474673591124627 on an AVX-512 machine (SkylakeX kernels) and 0.44746735911246277 on
    another of the same kind, one byte of an executed notebook. Every process that imports the project, whatever its
    CPU, runs numpy's and scipy's OpenBLAS (scikit-learn's BLAS) on the same kernels, unless the user sets one."""
    code = ("import ml_lifecycle.core, numpy, scipy.linalg, sklearn.linear_model; from threadpoolctl import threadpool_info;"
            "print(sorted({i.get('architecture') for i in threadpool_info() if i['internal_api'] == 'openblas'}))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert out == "['Haswell']", out
    env["OPENBLAS_CORETYPE"] = "Sandybridge"   # a user's own choice wins
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert out == "['Sandybridge']", out
