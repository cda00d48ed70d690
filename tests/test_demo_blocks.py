"""The demo simulator in blocks of customers: up to one block the sources are exactly what they were before blocks;
above, each block has its own generator, ids stay unique, and the same parameters give the same bytes.

The block size is a parameter, so blocks of a few hundred customers stand for the million of a real run."""
import hashlib
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ml_lifecycle import catalog
from ml_lifecycle.core import StageError
from ml_lifecycle.params import check_params
from ml_lifecycle.stages import demo_data as demo

PERIOD = ("2024-01-01", "2024-06-30")
MONTHS = [f"events-2024-{m:02d}.parquet" for m in range(1, 7)]
SOME_FAULTS = ["type_change", "missing_column", "new_category"]

# What the simulator wrote before blocks existed (commit 5f5f00b), as `content_digest` sums it up: n=600 over PERIOD,
# seed 3. A digest of the rows rather than of the files' bytes, which also carry the writing library's version.
BEFORE_BLOCKS = {
    "none": "82def51d25957e4daeabf3814b2db0baefd9d91a3c7de49f884e2648359edfdb",
    "faults": "650ef4542683737c94f42c1b1acce54bf5f1e14c488d08df33c71b0eb1f378b6",
}


def generate(root: Path, n: int, fault="none", block=demo.BLOCK_CUSTOMERS, seed=3) -> dict:
    return demo.generate_demo_sources(n, *PERIOD, seed, fault, root, block_customers=block)


def sources(root: Path) -> dict:
    "The bytes of every file under the stage's outputs (temporary files included), by path."
    files = [root / catalog.CRM_DATABASE, *sorted((root / catalog.EVENT_LOG).iterdir())]
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in files}


def content_digest(root: Path) -> str:
    "SHA-256 of what the sources hold: the CRM table's columns and rows, and each month file's name and rows."
    h = hashlib.sha256()
    with closing(sqlite3.connect(root / catalog.CRM_DATABASE)) as conn:
        rows = conn.execute("select * from customers")
        h.update(repr([d[0] for d in rows.description]).encode())
        for row in rows:
            h.update(repr(row).encode())
    for f in sorted((root / catalog.EVENT_LOG).glob("*.parquet")):
        h.update(f.name.encode() + pd.read_parquet(f).to_csv(index=False).encode())
    return h.hexdigest()


def customers_table(root: Path) -> pd.DataFrame:
    with closing(sqlite3.connect(root / catalog.CRM_DATABASE)) as conn:
        return pd.read_sql("select * from customers", conn)


def before_blocks(root: Path, n: int, fault="none", seed=3):
    """The sources written by the simulator's code from before blocks: one generator, whole tables, `to_sql` and
    one `to_parquet` per month. The byte-for-byte reference for any size up to one block."""
    from sqlalchemy import create_engine
    rng = np.random.default_rng(seed)
    start, end = map(pd.Timestamp, PERIOD)
    customers = demo.simulate_customers(n, start, end, rng)
    events = demo.simulate_purchases(customers, start, end, rng)
    customers, events = demo.add_data_flaws(customers, events, rng)
    customers, events = demo.inject_faults(customers, events, demo.fault_list(fault), np.random.default_rng([seed, 1]))
    public = customers.loc[:, ~customers.columns.str.startswith("_")].copy()
    public["signup_date"] = np.datetime_as_string(public["signup_date"].to_numpy(), unit="D")
    (root / catalog.EVENT_LOG).mkdir(parents=True)
    engine = create_engine(f"sqlite:///{root / catalog.CRM_DATABASE}")
    with engine.begin() as conn:
        public.to_sql("customers", conn, index=False, if_exists="replace")
    engine.dispose()
    month = events["timestamp"].to_numpy().astype("datetime64[M]")
    rows = np.flatnonzero(~np.isnat(month))
    rows = rows[np.argsort(month[rows], kind="stable")]
    keys, starts = np.unique(month[rows], return_index=True)
    for key, a, b in zip(keys, starts, [*starts[1:], len(rows)]):
        name = f"events-{np.datetime_as_string(key, unit='M')}.parquet"
        events.iloc[rows[a:b]].to_parquet(root / catalog.EVENT_LOG / name, index=False)


class Patient:
    "A generator whose customers would all wait a million days (27 centuries) before leaving."
    def __init__(self, rng):
        self.rng = rng

    def __getattr__(self, name):
        return getattr(self.rng, name)

    def exponential(self, scale):
        return np.full(np.shape(scale), 1e6)


def test_a_wait_of_centuries_is_capped_a_year_after_the_end():
    "Before the cap, one draw of ten million (block 9 of seed 7) overflowed the nanosecond timestamps."
    start, end = map(pd.Timestamp, PERIOD)
    customers = demo.simulate_customers(300, start, end, Patient(np.random.default_rng(0)))
    assert (customers["_churn_at"] == end + pd.Timedelta(days=365)).all()
    assert len(demo.simulate_purchases(customers, start, end, np.random.default_rng(0))) > 0


# ---------------------------------------------------------------- up to one block: the data as before

