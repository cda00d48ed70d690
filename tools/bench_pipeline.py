"""Pipeline figures, printed side by side (never asserted): forced `dvc repro -f` seconds per stage; each stage's
command (`ml-lifecycle run <stage>`) against the same cells run as a plain Python script (each notebook's code cells as
one file: the script variant, built here), each in its own process, and each stage's bare `run(params, root)`; the
notebook/script ratio (at every size); no-op `dvc repro` against `dvc status`;
how many DVC outputs differ between two forced runs in two copies at different paths; the pipeline's seconds and
peak memory per stage at several sizes (`demo_data.n_customers`); and each stage notebook run by papermill with the
in-process engine (`ml_lifecycle.execution`) against papermill's own engine, a Jupyter `python3` kernel.

Everything runs in throw-away copies of the project (without .venv and the DVC cache), so the clone is untouched.
Peak memory is the resident memory of a stage's whole process tree (the stage's process and any workers), sampled
every 0.2 s; a run beyond BENCH_MEMORY_LIMIT_MB (default 14000) is stopped and reported as such.
Usage: python tools/bench_pipeline.py [--sizes N ...] [--keep]   (`make bench-pipeline SIZES="20000 200000"`)
       python tools/bench_pipeline.py --engines-only [--stages problem train evaluate] [--rounds 3]
       (the engine comparison alone, in a copy of this clone's outputs: after `dvc repro`)
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from ml_lifecycle import catalog

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DONE = re.compile(r"stage '([^']+)' done in ([0-9.]+)s")
SCRIPT = ("import sys; from pathlib import Path; from ml_lifecycle.check import stage_module; from ml_lifecycle.params import stage_params; "
          "stage, root = sys.argv[1], Path.cwd(); m = stage_module(stage); "
          "m.run(stage_params(stage, 'params.yaml', m.PARAMS_SCHEMA, root), root)")
# A stage notebook (its check cells left out, as a stage run leaves them) run by papermill in a fresh process, from
# nbs/, with the in-process engine or (argument "kernel") papermill's default engine and a python3 kernel.
ENGINE_SCRIPT = ("import os, sys; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3'); import papermill as pm; "
                 "from ml_lifecycle.execution import ENGINE; "
                 "pm.execute_notebook(sys.argv[1], sys.argv[2], parameters={'params_file': 'params.yaml'}, cwd='.', "
                 "engine_name=None if sys.argv[3] == 'kernel' else ENGINE, kernel_name='python3', progress_bar=False, "
                 "request_save_on_cell_execute=False)")
ENGINES = ("in-process", "kernel")
SIZES = [20_000, 200_000, 1_000_000]
MEMORY_LIMIT = int(os.environ.get("BENCH_MEMORY_LIMIT_MB", 14_000)) * 2**20   # a shared machine: stop a run beyond it
MB = 2**20


@dataclass
class Run:
    "One command's wall seconds, output, peak tree memory (MB) in all and per stage, and whether it was stopped."
    seconds: float
    text: str
    peak_mb: float
    stage_mb: dict[str, float] = field(default_factory=dict)
    stopped: bool = False
    returncode: int = 0


def stage_of(process: psutil.Process) -> str | None:
    "The stage an `ml-lifecycle run <stage>` process runs, else None."
    try:
        cmd = process.cmdline()
    except psutil.Error:
        return None
    for i, arg in enumerate(cmd[:-2]):
        if Path(arg).name == "ml-lifecycle" and cmd[i + 1] == "run":
            return cmd[i + 2]
    return None


def tree_rss(process: psutil.Process) -> tuple[int, dict[str, int]]:
    "Resident bytes of a process and its descendants, and of each `ml-lifecycle run <stage>` subtree."
    total, stages = 0, {}
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0, {}
    for p in tree:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        if (stage := stage_of(p)) is not None:
            try:
                stages[stage] = stages.get(stage, 0) + rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            except psutil.Error:
                pass
    return total, stages


def sh(cmd: list[str], cwd: Path, check: bool = True) -> Run:
    "Run `cmd` in `cwd`: wall seconds, combined output, and peak memory of its process tree (in all and per stage)."
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    peak, stage_peak, stopped, running = 0, {}, [False], True

    def watch(proc: subprocess.Popen) -> None:
        nonlocal peak
        watched = psutil.Process(proc.pid)
        while running:
            total, stages = tree_rss(watched)
            peak = max(peak, total)
            for stage, rss in stages.items():
                stage_peak[stage] = max(stage_peak.get(stage, 0), rss)
            if total > MEMORY_LIMIT:
                stopped[0] = True
                for p in [*watched.children(recursive=True), watched]:
                    p.kill()
                return
            time.sleep(0.2)

    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        watcher = threading.Thread(target=watch, args=(proc,), daemon=True)
        watcher.start()
        proc.wait()
        seconds = time.perf_counter() - start
        running = False
        watcher.join()
        out.seek(0)
        text = out.read()
    if proc.returncode and check and not stopped[0]:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{text[-3000:]}")
    return Run(seconds, text, peak / MB, {s: b / MB for s, b in stage_peak.items()}, stopped[0], proc.returncode)


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


def forced_run(copy: Path) -> tuple[Run, dict[str, float], dict[str, str]]:
    "`dvc repro -f`: the run, seconds per stage (the CLI's 'done in' lines), and a hash of every output."
    run = sh(["dvc", "repro", "-f"], copy, check=False)
    if run.stopped:
        return run, {}, {}
    if run.returncode:
        sys.exit(f"dvc repro -f failed in {copy}:\n{run.text[-3000:]}")
    per_stage = {m.group(1): float(m.group(2)) for m in DONE.finditer(run.text)}
    hashes = {p: digest(copy / p) for outs in declared_outputs(copy).values() for p in outs}
    return run, per_stage, hashes


def script_run(copy: Path, stages: list[str]) -> dict[str, Run]:
    "Each stage's `run(params, root)` in a fresh plain Python process, in dvc.yaml order."
    return {stage: sh([sys.executable, "-c", SCRIPT, stage], copy) for stage in stages}


def cells_script(notebook: Path, params_file: str = "params.yaml") -> str:
    """The notebook's code cells as one plain Python script, as a stage run executes them: in order, the check cells
    left out as the engine skips them (`execution.is_check`), `#| eval: false` cells kept, the parameter papermill
    injects after the `parameters` cell; line magics dropped."""
    import nbformat
    from ml_lifecycle.execution import RUN_HEADING, is_check
    lines, in_run_section = [], False
    for cell in nbformat.read(notebook, as_version=4).cells:
        in_run_section |= cell.cell_type == "markdown" and cell.source.startswith(RUN_HEADING)
        if cell["cell_type"] != "code" or is_check(cell, in_run_section):
            continue
        source = "".join(cell["source"])
        lines += [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))] + [""]
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            lines += [f"params_file = {params_file!r}", ""]
    return "\n".join(lines)


def notebook_run(copy: Path, stages: list[str]) -> dict[str, Run]:
    "Each stage's own command, `ml-lifecycle run <stage>` (check, then the notebook), in a fresh process."
    return {stage: sh(["ml-lifecycle", "run", stage], copy) for stage in stages}


def cells_run(copy: Path, stages: list[str]) -> dict[str, Run]:
    "Each stage notebook's cells as a plain Python script in a fresh process, from nbs/ as papermill runs it."
    from ml_lifecycle.cli import stage_notebook
    runs = {}
    for stage in stages:
        script = copy / ".bench-scripts" / f"stage_{stage}.py"   # not select.py: it would shadow the module select
        script.parent.mkdir(exist_ok=True)
        script.write_text(cells_script(stage_notebook(stage, copy)))
        runs[stage] = sh([sys.executable, str(script)], copy / "nbs")
    return runs


def staged_notebook(notebook: Path, dest: Path) -> Path:
    "The notebook without the check cells a stage run skips (`execution.is_check`), at `dest`: what either engine runs."
    import nbformat
    from ml_lifecycle.execution import RUN_HEADING, is_check
    nb, cells, in_run_section = nbformat.read(notebook, as_version=4), [], False
    for cell in nb.cells:
        in_run_section |= cell.cell_type == "markdown" and cell.source.startswith(RUN_HEADING)
        if not is_check(cell, in_run_section):
            cells.append(cell)
    nb.cells = cells
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


def engine_runs(copy: Path, stages: list[str], rounds: int) -> dict[tuple[str, str], list[Run]]:
    """Each stage notebook run `rounds` times with each engine (alternating), each run a fresh process from nbs/ as a
    stage run's: {(stage, engine): runs}. The executed copies stay in .bench-scripts/ for `same_record`."""
    from ml_lifecycle.cli import stage_notebook
    runs: dict[tuple[str, str], list[Run]] = {}
    for stage in stages:
        source = staged_notebook(stage_notebook(stage, copy), copy / ".bench-scripts" / f"stage_{stage}.ipynb")
        for _ in range(rounds):
            for engine in ENGINES:
                target = source.with_name(f"stage_{stage}.{engine}.ipynb")
                runs.setdefault((stage, engine), []).append(
                    sh([sys.executable, "-c", ENGINE_SCRIPT, str(source), str(target), engine], copy / "nbs"))
    return runs


