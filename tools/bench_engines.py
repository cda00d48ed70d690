"""The data engines side by side, printed and never asserted: `make bench-engines`.

The whole pipeline (`dvc repro`, the demo's sources included) in a throw-away copy of the project at
`--customers`, once per engine: pandas, and Spark on a standalone cluster started here on loopback (a master and
`--workers` workers of one core each, `--worker-memory` each). For every stage: seconds, and the peak resident memory
of the stage's whole process tree plus, on Spark, the cluster's (its daemons, executors and their Python workers),
sampled every 0.25 s; and the machine's peak memory in use over the run. The fixed costs of the Spark engine
(cluster start, TensorFlow in the executors, 1 against 2 workers) are `make bench-spark`.

    python tools/bench_engines.py [--customers 1000000] [--engines pandas spark] [--workers 2] [--buckets 16]
                                  [--set train.fit_rows=1000000 ...] [--memory-limit-gb 16] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUNNING = re.compile(r"Running stage '([^']+)'")
DONE = re.compile(r"stage '([^']+)' done in ([0-9.]+)s")
GB = 1024 ** 3


def project_copy(dest: Path) -> Path:
    "The project's source files (what git tracks or would track) in a fresh git repository at `dest`."
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    subprocess.run("git init -q && git add -A && git -c user.email=b@b -c user.name=b commit -qm base", cwd=dest,
                   shell=True, check=True)
    return dest


def set_params(project: Path, changes: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node, keys = params, dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tree_rss(pids: list[int]) -> int:
    "Resident bytes of the processes `pids` and everything they started."
    total, seen = 0, set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid not in seen:
                    seen.add(proc.pid)
                    total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def repro(project: Path, cluster_pids: list[int], limit: int | None = None) -> tuple[dict, dict, int, str | None]:
    """`dvc repro` in `project`: seconds and peak tree memory per stage, the machine's peak memory in use, and the stage
    stopped when the run's memory (its process tree and the cluster's) passed `limit` bytes (None: it finished)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    current, peaks, seconds, machine, log, stopped = ["(start)"], {}, {}, [0], [], [None]
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss = tree_rss([proc.pid, *cluster_pids])
            peaks[current[0]] = max(peaks.get(current[0], 0), rss)
            if limit and rss > limit and stopped[0] is None:   # what the machine cannot hold: stop, say where
                stopped[0] = current[0]
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
            vm = psutil.virtual_memory()
            machine[0] = max(machine[0], vm.total - vm.available)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:
        log.append(line)
        if m := RUNNING.search(line):
            current[0] = m[1]
        if m := DONE.search(line):
            seconds[m[1]] = float(m[2])
    proc.wait()
    done.set()
    sampler.join()
    if proc.returncode and stopped[0] is None:
        tail = "".join(log[-40:])
        raise SystemExit(f"dvc repro failed in {project} ({proc.returncode}):\n{tail}")
    return seconds, peaks, machine[0], stopped[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--engines", nargs="+", default=["pandas", "spark"], choices=["pandas", "spark"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="6g")
    parser.add_argument("--executor-memory", default="5g")
    parser.add_argument("--buckets", type=int, default=16)
    parser.add_argument("--set", nargs="*", default=[], help="more params, e.g. train.fit_rows=1000000")
    parser.add_argument("--keep", action="store_true", help="keep the copies (their paths are printed)")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="stop a run whose memory passes this (e.g. 16: what a 24 GB machine can give it)")
    args = parser.parse_args()
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    results = {}
    for engine in args.engines:
        project = project_copy(Path(tempfile.mkdtemp(prefix=f"bench-{engine}-")) / "project")
        set_params(project, {"demo_data.n_customers": args.customers, **extra})
        cluster = None
        if engine == "spark":
            from ml_lifecycle.spark import java_problem, start_cluster
            if java_problem():
                print(f"spark skipped: {java_problem()}")
                continue
            start = time.perf_counter()
            cluster = start_cluster(args.workers, 1, args.worker_memory, log_dir=project.parent / "cluster")
            print(f"cluster of {args.workers} workers started in {time.perf_counter() - start:.1f} s")
            set_params(project, {"engine": "spark", "spark": {
                "master": cluster.master_url, "buckets": args.buckets,
                "conf": {"spark.executor.memory": args.executor_memory, "spark.cores.max": args.workers}}})
        subprocess.run("git -c user.email=b@b -c user.name=b commit -qam bench", cwd=project, shell=True, check=True)
        start = time.perf_counter()
        try:
            seconds, peaks, machine, stopped = repro(project, cluster.pids if cluster else [],
                                                     int(args.memory_limit_gb * GB) if args.memory_limit_gb else None)
        finally:
            if cluster:
                cluster.stop()
        results[engine] = (seconds, peaks, machine, time.perf_counter() - start)
        if stopped:
            print(f"{engine}: STOPPED in stage {stopped} after {results[engine][3]:.0f} s: its memory passed "
                  f"{args.memory_limit_gb:g} GB ({peaks[stopped] / GB:.1f} GB when stopped)")
        else:
            print(f"{engine}: dvc repro in {results[engine][3]:.0f} s, machine memory in use at most {machine / GB:.1f} GB"
                  f"{f' ({project})' if args.keep else ''}")
        if not args.keep:
            shutil.rmtree(project.parent, ignore_errors=True)
    stages = list(dict.fromkeys(s for r in results.values() for s in [*r[0], *r[1]] if s != "(start)"))
    print(f"\n{args.customers:,} customers: seconds and peak memory (GB; the stage's processes"
          f"{' and the cluster' if 'spark' in results else ''}) per stage")
    print(f"{'stage':<12}" + "".join(f"{e + ' s':>12}{e + ' GB':>12}" for e in results))
    for stage in stages:
        print(f"{stage:<12}" + "".join(f"{r[0].get(stage, float('nan')):>12.1f}{r[1].get(stage, 0) / GB:>12.2f}"
                                       for r in results.values()))
    print(f"{'total':<12}" + "".join(f"{r[3]:>12.0f}{r[2] / GB:>12.2f}" for r in results.values())
          + "   (wall seconds; the machine's peak memory in use)")


if __name__ == "__main__":
    main()
