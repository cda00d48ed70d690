"""The pipeline with `engine: spark` on a real two-worker standalone cluster on loopback: the demo's data stages per
bucket of customers give pandas' rows, reports and model; reruns write the same bytes; a worker lost mid-stage
costs a retry, not the run. Skipped, naming the reason, where Java is absent."""
import hashlib
import shutil
import threading
import time

import pandas as pd
import pytest

from conftest import SPARK_CONF, commit, run, set_params
from ml_lifecycle import catalog
from ml_lifecycle.spark import java_problem, standalone_cluster
from ml_lifecycle.tables import parquet_parts, read_table

pytestmark = [pytest.mark.demo,
              pytest.mark.skipif(java_problem() is not None, reason=f"no Spark cluster here: {java_problem()}")]

ORDERS = {catalog.UNITS: ["customer_id"], catalog.EVENTS: ["timestamp", "customer_id"],
          catalog.SNAPSHOTS: ["cutoff", "customer_id"], catalog.SERVING_SNAPSHOT: ["customer_id"],
          catalog.TRAIN: ["cutoff", "customer_id"], catalog.TEST: ["cutoff", "customer_id"],
          catalog.SERVING: ["customer_id"]}
SAME_FILES = [catalog.PREPROCESS_REPORT, catalog.COLUMNS_REPORT, catalog.CLEANING, catalog.FEATURE_SPEC,
              catalog.LEAKAGE_REPORT, catalog.CHOICE, catalog.MODEL, catalog.THRESHOLD, catalog.METRICS,
              catalog.SEGMENTS_JSON]


def on_spark(project, master, buckets=4):
    set_params(project, {("engine",): "spark", ("spark",): {"master": master, "buckets": buckets, "conf": SPARK_CONF}})
    commit(project, "engine: spark")


def digests(project, paths=tuple(ORDERS)):
    return {str(part.relative_to(project)): hashlib.sha256(part.read_bytes()).hexdigest()
            for path in paths for part in parquet_parts(project / path)}


@pytest.fixture(scope="module")
def spark_project(tiny_project, spark_cluster, tmp_path_factory):
    "The tiny project's copy switched to Spark on the test cluster, its pipeline rerun by `dvc repro`."
    project = tmp_path_factory.mktemp("spark") / "project"
    shutil.copytree(tiny_project, project, symlinks=True)   # with the pandas run's outputs and DVC cache
    on_spark(project, spark_cluster.master_url)
    run("dvc repro", project)
    return project


def test_the_data_stages_on_spark_give_pandas_rows_reports_and_model(tiny_project, spark_project):
    for path, order in ORDERS.items():
        assert len(parquet_parts(spark_project / path)) == 4, path   # one file per bucket
        got = read_table(spark_project / path, "test").sort_values(order, kind="stable").reset_index(drop=True)
        want = read_table(tiny_project / path, "test").sort_values(order, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=path)
    for path in SAME_FILES:   # the same sample, folds and seeds: the same model file, to the byte
        assert (spark_project / path).read_bytes() == (tiny_project / path).read_bytes(), path


def test_a_rerun_on_spark_writes_the_same_bytes(spark_project):
    before = digests(spark_project)
    run("dvc repro -f -s preprocess && dvc repro -f -s features", spark_project)
    assert digests(spark_project) == before
    assert "up to date" in run("dvc status", spark_project).stdout


def test_a_worker_lost_mid_stage_costs_a_retry_not_the_run(spark_project, tmp_path):
    before = digests(spark_project, [catalog.EVENTS, catalog.SNAPSHOTS, catalog.SERVING_SNAPSHOT])
    with standalone_cluster(workers=2, cores=1, memory="1g", log_dir=tmp_path) as lossy:
        set_params(spark_project, {("spark", "master"): lossy.master_url,
                                   ("spark", "conf"): {**SPARK_CONF, "spark.task.maxFailures": 4}})

        def kill_when_running():   # once the stage's application holds both workers' cores, one machine goes
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                apps = lossy.status().get("activeapps", [])
                if apps and apps[0].get("cores") == 2:
                    time.sleep(1.0)
                    lossy.kill_worker(0)
                    return
                time.sleep(0.2)

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        result = run("ml-lifecycle run preprocess", spark_project, check=False)
        killer.join()
        assert lossy.alive_workers() == 1
    assert result.returncode == 0, result.stdout + result.stderr
    assert digests(spark_project, [catalog.EVENTS, catalog.SNAPSHOTS, catalog.SERVING_SNAPSHOT]) == before
    assert not list((spark_project / catalog.INTERIM).rglob("*.tmp"))   # no half-written file left behind
