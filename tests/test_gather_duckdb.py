"""DuckDB sources: SQL over CSV and Parquet files, written in params.yaml (`url: duckdb:///:memory:` + `query`).
A toy project holds an order log (CSV, customer ids with leading zeros, returns as negative quantities) and a
customer table (Parquet); gather joins, renames and filters them into data/raw/<name>.parquet. Paths in the query are
read from the project root whatever the working directory; a missing file or database is named before anything is
written."""
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ml_lifecycle import catalog
from ml_lifecycle.check import check_project, toy_project
from ml_lifecycle.core import StageError
from ml_lifecycle.params import declared_view
from ml_lifecycle.stages import gather
from ml_lifecycle.tables import read_json

ORDERS = """InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice
536365,00001,2021-01-04,6,2.55
536366,00002,2021-01-05,-2,3.39
536367,00001,2021-02-01,1,7.25
536368,00003,2021-02-03,4,1.10
"""
PURCHASES = {"url": "duckdb:///:memory:", "query": """
    SELECT o.CustomerID AS customer_id, c.plan, o.InvoiceDate AS timestamp,
           o.Quantity * o.UnitPrice::DECIMAL(10, 2) AS amount
    FROM 'data/external/orders.csv' AS o
    JOIN 'data/external/customers.parquet' AS c ON o.CustomerID = c.customer_id
    WHERE o.Quantity > 0
    ORDER BY o.InvoiceNo""", "required_columns": ["customer_id", "timestamp", "amount"]}


@pytest.fixture
def shop(tmp_path):
    "A toy project whose params.yaml gathers `purchases` with DuckDB, its two files in data/external/."
    root, values = toy_project({"gather": {"purchases": PURCHASES}}, tmp_path / "shop")
    external = root / "data" / "external"
    external.mkdir(parents=True)
    (external / "orders.csv").write_text(ORDERS)
    pd.DataFrame({"customer_id": ["00001", "00002", "00003"], "plan": ["basic", "plus", "basic"]}).to_parquet(
        external / "customers.parquet", index=False)
    return root, values


def expect_failure(call, field, *fragments):
    with pytest.raises(StageError) as err:
        call()
    e = err.value
    assert e.stage == "gather" and e.field == field, e
    assert all(f in str(e) for f in fragments), e
    return e


def test_a_join_of_csv_and_parquet_is_gathered_with_types(shop, tmp_path, monkeypatch):
    root, values = shop
    monkeypatch.chdir(tmp_path)   # not the project root
    summary = gather.run(declared_view("gather", values, root), root)
    assert summary == {"purchases": {"rows": 3, "columns": 4}}   # the return (Quantity -2) is filtered out
    assert read_json(root / catalog.GATHER_SUMMARY) == summary
    raw = root / catalog.raw_table("purchases")
    df = pd.read_parquet(raw)
    assert df.columns.tolist() == ["customer_id", "plan", "timestamp", "amount"]
    assert df["customer_id"].tolist() == ["00001", "00001", "00003"]          # text, leading zeros kept
    assert df["plan"].tolist() == ["basic", "basic", "basic"]
    assert df["amount"].round(2).tolist() == [15.3, 7.25, 4.4]
    assert df["timestamp"].tolist() == [pd.Timestamp("2021-01-04"), pd.Timestamp("2021-02-01"), pd.Timestamp("2021-02-03")]
    schema = pq.read_schema(raw)   # DECIMAL arrived as float, DATE as a timestamp: plain Parquet types
    assert schema.field("amount").type == pa.float64(), schema
    assert pa.types.is_timestamp(schema.field("timestamp").type), schema
    assert schema.field("customer_id").type == pa.string(), schema


