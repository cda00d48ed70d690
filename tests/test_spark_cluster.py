"""The Spark engine's ground: a real standalone cluster (a master and two workers, each a JVM) on loopback. Skipped,
naming the reason, where Java is absent."""
import threading
import time

import numpy as np
import pandas as pd
import pytest

from conftest import SPARK_CONF
from ml_lifecycle.spark import apply_per_bucket, java_problem, spark_session, spark_statistics, standalone_cluster
from ml_lifecycle.snapshots import behaviour_features

pytestmark = pytest.mark.skipif(java_problem() is not None, reason=f"no Spark cluster here: {java_problem()}")


@pytest.fixture(scope="module")
def cluster(spark_cluster):
    return spark_cluster


@pytest.fixture(scope="module")
def spark(cluster):
    session = spark_session(cluster.master_url, SPARK_CONF)
    yield session
    session.stop()


def events_and_snapshots(customers=500, events=6000, seed=0):
    rng = np.random.default_rng(seed)
    log = pd.DataFrame({"customer_id": rng.integers(0, customers, events), "amount": rng.gamma(2, 20, events).round(2),
                        "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, events), unit="s")})
    log = log.sort_values(["timestamp", "customer_id", "amount"], kind="stable").reset_index(drop=True)
    snapshots = pd.DataFrame({"customer_id": np.tile(np.arange(customers + 20), 2),
                              "cutoff": np.repeat(pd.to_datetime(["2024-07-01", "2024-10-01"]), customers + 20)})
    return log, snapshots


def test_both_workers_are_alive_and_an_application_gets_a_core_on_each(cluster, spark):
    assert cluster.alive_workers() == 2
    pids = spark.sparkContext.parallelize(range(40), 8).map(lambda _: __import__("os").getppid()).distinct().collect()
    assert len(pids) == 2, pids   # one Python daemon per executor: tasks ran on both workers
    apps = cluster.status()["activeapps"]
    assert len(apps) == 1 and apps[0]["cores"] == 2


def test_behaviour_features_per_bucket_on_the_cluster_equal_pandas_to_the_bit(spark):
    log, snapshots = events_and_snapshots()
    expected = behaviour_features(log, snapshots, "customer_id", [30, 90, 180])
    expected = expected.astype({c: "float64" for c in expected.columns if c not in ("customer_id", "cutoff")})
    schema = ", ".join(f"{c} {'long' if c == 'customer_id' else 'timestamp' if c == 'cutoff' else 'double'}" for c in expected)
    def per_bucket(events, snaps):
        events = events.sort_values(["timestamp", "customer_id", "amount"], kind="stable")
        return behaviour_features(events, snaps, "customer_id", [30, 90, 180]).astype(expected.dtypes.to_dict())
    got = apply_per_bucket(spark.createDataFrame(log, schema="customer_id long, amount double, timestamp timestamp"),
                           spark.createDataFrame(snapshots), "customer_id", 16, per_bucket, schema).toPandas()
    order = ["cutoff", "customer_id"]
    pd.testing.assert_frame_equal(got.sort_values(order).reset_index(drop=True),
                                  expected.sort_values(order).reset_index(drop=True), check_exact=True)


def test_statistics_merged_from_the_workers_equal_one_pass(spark):
    """TFDV statistics per partition on both workers, merged on the driver: counts, gaps, ranges and top values as one
    pass in pandas gives them; means to the last digits. A whole-number column with one gap is fractional in both."""
    from ml_lifecycle.gate import compute_statistics, feature_statistics
    log, _ = events_and_snapshots()
    table = log.drop(columns="timestamp").assign(plan=np.where(log.index % 3 == 0, "basic", "plus"),
                                                  visits=pd.array(np.arange(len(log)) % 7, dtype="Int64"))
    table.loc[5, "visits"] = pd.NA
    from pyspark.sql import functions as F
    frame = spark.createDataFrame(table.astype({"visits": "float64"}), schema="customer_id long, amount double, "
                                  "plan string, visits double").withColumn("visits", F.col("visits").cast("long"))
    merged = feature_statistics(spark_statistics(frame.repartition(6)))
    one_pass = feature_statistics(compute_statistics(table.astype({"visits": "float64"})))
    assert merged.keys() == one_pass.keys() == {"customer_id", "amount", "plan", "visits"}
    for name, expected in one_pass.items():
        got = merged[name]
        assert got.type == expected.type, name
        if expected.HasField("num_stats"):
            assert (got.num_stats.min, got.num_stats.max, got.num_stats.common_stats.num_missing) == \
                (expected.num_stats.min, expected.num_stats.max, expected.num_stats.common_stats.num_missing), name
            assert abs(got.num_stats.mean - expected.num_stats.mean) <= 1e-12 * abs(expected.num_stats.mean), name
        else:
            assert [v.value for v in got.string_stats.top_values] == [v.value for v in expected.string_stats.top_values]
    assert merged["visits"].num_stats.common_stats.num_missing == 1


def test_a_worker_killed_mid_job_costs_its_tasks_not_the_result(tmp_path):
    """A machine lost mid-stage: Spark runs the lost tasks again on the worker left, and the result is whole."""
    with standalone_cluster(workers=2, cores=1, memory="1g", log_dir=tmp_path) as lossy:
        session = spark_session(lossy.master_url, {"spark.executor.memory": "768m", "spark.task.maxFailures": "4"})
        try:
            rdd = session.sparkContext.parallelize(range(16), 16).map(lambda x: (time.sleep(0.5), x * x)[1])
            killer = threading.Timer(2.0, lossy.kill_worker, args=(0,))
            killer.start()
            total = rdd.sum()
            killer.join()
            assert total == sum(x * x for x in range(16))
            assert lossy.alive_workers() == 1
        finally:
            session.stop()
