"""Benchmark the validate stage: wall time and peak memory, in memory (pandas) and on Apache Beam.

For each size, the demo generator and the gather stage write raw tables into a temporary project; then, each in a
fresh child process, the statistics of both tables are computed (in memory, or by a Beam DirectRunner pipeline with
2 worker processes) and checked against the committed schemas and drift thresholds (the in-memory statistics of the
same data serve as the reference, so every comparator runs). Wall time excludes the ~12 s TFDV import. Peak memory is
the largest resident set of the whole process tree (driver plus Beam workers), sampled every 0.1 s; a run beyond
BENCH_MEMORY_LIMIT_MB (default 14000) is stopped and reported as such.

Usage: python tools/bench_validate.py [n_customers ...]   (default: 20000 200000 1000000); `make bench-validate`.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
BEAM_OPTIONS = {"runner": "DirectRunner", "direct_num_workers": 2, "direct_running_mode": "multi_processing"}
MEMORY_LIMIT = int(os.environ.get("BENCH_MEMORY_LIMIT_MB", 14_000)) * 2**20   # a shared machine: stop a run beyond it

CHILD = r"""
import json, sys, time
from pathlib import Path
from ml_lifecycle import gate as g
from ml_lifecycle.stages import validate as v
from ml_lifecycle.tables import read_table
import tensorflow_data_validation   # noqa: F401  (the gate imports it on first use: load it before the clock starts)
project, engine, options = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
print("imported", flush=True)
started, rows, anomalies = time.perf_counter(), {}, 0
for table in ("customers", "events"):
    source = project / "data/raw" / f"{table}.parquet"
    if engine == "beam":
        stats = v.beam_statistics(str(source), options)
    else:
        stats = g.compute_statistics(read_table(source, "bench"))
    reference = v.read_statistics(project / f"{table}.reference.pb") if (project / f"{table}.reference.pb").is_file() else stats
    v.write_statistics(stats, project / f"{table}.reference.pb")
    result = g.check_statistics(stats, table, g.load_schema(table, Path(sys.argv[4])), reference=reference, stage="validate")
    rows[table], anomalies = result["rows"], anomalies + len(result["anomalies"])
print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows, "anomalies": anomalies}), flush=True)
"""


def tree_rss(process: psutil.Process) -> int:
    "Resident memory of a process and all its descendants, in bytes."
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(project: Path, engine: str) -> dict:
    "Run one validation in a child process; its result, and the peak memory of its process tree."
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(project), engine, json.dumps(BEAM_OPTIONS), str(ROOT)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    watched, peak, lines = psutil.Process(child.pid), 0, []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    baseline = None
    while child.poll() is None:
        peak = max(peak, tree_rss(watched))
        if baseline is None and lines:   # the child has imported TFDV and not yet started
            baseline = tree_rss(watched)
        if peak > MEMORY_LIMIT:
            for p in [*watched.children(recursive=True), watched]:
                p.kill()
            child.wait()
            return {"seconds": float("nan"), "rows": {}, "anomalies": "-", "peak_mb": peak / 2**20,
                    "after_import_mb": (baseline or 0) / 2**20, "stopped": True}
        time.sleep(0.1)
    reader.join()
    if child.returncode != 0:
        raise RuntimeError(f"{engine} run failed ({child.returncode}): {''.join(lines)[-2000:]}")
    result = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    return {**result, "peak_mb": peak / 2**20, "after_import_mb": (baseline or 0) / 2**20}


def make_project(folder: Path, n_customers: int) -> Path:
    "A temporary project holding the raw tables of a demo business with `n_customers`."
    from ml_lifecycle.stages.demo_data import generate_demo_sources
    from ml_lifecycle.stages.gather import gather
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (folder / "dvc.yaml").touch()
    (folder / "params.yaml").touch()
    demo = params["demo_data"]
    generate_demo_sources(n_customers, demo["start_date"], demo["end_date"], demo["seed"], root=folder)
    gather(params["gather"], root=folder)
    return folder


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [20_000, 200_000, 1_000_000]
    print(f"validate: statistics of customers + events, checked against data/schema (2 cores; Beam: {BEAM_OPTIONS})\n")
    print("| customers | events | engine | wall time (s) | peak memory (MB) | after import (MB) | anomalies |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp), n)
            for engine in ("pandas", "beam"):
                r = measure(project, engine)
                if r.get("stopped"):
                    print(f"| {n:,} customers | | {engine} | stopped | > {MEMORY_LIMIT / 2**20:,.0f} | "
                          f"{r['after_import_mb']:,.0f} | - |", flush=True)
                    continue
                print(f"| {r['rows']['customers']:,} | {r['rows']['events']:,} | {engine} | {r['seconds']:.1f} | "
                      f"{r['peak_mb']:,.0f} | {r['after_import_mb']:,.0f} | {r['anomalies']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