def test_query_paths_are_read_from_the_project_root_not_the_working_directory(shop, tmp_path, monkeypatch):
    root, _ = shop
    decoy = tmp_path / "elsewhere" / "data" / "external"   # same relative paths, other data, in the cwd
    decoy.mkdir(parents=True)
    (decoy / "orders.csv").write_text("InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice\n1,00009,2021-01-01,1,1\n")
    pd.DataFrame({"customer_id": ["00009"], "plan": ["decoy"]}).to_parquet(decoy / "customers.parquet", index=False)
    monkeypatch.chdir(decoy.parents[1])
    df = gather.read_sql_source(PURCHASES["url"], PURCHASES["query"], root=root)
    assert sorted(set(df["customer_id"])) == ["00001", "00003"] and "decoy" not in set(df["plan"])
    assert Path.cwd() == decoy.parents[1]   # the working directory is as it was
    monkeypatch.chdir(tmp_path)   # outside any project: an absolute path still reads
    assert gather.read_sql_source("duckdb:///:memory:", f"SELECT count(*) AS n FROM '{root}/data/external/orders.csv'"
                                  )["n"].tolist() == [4]
    (root / "nbs").mkdir()
    monkeypatch.chdir(root / "nbs")   # as a notebook runs: no root given, the project is found above the cwd
    assert gather.read_sql_source(PURCHASES["url"], PURCHASES["query"])["customer_id"].tolist() == \
        ["00001", "00001", "00003"]


def test_a_missing_file_in_the_query_fails_clearly_and_writes_nothing(shop, tmp_path, monkeypatch):
    root, values = shop
    monkeypatch.chdir(tmp_path)
    query = PURCHASES["query"].replace("orders.csv", "refunds.csv")
    sources = {"events": {"path": "data/external/orders.csv"}, "purchases": {**PURCHASES, "query": query}}
    fragments = ("duckdb:///:memory:", "no file matches 'data/external/refunds.csv'", "project root",
                 "correct the path")
    e = expect_failure(lambda: gather.gather(sources, root), "gather.purchases.query", *fragments)
    assert e.source == "duckdb:///:memory:"
    assert not (root / "data" / "raw").exists() and not (root / catalog.GATHER_SUMMARY).exists()
    # The check every stage runs first finds it before any stage reads data: the same field, the same words.
    (root / "params.yaml").write_text(yaml.safe_dump({"gather": sources}))
    expect_failure(lambda: check_project(root=root, only="gather"), "gather.purchases.query", *fragments)
    (root / "params.yaml").write_text(yaml.safe_dump({"gather": {"purchases": PURCHASES}}))
    assert check_project(root=root, only="gather") == ["gather"]


def test_the_check_lets_a_file_pass_that_a_stage_will_write(shop):
    root, _ = shop
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    pipeline["stages"]["export_orders"] = {"cmd": "true", "outs": ["data/external/exports"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    later = {"url": "duckdb:///:memory:", "query": "SELECT * FROM read_csv('data/external/exports/*.csv')"}
    gather.check_inputs({"gather": {"later": later}}, root)   # not there yet, but a stage writes it
    nowhere = {**later, "query": "SELECT * FROM read_csv('data/external/imports/*.csv')"}
    expect_failure(lambda: gather.check_inputs({"gather": {"later": nowhere}}, root), "gather.later.query",
                   "no file matches 'data/external/imports/*.csv'")


def test_a_missing_duckdb_database_is_refused_and_not_created(shop, tmp_path, monkeypatch):
    root, _ = shop
    monkeypatch.chdir(tmp_path)
    source = {"url": "duckdb:///data/external/shop.duckdb", "query": "SELECT * FROM customers"}
    expect_failure(lambda: gather.gather({"shop": source}, root), "gather.shop.url", "shop.duckdb",
                   gather.DATABASE_NOT_FOUND)
    expect_failure(lambda: gather.check_inputs({"gather": {"shop": source}}, root), "gather.shop.url",
                   gather.DATABASE_NOT_FOUND)
    assert not (root / "data/external/shop.duckdb").exists() and not (tmp_path / "data").exists()


def test_a_duckdb_database_file_is_read_from_the_root_and_left_unchanged(shop, tmp_path, monkeypatch):
    root, _ = shop
    database = root / "data/external/shop.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE customers AS SELECT * FROM read_parquet(?)",
                    [str(root / "data/external/customers.parquet")])
    before = (database.read_bytes(), os.stat(database).st_mtime_ns)
    monkeypatch.chdir(tmp_path)
    source = {"url": "duckdb:///data/external/shop.duckdb",   # a table of the file, joined to a CSV beside it
              "query": "SELECT c.customer_id, count(*) AS orders FROM customers c "
                       "JOIN 'data/external/orders.csv' o ON o.CustomerID = c.customer_id GROUP BY 1 ORDER BY 1"}
    gather.check_inputs({"gather": {"shop": source}}, root)
    # Someone else has the database open (read-only, as in a notebook): gather, read-only too, shares it.
    reader = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1], "
                               "read_only=True); print('open', flush=True); sys.stdin.read()", str(database)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "open\n"
        assert gather.gather({"shop": source}, root) == {"shop": {"rows": 3, "columns": 2}}
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    df = pd.read_parquet(root / catalog.raw_table("shop"))
    assert df.to_dict("list") == {"customer_id": ["00001", "00002", "00003"], "orders": [2, 1, 1]}
    assert (database.read_bytes(), os.stat(database).st_mtime_ns) == before   # opened read-only