def same_record(copy: Path, stage: str) -> int:
    "How many cells' outputs or execution counts differ between the two engines' executed copies of `stage`."
    import json
    from ml_lifecycle.cli import strip_volatile
    cells = {engine: json.loads(strip_volatile(copy / ".bench-scripts" / f"stage_{stage}.{engine}.ipynb", copy).read_text())["cells"]
             for engine in ENGINES}
    record = lambda cell: (cell.get("execution_count"), cell.get("outputs"))
    return sum(record(a) != record(b) for a, b in zip(*cells.values())) + abs(len(cells["kernel"]) - len(cells["in-process"]))


def engine_table(copy: Path, stages: list[str], rounds: int) -> None:
    "Print seconds per stage notebook, in-process engine against a kernel (median of `rounds` fresh processes)."
    import statistics
    runs = engine_runs(copy, stages, rounds)
    median = lambda stage, engine: statistics.median(r.seconds for r in runs[stage, engine])
    print(f"\n## Papermill engines: in-process against a python3 kernel (median of {rounds} processes per stage)\n")
    print("(each: a fresh process running the stage notebook, check cells left out, with papermill from nbs/; "
          "kernel: papermill's default engine, ipykernel; peak MB: the whole process tree, kernel included; "
          "differing cells: outputs or counts that differ between the two executed copies, volatile fields dropped)\n")
    print("| stage | in-process s | kernel s | kernel - in-process s | in-process peak MB | kernel peak MB | differing cells |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage in stages:
        here, kernel = median(stage, "in-process"), median(stage, "kernel")
        peak = {e: max(r.peak_mb for r in runs[stage, e]) for e in ENGINES}
        print(f"| {stage} | {here:.2f} | {kernel:.2f} | {kernel - here:+.2f} | {peak['in-process']:,.0f} | "
              f"{peak['kernel']:,.0f} | {same_record(copy, stage)} |")
    sums = {e: sum(median(stage, e) for stage in stages) for e in ENGINES}
    print(f"| **sum** | {sums['in-process']:.2f} | {sums['kernel']:.2f} | {sums['kernel'] - sums['in-process']:+.2f} | | | |")


def copy_project(dest: Path) -> Path:
    "A copy of the project at `dest`, without the environment and the DVC cache."
    shutil.copytree(ROOT, dest, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == ROOT and n in {".venv", ".pytest_cache"}] +
                                            [n for n in names if Path(d) == ROOT / ".dvc" and n in {"cache", "tmp"}])
    return dest


