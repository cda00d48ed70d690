"""Pipeline figures, printed side by side (never asserted): forced `dvc repro -f` seconds per stage, the same stages
run as plain Python (each stage's `run(params, root)` in its own process: the script variant, built here), the
notebook/script ratio, no-op `dvc repro` against `dvc status`, and how many DVC outputs differ between two forced runs.

Everything runs in a throw-away copy of the project (without .venv and the DVC cache), so the clone is untouched.
Usage: python tools/bench_pipeline.py [--keep]   (--keep leaves the copy and prints where it is)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DONE = re.compile(r"stage '([^']+)' done in ([0-9.]+)s")
SCRIPT = ("import sys; from pathlib import Path; from ml_lifecycle.core import stage_module, stage_params; "
          "stage, root = sys.argv[1], Path.cwd(); m = stage_module(stage); "
          "m.run(stage_params(stage, 'params.yaml', m.PARAMS_SCHEMA, root), root)")


def sh(cmd: list[str], cwd: Path) -> tuple[float, str, int]:
    "Run `cmd` in `cwd`; its wall seconds, its combined output and its peak memory (MB, from wait4)."
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{text[-3000:]}")
    return seconds, text, usage.ru_maxrss // 1024


def declared_outputs(root: Path) -> dict[str, list[str]]:
    "Every output path dvc.yaml declares (outs, metrics, plots), by stage."
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    paths = lambda items: [next(iter(i)) if isinstance(i, dict) else i for i in items or []]
    return {name: paths(s.get("outs")) + paths(s.get("metrics")) + paths(s.get("plots")) for name, s in stages.items()}


def digest(path: Path) -> str:
    "One hash of a file or of a folder's files (names and bytes)."
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def forced_run(copy: Path) -> tuple[float, dict[str, float], dict[str, str]]:
    "`dvc repro -f`: total seconds, seconds per stage (the CLI's 'done in' lines), and a hash of every output."
    seconds, text, _ = sh(["dvc", "repro", "-f"], copy)
    per_stage = {m.group(1): float(m.group(2)) for m in DONE.finditer(text)}
    hashes = {p: digest(copy / p) for outs in declared_outputs(copy).values() for p in outs}
    return seconds, per_stage, hashes


def script_run(copy: Path, stages: list[str]) -> dict[str, tuple[float, int]]:
    "Each stage's `run(params, root)` in a fresh plain Python process, in dvc.yaml order: seconds and peak MB."
    return {stage: sh([sys.executable, "-c", SCRIPT, stage], copy)[::2] for stage in stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the project copy")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    copy = tmp / "project"
    shutil.copytree(ROOT, copy, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == ROOT and n in {".venv", ".pytest_cache"}] +
                                            [n for n in names if Path(d) == ROOT / ".dvc" and n in {"cache", "tmp"}])
    try:
        stages = list(declared_outputs(copy))
        print(f"project copy: {copy} ({len(stages)} stages)", flush=True)
        total1, nb_stage, first = forced_run(copy)
        total2, nb_stage2, second = forced_run(copy)
        differ = sorted(p for p in first if first[p] != second[p])
        status = min(sh(["dvc", "status"], copy)[0] for _ in range(3))
        noop = min(sh(["dvc", "repro"], copy)[0] for _ in range(3))
        scripts = script_run(copy, stages)

        print(f"\n{'stage':<12} {'notebook s':>10} {'(2nd run)':>10} {'script s':>9} {'ratio':>6} {'script peak MB':>15}")
        for stage in stages:
            nb, nb2, (sc, mb) = nb_stage.get(stage, float("nan")), nb_stage2.get(stage, float("nan")), scripts[stage]
            print(f"{stage:<12} {nb:>10.1f} {nb2:>10.1f} {sc:>9.1f} {nb / sc:>6.2f} {mb:>15}")
        nb_sum, sc_sum = sum(nb_stage.values()), sum(s for s, _ in scripts.values())
        print(f"{'sum':<12} {nb_sum:>10.1f} {sum(nb_stage2.values()):>10.1f} {sc_sum:>9.1f} {nb_sum / sc_sum:>6.2f}")
        print(f"\nforced `dvc repro -f` wall: {total1:.1f} s (second run {total2:.1f} s)")
        print(f"notebook/script ratio (sum of stage seconds): {nb_sum / sc_sum:.2f}x")
        print(f"no-op `dvc repro` {noop:.2f} s vs `dvc status` {status:.2f} s: {noop / status:.2f}x (best of 3)")
        print(f"outputs that differ between two forced runs: {len(differ)} of {len(first)}" +
              "".join(f"\n  {p}" for p in differ))
    finally:
        if args.keep:
            print(f"kept: {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