def test_what_duckdb_infers_from_a_csv_and_how_to_say_otherwise(shop):
    root, _ = shop
    (root / "data/external/ledger.csv").write_text('id,day,amount\n00001,20210101,"1,234.50"\n00002,20210102,56.00\n')
    guessed = gather.read_sql_source("duckdb:///:memory:", "SELECT * FROM 'data/external/ledger.csv'", root=root)
    assert guessed["id"].tolist() == ["00001", "00002"]                 # leading zeros: kept as text
    assert guessed["day"].dtype == "int64" and guessed["day"][0] == 20210101   # a number, not a date
    assert guessed["amount"].tolist() == ["1,234.50", "56.00"]          # thousands separator: text
    told = gather.read_sql_source("duckdb:///:memory:", """SELECT * FROM read_csv('data/external/ledger.csv',
        types={'id': 'VARCHAR', 'day': 'DATE'}, dateformat='%Y%m%d', thousands=',')""", root=root)
    assert told["id"].tolist() == ["00001", "00002"] and told["day"].dtype == "datetime64[ns]"
    assert told["day"][0] == pd.Timestamp("2021-01-01") and told["amount"].tolist() == [1234.5, 56.0]
    # The guess comes from the first 20,480 rows: zero-padded ids only after them are read as numbers, zeros lost.
    (root / "data/external/late.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(1, 25_001)) + "00007\n")
    late = "SELECT id FROM read_csv('data/external/late.csv'{}) OFFSET 25000"   # the last row
    assert gather.read_sql_source("duckdb:///:memory:", late.format(""), root=root)["id"].tolist() == [7]
    assert gather.read_sql_source("duckdb:///:memory:", late.format(", types={'id': 'VARCHAR'}"), root=root
                                  )["id"].tolist() == ["00007"]
    as_text = gather.read_sql_source("duckdb:///:memory:",
                                     "SELECT * FROM read_csv('data/external/ledger.csv', all_varchar=true)", root=root)
    assert as_text.to_dict("list") == {"id": ["00001", "00002"], "day": ["20210101", "20210102"],
                                       "amount": ["1,234.50", "56.00"]}


def test_decimals_arrive_as_floats_and_dates_as_timestamps(shop):
    root, _ = shop
    df = gather.read_sql_source("duckdb:///:memory:", """SELECT CASE WHEN i = 0 THEN NULL ELSE 1.25 END AS price,
        SUM(i::DECIMAL(38, 2)) OVER () AS total, CASE WHEN i = 0 THEN NULL ELSE DATE '2021-01-01' END AS day
        FROM range(3) r(i)""", root=root)
    assert df.dtypes.astype(str).to_dict() == {"price": "float64", "total": "float64", "day": "datetime64[ns]"}
    assert df["price"].isna().tolist() == [True, False, False] and df["total"].tolist() == [3.0] * 3
    with pytest.raises(StageError) as err:   # a sentinel date pandas cannot hold is named, not silently dropped
        gather.read_sql_source("duckdb:///:memory:", "SELECT DATE '9999-12-31' AS valid_until", root=root)
    assert err.value.field == "valid_until" and "NULLIF" in err.value.problem


def test_the_files_a_query_names():
    q = gather.query_files
    assert q("SELECT * FROM 'a.csv' JOIN \"b.parquet\" USING (id) JOIN read_json(['c.json', 'd.json']) USING (id)") == \
        ["a.csv", "b.parquet", "c.json", "d.json"]
    assert q("SELECT * FROM customers JOIN 'orders' USING (id)") == []   # table names, not files
    assert q("SELECT 'FROM ''x.csv''' AS note FROM t -- JOIN 'old.csv'\n/* FROM 'older.csv' */") == []
    assert q("FROM read_parquet('s3://bucket/x.parquet') JOIN 'data/**/*.csv' USING (id)") == []   # left to DuckDB
    assert gather.missing_query_file("sqlite:///crm.sqlite", "SELECT * FROM 'absent.csv'", Path("/")) is None
