"""The validate stage on Spark (`engine: spark`), on the real two-worker cluster: the tiny project's raw tables, which
the pipeline validated on pandas, validated again on Spark (the events as a folder of part files, as the Spark engine
gathers them). The same anomalies (none) and summary; the statistics' counts, missing values, ranges and top values
exactly the pandas run's, means to 1e-12, quantiles within the sketch's error; no drift against the pandas run's
statistics; the same bytes on a second run. Beam and Spark at once are refused by the check."""
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from _statistics import quantiles, rank_error
from conftest import SPARK_CONF, set_params

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from ml_lifecycle import catalog  # noqa: E402
from ml_lifecycle.check import check_project  # noqa: E402
from ml_lifecycle.core import StageError  # noqa: E402
from ml_lifecycle.gate import canonical_statistics, feature_statistics, load_schema, stats_options, to_tfdv_frame  # noqa: E402
from ml_lifecycle.params import stage_params  # noqa: E402
from ml_lifecycle.spark import java_problem  # noqa: E402
from ml_lifecycle.stages import validate  # noqa: E402
from ml_lifecycle.tables import read_table  # noqa: E402

pytestmark = [pytest.mark.demo,
              pytest.mark.skipif(java_problem() is not None, reason=f"no Spark cluster here: {java_problem()}")]
TABLES = ("customers", "events")


def run_validate(project):
    "What `ml-lifecycle run validate` does, in this process: the check, then the stage."
    check_project(project / "params.yaml", project, only="validate")
    return validate.run(stage_params("validate", project / "params.yaml", validate.PARAMS_SCHEMA, project), project)


def written(project) -> dict:
    "The bytes of the statistics (current and reference) and the reports a run writes."
    files = [catalog.statistics_file(t) for t in TABLES] + [catalog.reference_file(t) for t in TABLES] + \
        [catalog.STATISTICS_REPORT, catalog.ANOMALIES_JSON, catalog.VALIDATION_SUMMARY, catalog.DRIFT]
    return {f: (project / f).read_bytes() for f in files}


