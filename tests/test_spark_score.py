"""The score stage on Spark (`engine: spark`), on the real two-worker cluster, against the pandas engine on the tiny
project's serving batch and model: the batch as one file split into ranges of chunks, and as a folder of part files,
each unit a task that loads the (digest-checked) model file and writes its part. The predictions are the pandas
engine's (same ids, same scores, bit for bit), so are the summary and the batch report, and a rerun writes the same
bytes. A batch with an unseen category beyond the allowed share, or without a model column, is refused as on pandas,
and no prediction is written.

The pandas engine runs in a process of its own that imports `ml_lifecycle.core` first, as a stage run does: it pins
OpenBLAS's kernel before numpy loads (the kernels round a linear model's last bit differently), and the cluster's
executors run the kernel it pins; in this test process numpy may have loaded first."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import SPARK_CONF, set_params

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from ml_lifecycle import catalog  # noqa: E402
from ml_lifecycle.check import check_project  # noqa: E402
from ml_lifecycle.core import StageError  # noqa: E402
from ml_lifecycle.params import stage_params  # noqa: E402
from ml_lifecycle.spark import java_problem  # noqa: E402
from ml_lifecycle.stages import score  # noqa: E402
from ml_lifecycle.tables import read_json, read_table  # noqa: E402

pytestmark = [pytest.mark.demo,
              pytest.mark.skipif(java_problem() is not None, reason=f"no Spark cluster here: {java_problem()}")]
CHUNK_ROWS, BUCKETS = 100, 4   # the tiny serving batch (about 580 rows) in six chunks, in four tasks
BATCHES = {"single": catalog.SERVING, "folder": "incoming/serving.parquet", "platinum": "incoming/platinum.parquet",
           "no_age": "incoming/no_age.parquet"}

PANDAS_RUNS = r"""
import ml_lifecycle.core   # first, as a stage run: OpenBLAS's kernel is pinned before numpy loads
import json, shutil, sys
from pathlib import Path
import yaml
from ml_lifecycle import catalog
from ml_lifecycle.core import StageError
from ml_lifecycle.params import stage_params
from ml_lifecycle.stages import score
project, out = Path(sys.argv[1]), Path(sys.argv[2])
errors = {}
for name, batch in json.loads(sys.argv[3]).items():
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["engine"], params["score"]["batch"] = "pandas", batch
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        score.run(stage_params("score", project / "params.yaml", score.PARAMS_SCHEMA, project), project)
        errors[name] = None
    except StageError as e:
        errors[name] = [e.stage, e.source, e.field]
    (out / name).mkdir(parents=True)
    for path in (catalog.PREDICTIONS_FILE, catalog.SCORE_SUMMARY, catalog.SCORE_ANOMALIES):
        shutil.copy(project / path, out / name / Path(path).name)