@pytest.mark.parametrize("fault", ["none", SOME_FAULTS], ids=["none", "faults"])
def test_up_to_one_block_the_sources_are_those_from_before_blocks(tmp_path, fault):
    before_blocks(tmp_path / "before", 600, fault)
    expected = sources(tmp_path / "before")
    for block in (600, 601, demo.BLOCK_CUSTOMERS):   # exactly the size, more, the default
        generate(tmp_path / str(block), 600, fault, block)
        assert sources(tmp_path / str(block)) == expected, f"block_customers={block}"
    key = "none" if fault == "none" else "faults"
    assert content_digest(tmp_path / "600") == BEFORE_BLOCKS[key], "the one-block simulation changed its draws"


def test_a_smaller_block_changes_the_data(tmp_path):
    generate(tmp_path / "one", 600, block=600)
    generate(tmp_path / "two", 600, block=599)   # two blocks: 599 and 1 customers
    assert content_digest(tmp_path / "two") != content_digest(tmp_path / "one")
    assert len(customers_table(tmp_path / "two")["customer_id"].unique()) == 600


# ---------------------------------------------------------------- above one block

@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    "1300 customers in blocks of 500 (500, 500 and 300), with three faults, written twice."
    roots = [tmp_path_factory.mktemp("blocked") for _ in range(2)]
    summaries = [generate(root, 1300, SOME_FAULTS, block=500) for root in roots]
    return roots, summaries


def test_blocks_give_the_same_bytes_twice(blocked):
    (first, second), (a, b) = blocked
    assert sources(first) == sources(second) and a == b


def test_customer_ids_are_unique_across_blocks_and_rows_come_block_after_block(blocked):
    (root, _), (summary, _) = blocked
    customers = customers_table(root)
    ids = customers["customer_id"]
    assert len(customers) == summary["customers"] > 1300   # the flaws duplicate a few rows
    assert ids.nunique() == 1300 and set(ids) == set(range(100_000, 101_300))
    assert ((ids - 100_000) // 500).is_monotonic_increasing   # block 0's rows (and its duplicates), then block 1's
    assert "email_opt_in" not in customers and customers["channel"].eq("marketplace").any()   # faults in every block
    assert customers.loc[ids >= 101_000, "channel"].eq("marketplace").any()


def test_event_ids_are_unique_and_increase_across_blocks(blocked):
    (root, _), (summary, _) = blocked
    folder = root / catalog.EVENT_LOG
    assert sorted(f.name for f in folder.iterdir()) == MONTHS   # no temporary file left
    parts = [pd.read_parquet(folder / name) for name in MONTHS]
    events = pd.concat(parts)
    assert len(events) == summary["events"]
    assert events["event_id"].min() == 1 and events["event_id"].nunique() == events["event_id"].max()
    assert events.drop_duplicates().groupby("event_id").size().eq(1).all()   # a repeated id is a duplicated row
    for name, part in zip(MONTHS, parts):
        assert part["event_id"].is_monotonic_increasing, name   # block after block, each block's in time order
        assert (part["timestamp"].dt.strftime("events-%Y-%m.parquet") == name).all()
        assert pq.ParquetFile(folder / name).num_row_groups == 3, name   # a row group per block
    assert events["customer_id"].isin(customers_table(root)["customer_id"]).all()
    assert events["amount"].str.contains(",").all()   # type_change, in every block's row group


def test_a_block_depends_only_on_the_seed_and_its_number(tmp_path, blocked):
    (root, _), _ = blocked
    generate(tmp_path, 1000, SOME_FAULTS, block=500)   # the same first two blocks, no third
    fewer, more = customers_table(tmp_path), customers_table(root)
    assert fewer.equals(more.iloc[:len(fewer)]) and more["customer_id"].iloc[len(fewer):].ge(101_000).all()
    first = pd.read_parquet(tmp_path / catalog.EVENT_LOG / MONTHS[0])
    assert first.equals(pd.read_parquet(root / catalog.EVENT_LOG / MONTHS[0]).iloc[:len(first)])


def test_blocks_are_drawn_one_at_a_time():
    start, end = map(pd.Timestamp, PERIOD)
    began = time.perf_counter()
    customers, events = next(demo.demo_blocks(10_000_000, start, end, 3, [], block_customers=500))
    assert time.perf_counter() - began < 5   # ten million customers at once would take minutes
    assert customers["customer_id"].nunique() == 500 and customers["customer_id"].between(100_000, 100_499).all()
    assert events["event_id"].iloc[0] == 1


def test_a_failed_run_leaves_the_earlier_sources(tmp_path, monkeypatch):
    generate(tmp_path, 1300, block=500)
    before = sources(tmp_path)
    simulate = demo.simulate_purchases

    def fails_in_the_third_block(customers, *args, **kwargs):
        if customers["customer_id"].min() >= 101_000:
            raise RuntimeError("disk full")
        return simulate(customers, *args, **kwargs)
    monkeypatch.setattr(demo, "simulate_purchases", fails_in_the_third_block)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path, 1300, block=500, seed=4)
    assert sources(tmp_path) == before and not list((tmp_path / "data/external").glob(".*"))


def test_the_contract_admits_ten_million_customers():
    settings = {"n_customers": 10_000_000, "start_date": PERIOD[0], "end_date": PERIOD[1], "seed": 3, "fault": "none"}
    check_params("demo_data", {"demo_data": settings}, demo.PARAMS_SCHEMA)
    with pytest.raises(StageError):
        check_params("demo_data", {"demo_data": {**settings, "n_customers": 10_000_001}}, demo.PARAMS_SCHEMA)