@pytest.fixture(scope="module")
def runs(tiny_project, spark_cluster, tmp_path_factory):
    """The pandas run's outputs (the tiny project's), then two Spark runs' outputs and summaries, on a copy whose
    events table is a folder of three part files."""
    project = tmp_path_factory.mktemp("spark-validate") / "project"
    shutil.copytree(tiny_project, project, symlinks=True)
    on_pandas = written(project)
    events = project / catalog.raw_table("events")
    table = pq.read_table(events)
    events.unlink()
    events.mkdir()
    cuts = [0, table.num_rows // 3, 2 * table.num_rows // 3, table.num_rows]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        pq.write_table(table.slice(a, b - a), events / f"part-{i:05d}.parquet")
    set_params(project, {("engine",): "spark", ("spark", "master"): spark_cluster.master_url,
                         ("spark", "conf"): SPARK_CONF})
    summaries, on_spark = [], []
    for _ in range(2):
        summaries.append(run_validate(project))
        on_spark.append(written(project))
    return {"project": project, "pandas": on_pandas, "spark": on_spark, "summaries": summaries}


def statistics(blob: bytes) -> dict:
    return feature_statistics(statistics_pb2.DatasetFeatureStatisticsList.FromString(blob))


def exact(blob: bytes) -> dict:
    "Per feature: type, counts and missing values, min, max, zeros, distinct and top values."
    stats = canonical_statistics(statistics_pb2.DatasetFeatureStatisticsList.FromString(blob))
    out = {"rows": stats.datasets[0].num_examples}
    for name, f in feature_statistics(stats).items():
        s = f.num_stats if f.HasField("num_stats") else f.string_stats
        out[name] = (f.type, s.common_stats.SerializeToString(deterministic=True),
                     (s.min, s.max, s.num_zeros) if f.HasField("num_stats") else
                     (s.unique, [(v.value, v.frequency) for v in s.top_values]))
    return out


def test_the_same_anomalies_and_summary_as_on_pandas(runs):
    pandas_tables = json.loads(runs["pandas"][catalog.ANOMALIES_JSON])["tables"]
    spark_tables = json.loads(runs["spark"][0][catalog.ANOMALIES_JSON])["tables"]
    assert [t["anomalies"] for t in spark_tables] == [t["anomalies"] for t in pandas_tables] == [[], []]
    assert [t["unseen_levels"] for t in spark_tables] == [t["unseen_levels"] for t in pandas_tables]
    assert json.loads(runs["spark"][0][catalog.VALIDATION_SUMMARY]) == \
        json.loads(runs["pandas"][catalog.VALIDATION_SUMMARY])
    assert runs["summaries"][0] == {t: {"rows": json.loads(runs["pandas"][catalog.VALIDATION_SUMMARY])[t]["rows"],
                                        "anomalies": 0, "warnings": 0, "schema_inferred": False, "has_reference": True}
                                    for t in TABLES}


def test_no_drift_against_the_pandas_statistics(runs):
    "The first Spark run is compared with the pandas run's statistics (the reference): categories exactly, numbers to the sketch."
    drift = json.loads(runs["spark"][0][catalog.DRIFT])
    measured = {(t, f, m): v for t, features in drift.items() for f, ms in features.items() for m, v in ms.items()}
    assert measured and all(v == 0 for (t, f, m), v in measured.items() if m == "l_infty"), measured
    assert all(v < 0.01 for v in measured.values()), measured


def test_counts_missing_ranges_and_top_values_are_exact_and_means_agree(runs):
    for table in TABLES:
        blob, reference = runs["spark"][0][catalog.statistics_file(table)], runs["pandas"][catalog.statistics_file(table)]
        assert exact(blob) == exact(reference), table
        on_spark, on_pandas = statistics(blob), statistics(reference)
        for name, f in on_pandas.items():
            if f.HasField("num_stats"):
                mean = f.num_stats.mean
                assert abs(on_spark[name].num_stats.mean - mean) <= 1e-12 * abs(mean), (table, name)
                assert abs(on_spark[name].num_stats.std_dev - f.num_stats.std_dev) <= 1e-12 * f.num_stats.std_dev


def test_quantiles_are_within_the_sketch_error(runs):
    epsilon = stats_options().epsilon
    project = runs["project"]
    for table in TABLES:
        data = to_tfdv_frame(validate.read_numbers_in_text(read_table(project / catalog.raw_table(table), "validate"),
                                                           load_schema(table, project))[0])
        for name, f in statistics(runs["spark"][0][catalog.statistics_file(table)]).items():
            if f.HasField("num_stats"):
                values = data[name].astype("float64").dropna().to_numpy()
                for k, boundary in enumerate(quantiles(f)):
                    assert rank_error(values, boundary, k / 20) <= epsilon, (table, name, k, boundary)


def test_a_second_spark_run_writes_the_same_bytes(runs):
    "The statistics, the reference, the statistics report and the summary (the drift measured moves: the first run's reference is the pandas run's)."
    first, second = runs["spark"]
    kept = [f for f in first if f not in (catalog.ANOMALIES_JSON, catalog.DRIFT)]
    assert {f: first[f] for f in kept} == {f: second[f] for f in kept}
    assert json.loads(second[catalog.DRIFT]) and all(v == 0 for features in json.loads(second[catalog.DRIFT]).values()
                                                    for ms in features.values() for v in ms.values())


def test_beam_and_spark_at_once_are_refused_by_the_check(runs, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(runs["project"], project, symlinks=True)
    set_params(project, {("validate", "engine"): "beam"})
    with pytest.raises(StageError) as refused:
        check_project(project / "params.yaml", project, only="validate")
    assert (refused.value.stage, refused.value.field) == ("validate", "validate.engine")
    assert "engine: pandas" in refused.value.problem