print(json.dumps(errors))
"""


def run_score(project, batch: str):
    "What `ml-lifecycle run score` does, in this process, on Spark, for `batch`: the check, then the stage."
    set_params(project, {("engine",): "spark", ("score", "batch"): batch})
    check_project(project / "params.yaml", project, only="score")
    return score.run(stage_params("score", project / "params.yaml", score.PARAMS_SCHEMA, project), project)


def outputs(where, predictions=catalog.PREDICTIONS_FILE, summary=catalog.SCORE_SUMMARY,
            report=catalog.SCORE_ANOMALIES) -> tuple:
    "The predictions (as one table: parts in order), the summary and the batch report."
    return read_table(where / predictions, "test"), read_json(where / summary), (where / report).read_text()


def digests(path) -> dict:
    "SHA-256 of each file of the predictions (a folder of parts, or one file)."
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def project(tiny_project, spark_cluster, tmp_path_factory):
    """A copy of the tiny project, its Spark settings the test cluster's, and its batches: the serving batch (one file),
    as a folder of three parts, with a new plan in 20% of its rows, and without a model column."""
    project = tmp_path_factory.mktemp("spark-score") / "project"
    shutil.copytree(tiny_project, project, symlinks=True)
    set_params(project, {("spark", "master"): spark_cluster.master_url, ("spark", "conf"): SPARK_CONF,
                         ("spark", "buckets"): BUCKETS, ("score", "chunk_rows"): CHUNK_ROWS})
    serving = pq.read_table(project / catalog.SERVING)
    parts = project / BATCHES["folder"]
    parts.mkdir(parents=True)
    cuts = [0, 130, 330, serving.num_rows]   # a part's chunks start at its own first row, as pandas reads them
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        pq.write_table(serving.slice(a, b - a), parts / f"part-{i:05d}.parquet")
    rows = serving.to_pandas()
    rows.assign(plan=rows["plan"].mask(rows.index % 5 == 0, "platinum")).to_parquet(
        project / BATCHES["platinum"], index=False, row_group_size=150)
    rows.drop(columns="age").to_parquet(project / BATCHES["no_age"], index=False)
    return project


@pytest.fixture(scope="module")
def on_pandas(project, tmp_path_factory):
    "Each batch scored by the pandas engine, in a process of its own: its outputs, or its refusal (stage, source, field)."
    out = tmp_path_factory.mktemp("pandas-outputs")
    done = subprocess.run([sys.executable, "-c", PANDAS_RUNS, str(project), str(out), json.dumps(BATCHES)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    name = lambda path: path.split("/")[-1]
    return {batch: {"refused": errors[batch], "outputs": outputs(out / batch, name(catalog.PREDICTIONS_FILE),
                                                                 name(catalog.SCORE_SUMMARY), name(catalog.SCORE_ANOMALIES))}
            for batch in BATCHES}


@pytest.fixture(scope="module")
def single_file(project, on_pandas):
    "The serving batch (one file) scored twice on Spark: the first run's outputs, and each run's part digests."
    run_score(project, BATCHES["single"])
    first, on_spark = digests(project / catalog.PREDICTIONS_FILE), outputs(project)
    run_score(project, BATCHES["single"])
    return on_spark, first, digests(project / catalog.PREDICTIONS_FILE)


def test_a_single_file_is_scored_in_tasks_as_on_pandas(single_file, on_pandas):
    (spark_rows, spark_summary, spark_report), parts, _ = single_file
    pandas_rows, pandas_summary, pandas_report = on_pandas["single"]["outputs"]
    assert len(parts) == BUCKETS and len(pandas_rows) > 5 * CHUNK_ROWS
    pd.testing.assert_frame_equal(spark_rows, pandas_rows, check_exact=True)   # in the batch's order: parts in order
    by_id = lambda rows: rows.sort_values("customer_id", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(by_id(spark_rows), by_id(pandas_rows), check_exact=True)
    assert spark_summary == pandas_summary and spark_report == pandas_report
    assert "Anomalies: 0" in spark_report


def test_a_rerun_writes_the_same_bytes(single_file):
    _, first, second = single_file
    assert first == second


def test_a_folder_of_parts_is_scored_part_by_part_as_on_pandas(project, on_pandas, single_file):
    run_score(project, BATCHES["folder"])
    assert list(digests(project / catalog.PREDICTIONS_FILE)) == [f"part-{i:05d}.parquet" for i in range(3)]   # one per part
    on_spark = outputs(project)
    pd.testing.assert_frame_equal(on_spark[0], on_pandas["folder"]["outputs"][0], check_exact=True)
    assert on_spark[1:] == on_pandas["folder"]["outputs"][1:]
    # The one file's rows and predictions, to the last bits only: read in other chunks, a row sits elsewhere in its
    # chunk, and OpenBLAS rounds a linear model's product by the row's place (on either engine).
    pd.testing.assert_frame_equal(on_spark[0], single_file[0][0], check_exact=False, rtol=1e-13)


@pytest.mark.parametrize("batch, field", [("platinum", "plan"), ("no_age", "age")])
def test_a_batch_with_an_unseen_category_or_without_a_model_column_is_refused_as_on_pandas(project, on_pandas,
                                                                                        single_file, batch, field):
    before = digests(project / catalog.PREDICTIONS_FILE)
    report = project / catalog.SCORE_ANOMALIES
    report.unlink()
    with pytest.raises(StageError) as refused:
        run_score(project, BATCHES[batch])
    assert [refused.value.stage, refused.value.source, refused.value.field] == on_pandas[batch]["refused"]
    assert refused.value.field == field
    assert digests(project / catalog.PREDICTIONS_FILE) == before, "a refused batch must leave the predictions alone"
    if field == "plan":   # refused on its statistics: the report says why, as the pandas run's does
        assert report.read_text() == on_pandas[batch]["outputs"][2]
        assert "| plan | platinum |" in " ".join(report.read_text().split()) and "refused" in report.read_text()
    else:                 # refused before any row is read: no report
        assert not report.exists()
