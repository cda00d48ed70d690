"""The Spark engine's fixed costs on this machine, printed and never asserted: `make bench-spark`.

- starting a standalone cluster on loopback (a master and two workers, each a JVM) until both workers are ALIVE;
- a session's start on it (an application with an executor on each worker);
- TensorFlow's import in the executors' Python workers: the first TFDV statistics job against a second, on the same
  table (a Python worker stays alive between tasks, so only the first job pays);
- the behaviour features of a purchase log per bucket of customers on 1 and on 2 workers (`spark.cores.max`).

    python tools/bench_spark.py [--customers 200000]
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml_lifecycle.spark import apply_per_bucket, java_problem, spark_session, spark_statistics, start_cluster
from ml_lifecycle.snapshots import behaviour_features


def timed(what, call):
    start = time.perf_counter()
    value = call()
    print(f"{what:<58} {time.perf_counter() - start:7.1f} s")
    return value


def purchase_log(customers, seed=0):
    rng = np.random.default_rng(seed)
    n = customers * 10
    log = pd.DataFrame({"customer_id": rng.integers(0, customers, n), "amount": rng.gamma(2, 20, n).round(2),
                        "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s")})
    snapshots = pd.DataFrame({"customer_id": np.tile(np.arange(customers), 2),
                              "cutoff": np.repeat(pd.to_datetime(["2024-07-01", "2024-10-01"]), customers)})
    return log.sort_values(["timestamp", "customer_id", "amount"], kind="stable").reset_index(drop=True), snapshots


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    customers = parser.parse_args().customers
    if java_problem():
        print(f"skipped: {java_problem()}")
        return
    log, snapshots = purchase_log(customers)
    names = list(behaviour_features(log.head(100), snapshots.head(10), "customer_id", [30, 90]).columns)
    schema = ", ".join(f"{c} {'long' if c == 'customer_id' else 'timestamp' if c == 'cutoff' else 'double'}" for c in names)
    def features(events, snaps):
        events = events.sort_values(["timestamp", "customer_id", "amount"], kind="stable")
        return behaviour_features(events, snaps, "customer_id", [30, 90]).astype({c: "float64" for c in names[2:]})
    print(f"Spark fixed costs, 2 workers of 1 core and 3 GB on loopback; {customers:,} customers, {len(log):,} events")
    folder = Path(tempfile.mkdtemp(prefix="bench-spark-"))   # the cluster reads files, as a stage reads data/raw
    log.to_parquet(folder / "events.parquet", index=False)
    snapshots.to_parquet(folder / "snapshots.parquet", index=False)
    cluster = timed("cluster start (master and 2 workers ALIVE)", lambda: start_cluster(2, 1, "3g"))
    try:
        for cores in (1, 2):
            spark = timed(f"session start, spark.cores.max={cores}",
                          lambda: spark_session(cluster.master_url, {"spark.cores.max": cores, "spark.executor.memory": "2g"}))
            events, snaps = (spark.read.parquet(str(folder / name)) for name in ("events.parquet", "snapshots.parquet"))
            if cores == 2:
                table = events.drop("timestamp").repartition(8).cache()
                table.count()
                timed("TFDV statistics, first job (TensorFlow imported in workers)", lambda: spark_statistics(table))
                timed("TFDV statistics, second job (workers warm)", lambda: spark_statistics(table))
            timed(f"behaviour features per bucket (64 buckets), {cores} core(s)",
                  lambda: apply_per_bucket(events, snaps, "customer_id", 64, features, schema).count())
            spark.stop()
    finally:
        cluster.stop()
    start = time.perf_counter()
    behaviour_features(log, snapshots, "customer_id", [30, 90])
    print(f"{'behaviour features in pandas, one process':<58} {time.perf_counter() - start:7.1f} s")
    print(f"driver peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