def set_customers(copy: Path, n: int) -> None:
    "Set `demo_data.n_customers` in the copy's params.yaml, keeping the rest of the file (comments included)."
    params = copy / "params.yaml"
    text, count = re.subn(r"(?m)^(demo_data:.*\n(?:[ \t]+.*\n|\n)*?[ \t]+n_customers:[ \t]*)\d+", rf"\g<1>{n}",
                          params.read_text())
    if count != 1:
        sys.exit("params.yaml: demo_data.n_customers not found")
    params.write_text(text)


def current_customers(root: Path) -> int:
    return int(yaml.safe_load((root / "params.yaml").read_text())["demo_data"]["n_customers"])


def size_table(title: str, sizes: list[int], columns: list[str], stages: list[str], cells) -> None:
    "Print a table with a row per stage and, for each size, the `columns` that `cells(size, stage)` fills."
    print(f"\n## {title}\n")
    print("| stage | " + " | ".join(f"{n:,}: {column}" for n in sizes for column in columns) + " |")
    print("|---|" + "---:|" * (len(sizes) * len(columns)))
    for stage in stages:
        print(f"| {stage} | " + " | ".join(cells(n, stage) for n in sizes) + " |")


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or x != x else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=SIZES,
                        help="demo_data.n_customers values for the peak-memory table (default: 20000 200000 1000000)")
    parser.add_argument("--keep", action="store_true", help="keep the project copies")
    parser.add_argument("--engines-only", action="store_true",
                        help="only the engine comparison, in a copy of this clone with its outputs (after dvc repro)")
    parser.add_argument("--stages", nargs="*", help="the stages of the engine comparison (default: every stage)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per stage and engine in the engine comparison")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        if args.engines_only:
            copy = copy_project(tmp / "project")
            if not (copy / catalog.CHECK_RECORD).is_file():
                sys.exit("no pipeline outputs to run the stages on: run `dvc repro` first")
            engine_table(copy, args.stages or [s for s in declared_outputs(copy) if s != catalog.CHECK_STAGE], args.rounds)
            return
        copy = copy_project(tmp / "project")
        other = copy_project(tmp / "elsewhere" / "another-copy")   # a second clone at another path
        stages = [s for s in declared_outputs(copy) if s != catalog.CHECK_STAGE]   # the check stage runs no notebook
        default_n = current_customers(copy)
        print(f"project copies: {copy} and {other} ({len(stages)} stages, {default_n:,} customers)", flush=True)
        run1, nb_stage, first = forced_run(copy)
        run2, nb_stage2, second = forced_run(other)
        shutil.rmtree(other, ignore_errors=True)
        differ = sorted(p for p in first if first[p] != second.get(p))
        status = min(sh(["dvc", "status"], copy).seconds for _ in range(3))
        noop = min(sh(["dvc", "repro"], copy).seconds for _ in range(3))
        notebooks = notebook_run(copy, stages)
        scripts = cells_run(copy, stages)
        bare = script_run(copy, stages)

        print(f"\n## Forced run at {default_n:,} customers: notebooks (papermill) against the same cells as scripts\n")
        print("(in dvc repro -f: a stage's seconds as its command reports them, in each copy; notebook: the stage's "
              "command `ml-lifecycle run <stage>` (the project check, then the notebook) as a process, start to end; "
              "script: the code cells a stage run executes (checks left out), as one Python file, in a process; run() only: the "
              "stage's `run(params, root)` alone, without the notebook's checks)\n")
        print("| stage | in dvc repro -f s | 2nd copy s | notebook s | script s | ratio | run() only s | notebook peak MB "
              "| script peak MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for stage in stages:
            nb, sc = notebooks[stage], scripts[stage]
            print(f"| {stage} | {fmt(nb_stage.get(stage))} | {fmt(nb_stage2.get(stage))} | {nb.seconds:.1f} | "
                  f"{sc.seconds:.1f} | {nb.seconds / sc.seconds:.2f} | {bare[stage].seconds:.1f} | "
                  f"{fmt(run1.stage_mb.get(stage), ',.0f')} | {sc.peak_mb:,.0f} |")
        nb_sum, sc_sum = sum(r.seconds for r in notebooks.values()), sum(s.seconds for s in scripts.values())
        print(f"| **sum** | {sum(nb_stage.values()):.1f} | {sum(nb_stage2.values()):.1f} | {nb_sum:.1f} | {sc_sum:.1f} | "
              f"{nb_sum / sc_sum:.2f} | {sum(r.seconds for r in bare.values()):.1f} | | |")

        engine_table(copy, args.stages or stages, args.rounds)   # at the default size, before the sizes change the data

        print("\n## Summary\n")
        print("| figure | value |\n|---|---|")
        print(f"| forced `dvc repro -f` wall | {run1.seconds:.1f} s (second copy {run2.seconds:.1f} s) |")
        print(f"| notebook/script ratio (sum of the stages' process seconds) | {nb_sum / sc_sum:.2f}x |")
        print(f"| no-op `dvc repro` vs `dvc status` (best of 3) | {noop:.2f} s vs {status:.2f} s: {noop / status:.2f}x |")
        print(f"| outputs that differ between two forced runs (two copies) | {len(differ)} of {len(first)}"
              f"{': ' + ', '.join(differ) if differ else ''} |")

        sized: dict[int, tuple[Run, dict[str, float]]] = {}
        compared: dict[int, tuple[dict[str, Run], dict[str, Run]]] = {}   # size: (notebooks, scripts)
        for n in args.sizes:
            if n == default_n:
                sized[n], compared[n] = (run1, nb_stage), (notebooks, scripts)
                continue
            set_customers(copy, n)
            print(f"\n(forced run at {n:,} customers, then each stage as a notebook and as a script ...)", flush=True)
            run, per_stage, _ = forced_run(copy)
            sized[n] = run, per_stage
            if not run.stopped:
                compared[n] = notebook_run(copy, stages), cells_run(copy, stages)
        if sized:
            sizes = list(sized)
            size_table("Pipeline at each size: forced-run seconds and peak memory (MB) per stage", sizes, ["s", "peak MB"],
                       stages, lambda n, stage: f"{fmt(sized[n][1].get(stage))} | {fmt(sized[n][0].stage_mb.get(stage), ',.0f')}")
            walls = [(f"stopped beyond {MEMORY_LIMIT / MB:,.0f} MB" if sized[n][0].stopped else
                      f"{sized[n][0].seconds:.1f}") + f" | {sized[n][0].peak_mb:,.0f}" for n in sizes]
            print("| **pipeline** (wall; peak of the whole tree) | " + " | ".join(walls) + " |")
        if compared:
            sizes = list(compared)
            size_table("Notebook against script at each size: each stage's process seconds", sizes,
                       ["notebook s", "script s"], stages,
                       lambda n, stage: f"{compared[n][0][stage].seconds:.1f} | {compared[n][1][stage].seconds:.1f}")
            sums = {n: (sum(r.seconds for r in compared[n][0].values()), sum(r.seconds for r in compared[n][1].values()))
                    for n in sizes}
            print("| **sum** | " + " | ".join(f"{sums[n][0]:.1f} | {sums[n][1]:.1f}" for n in sizes) + " |")
            print("| **ratio** | " + " | ".join(f"{sums[n][0] / sums[n][1]:.3f}x | " for n in sizes) + " |")
    finally:
        if args.keep:
            print(f"\nkept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
