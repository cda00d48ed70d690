"""Gather on Spark (`engine: spark`) on a real standalone cluster. The demo's sources at 3,000 customers (a SQLite
table, read here 1,000 rows at a time; 30 monthly Parquet files, converted a task each) give the pandas engine's
tables row for row and its gather.json; a rerun writes the same bytes; CSV files keep their leading zeros and are
cast as pandas concatenates them, or refused, naming both files, where one column cannot hold them; a source missing a
required column is refused, data/raw untouched."""
import hashlib

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, SPARK_CONF
from ml_lifecycle import catalog
from ml_lifecycle.check import toy_project
from ml_lifecycle.core import StageError
from ml_lifecycle.params import declared_view
from ml_lifecycle.spark import java_problem, spark_session
from ml_lifecycle.stages import gather
from ml_lifecycle.stages.demo_data import generate_demo_sources
from ml_lifecycle.tables import parquet_parts, read_table

pytestmark = pytest.mark.skipif(java_problem() is not None, reason=f"no Spark cluster here: {java_problem()}")

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CUSTOMERS = 3000
CHUNK_ROWS = 1000   # the customers' query in 4 chunks, a part each


def raw_files(root) -> dict:
    "Every file under data/raw (the parts in its folders too): its SHA-256."
    raw = root / "data" / "raw"
    return {str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(raw.rglob("*"))
            if p.is_file()}


def tables(root, names) -> dict:
    return {name: read_table(root / catalog.raw_table(name), "test") for name in names}


def arrow_schemas(root, names) -> dict:
    "Each table's Arrow schema per file (one file on pandas, one per part on Spark), without pandas' metadata."
    return {name: [pq.read_schema(p).remove_metadata() for p in parquet_parts(root / catalog.raw_table(name))]
            for name in names}


@pytest.fixture(scope="module")
def demo(spark_cluster, tmp_path_factory):
    """The demo's sources at 3,000 customers, gathered by the stage's `run` on pandas, then on the cluster: each
    engine's summary, gather.json, tables, Arrow schemas and file digests."""
    spark = {"master": spark_cluster.master_url, "buckets": 4, "conf": SPARK_CONF}
    root, values = toy_project({"gather": PARAMS["gather"], "engine": "pandas", "spark": spark},
                               tmp_path_factory.mktemp("demo"))
    settings = PARAMS["demo_data"]
    generate_demo_sources(CUSTOMERS, settings["start_date"], settings["end_date"], settings["seed"], "none", root)
    results = {}
    for engine in ("pandas", "spark"):
        values = {**values, "engine": engine}
        gather.check_inputs(values, root)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(gather, "SQL_CHUNK_ROWS", CHUNK_ROWS)
            summary = gather.run(declared_view("gather", values, root), root)
        results[engine] = {"summary": summary, "json": (root / catalog.GATHER_SUMMARY).read_bytes(),
                           "tables": tables(root, values["gather"]), "schemas": arrow_schemas(root, values["gather"]),
                           "files": raw_files(root)}
    return root, values, results


@pytest.fixture(scope="module")
def spark(demo, spark_cluster):
    "A session on the cluster for the direct checks, opened once `run` has stopped its own."
    session = spark_session(spark_cluster.master_url, SPARK_CONF)
    yield session
    session.stop()


def test_the_demo_gathered_on_the_cluster_equals_pandas_row_for_row(demo):
    _, values, results = demo
    on_pandas, on_spark = results["pandas"], results["spark"]
    assert on_spark["json"] == on_pandas["json"] and on_spark["summary"] == on_pandas["summary"]
    assert on_pandas["summary"]["events"]["rows"] > 20_000 and on_pandas["summary"]["customers"]["rows"] > 3 * CHUNK_ROWS
    parts = {name: len(schemas) for name, schemas in on_spark["schemas"].items()}
    assert parts == {"customers": 4, "events": 30}, parts   # a part per chunk of the query, per monthly file
    for name in values["gather"]:
        expected = on_pandas["tables"][name]
        pd.testing.assert_frame_equal(on_spark["tables"][name], expected, check_exact=True)   # same rows, same order
        assert all(s.equals(on_pandas["schemas"][name][0]) for s in on_spark["schemas"][name]), name


def test_a_rerun_on_the_cluster_writes_the_same_bytes(demo, spark):
    root, values, results = demo
    gather.gather_on_spark(dict(values["gather"]), spark, root, chunk_rows=CHUNK_ROWS)
    assert raw_files(root) == results["spark"]["files"]


def test_a_source_missing_a_required_column_is_refused_naming_it_and_data_raw_is_untouched(demo, spark):
    root, values, _ = demo
    before = raw_files(root)
    events = {**values["gather"]["events"], "required_columns": ["customer_id", "timestamp", "amount", "coupon"]}
    with pytest.raises(StageError) as err:   # customers pass and are written aside, then events fail
        gather.gather_on_spark({**values["gather"], "events": events}, spark, root, chunk_rows=CHUNK_ROWS)
    assert err.value.field == "coupon" and err.value.source.startswith("events source"), err.value
    assert raw_files(root) == before
    assert sorted(p.name for p in (root / "data" / "raw").iterdir()) == ["customers.parquet", "events.parquet"]


def test_csv_files_keep_leading_zeros_and_are_cast_as_pandas_concatenates_them(spark, tmp_path):
    """Whole amounts in one file and decimals with a gap in the next, a column empty in one file, one a file lacks:
    one schema, the pandas engine's. Ids that are text in one file and numbers in another: refused, naming both."""
    root, _ = toy_project({"gather": {}}, tmp_path / "shop")
    orders = root / "data" / "external" / "orders"
    orders.mkdir(parents=True)
    (orders / "2024-01.csv").write_text("customer_id,amount,plan,note\n00017,3,basic,\n00002,4,plus,\n")
    (orders / "2024-02.csv").write_text("customer_id,amount,plan,note\n00003,2.5,,first\n00104,,premium,\n")
    (orders / "2024-03.csv").write_text("customer_id,amount,note\n00005,1,x\n")
    sources = {"orders": {"path": "data/external/orders/*.csv", "required_columns": ["customer_id", "amount"]}}
    counts = gather.gather_on_spark(sources, spark, root)
    on_spark, spark_schemas = tables(root, sources)["orders"], arrow_schemas(root, sources)["orders"]
    assert counts == gather.gather(sources, root) == {"orders": {"rows": 5, "columns": 4}}
    on_pandas, pandas_schema = tables(root, sources)["orders"], arrow_schemas(root, sources)["orders"][0]
    assert on_spark["customer_id"].tolist() == ["00017", "00002", "00003", "00104", "00005"]
    pd.testing.assert_frame_equal(on_spark, on_pandas, check_exact=True)
    assert len(spark_schemas) == 3 and all(s.equals(pandas_schema) for s in spark_schemas), (spark_schemas, pandas_schema)
    assert str(pandas_schema.field("amount").type) == "double"

    (orders / "2024-04.csv").write_text("customer_id,amount\n6,1.5\n")   # no leading zero: read as a number
    before = raw_files(root)
    with pytest.raises(StageError) as err:
        gather.gather_on_spark(sources, spark, root)
    e = err.value
    assert e.field == "customer_id" and "orders/2024-01.csv" in e.problem and "orders/2024-04.csv" in e.problem, e
    assert raw_files(root) == before
    with pytest.raises(Exception, match="int"):   # the pandas engine cannot write that column either
        gather.gather(sources, root)
