"""ml_lifecycle.statistics: TFDV statistics computed per chunk (a Spark partition) and merged are one pass's.

Exactly equal: rows, and per feature its type, common statistics, min, max, zeros, distinct values, top values and
ranks. Means within 1e-12 relative; quantiles within the sketch's rank error of the data's; no drift by TFDV's own
comparison. A partial survives pickling, an empty chunk changes nothing, and what cannot be merged is refused by name.
"""
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from _statistics import quantiles, rank_error
from ml_lifecycle.gate import canonical_statistics, compute_statistics, feature_statistics, measurements, stats_options
from ml_lifecycle.statistics import (PartialStatistics, merge_partials, merge_statistics, partial_statistics,
                                     statistics_in_chunks)

CUTS = [4_000, 13_500]      # three chunks of unequal size: 4,000, 9,500 and 6,500 rows
NUMERIC = ["amount", "visits", "score", "vip"]


def toy_table(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    "Numbers with 10% gaps and a heavy tail, whole numbers, a normal variable, categoricals (one with gaps), a flag."
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"amount": amount, "visits": rng.poisson(4, n), "score": rng.normal(0, 1, n),
                         "plan": rng.choice(["basic", "plus", "premium", None], n, p=[0.55, 0.3, 0.1, 0.05]),
                         "city": rng.choice([f"c{i:02d}" for i in range(60)], n), "vip": rng.random(n) < 0.2})


def chunks(df: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    return [df.iloc[a:b] for a, b in zip([0, *cuts], [*cuts, len(df)])]


def exact_fields(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict:
    "What must be equal: rows; per feature type, common statistics, min, max, zeros; distinct, top values, ranks."
    out = {"rows": stats.datasets[0].num_examples}
    for name, f in feature_statistics(canonical_statistics(stats)).items():
        if f.HasField("num_stats"):
            s = f.num_stats
            out[name] = (f.type, s.common_stats.SerializeToString(deterministic=True), s.min, s.max, s.num_zeros)
        else:
            s = f.string_stats
            out[name] = (f.type, s.common_stats.SerializeToString(deterministic=True), s.unique,
                         [(v.value, v.frequency) for v in s.top_values],
                         [(b.label, b.sample_count) for b in s.rank_histogram.buckets])
    return out


def drift_schema(stats, threshold: float = 0.01) -> schema_pb2.Schema:
    "An inferred schema with drift comparators as the project's schemas set them (JSD on quantiles for numbers)."
    schema = tfdv_module().infer_schema(stats)
    for feature in schema.feature:
        jsd = feature.drift_comparator.jensen_shannon_divergence
        jsd.threshold = threshold
        if feature.type == schema_pb2.BYTES:
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            jsd.source.type = schema_pb2.HistogramSelection.QUANTILES
    return schema


def tfdv_module():
    import tensorflow_data_validation
    return tensorflow_data_validation


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return toy_table()


@pytest.fixture(scope="module")
def one_pass(table):
    return compute_statistics(table)


@pytest.fixture(scope="module")
def merged(table):
    "Three chunks and an empty one among them, each partial pickled and unpickled as Spark ships it, merged."
    parts = chunks(table, CUTS)
    parts.insert(2, table.iloc[:0])
    partials = [pickle.loads(pickle.dumps(partial_statistics(c))) for c in parts]
    assert [p.rows for p in partials] == [4_000, 9_500, 0, 6_500]
    return merge_statistics(partials)


def test_importing_the_module_imports_no_tfdv():
    code = ("import sys, ml_lifecycle.statistics; "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_data_validation', 'apache_beam') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_counts_missing_ranges_top_values_and_distinct_values_are_exact(merged, one_pass):
    a, b = exact_fields(merged), exact_fields(one_pass)
    assert a["rows"] == 20_000 and set(a) == {"rows", *NUMERIC, "plan", "city"}
    assert a == b
    amount = feature_statistics(merged)["amount"].num_stats.common_stats
    assert amount.num_missing > 1_500 and amount.num_missing + amount.num_non_missing == 20_000
    assert feature_statistics(merged)["city"].string_stats.unique == 60


def test_means_agree_to_the_last_digits(merged, one_pass):
    a, b = feature_statistics(merged), feature_statistics(one_pass)
    for name in NUMERIC:
        x, y = a[name].num_stats, b[name].num_stats
        assert abs(x.mean - y.mean) <= 1e-12 * abs(y.mean), name
        assert abs(x.std_dev - y.std_dev) <= 1e-12 * y.std_dev, name


def test_quantiles_are_within_the_sketch_error(merged, one_pass, table):
    """Merged and one-pass quantile boundaries may differ (TFDV 1.16.1: by up to 1e-4 of the range here); each is
    within epsilon (in rank) of the data's quantile."""
    epsilon = stats_options().epsilon
    a, b = feature_statistics(merged), feature_statistics(one_pass)
    for name in NUMERIC:
        values = table[name].astype("float64").dropna().to_numpy()
        for k, (p, q) in enumerate(zip(quantiles(a[name]), quantiles(b[name]))):
            assert rank_error(values, p, k / 20) <= epsilon, (name, k, p)
            assert rank_error(values, q, k / 20) <= epsilon, (name, k, q)
    wrong = quantiles(b["amount"])[6]      # the 30% boundary, where 25% was asked: the rank check has teeth
    assert rank_error(table["amount"].dropna().to_numpy(), wrong, 5 / 20) > 4 * epsilon


def test_tfdv_finds_no_drift_between_merged_and_one_pass(merged, one_pass, table):
    tfdv = tfdv_module()
    anomalies = tfdv.validate_statistics(merged, drift_schema(one_pass), previous_statistics=one_pass)
    assert not anomalies.anomaly_info and not anomalies.dataset_anomaly_info.reason
    drift = measurements(anomalies)
    assert set(drift) == {*NUMERIC, "plan", "city"}
    assert max(m["value"] for ms in drift.values() for m in ms.values()) < 1e-3
    assert drift["plan"]["l_infty"]["value"] == drift["city"]["l_infty"]["value"] == 0.0
    moved = compute_statistics(table.assign(amount=table["amount"] * 1.1))   # the comparison has teeth
    assert list(tfdv.validate_statistics(moved, drift_schema(one_pass), previous_statistics=one_pass).anomaly_info) \
        == ["amount"]


def test_one_chunk_merged_alone_is_exactly_one_pass(table, one_pass):
    assert merge_statistics([partial_statistics(table)]) == one_pass


def test_a_partial_survives_pickling(table):
    small = table.iloc[:3_000]
    fresh = lambda: [partial_statistics(c) for c in chunks(small, [1_000, 2_200])]  # noqa: E731
    reference = merge_statistics(fresh())
    cloudpickle = pytest.importorskip("cloudpickle")
    for module in (pickle, cloudpickle):
        copies = [module.loads(module.dumps(p)) for p in fresh()]
        assert all(isinstance(p, PartialStatistics) and not p.consumed for p in copies)
        assert merge_statistics(copies) == reference, module.__name__
    assert merge_statistics(fresh()[:2]) != reference   # the equality has teeth


def test_empty_chunks_change_nothing(table):
    small = table.iloc[:3_000]
    fresh = lambda: [partial_statistics(c) for c in chunks(small, [1_000, 2_200])]  # noqa: E731
    reference = merge_statistics(fresh())
    empty = [partial_statistics(small.iloc[:0]), partial_statistics(pd.DataFrame())]   # no rows; no rows nor columns
    assert [p.rows for p in empty] == [0, 0]
    assert merge_statistics([empty[0], *fresh(), empty[1]]) == reference
    assert merge_statistics([]).datasets[0].num_examples == 0


def test_statistics_in_chunks_and_a_tree_of_merges_agree_with_one_pass(table, one_pass):
    assert exact_fields(statistics_in_chunks(chunks(table, CUTS))) == exact_fields(one_pass)
    a, b, c = (partial_statistics(x) for x in chunks(table, CUTS))
    tree = merge_partials([merge_partials([a, b]), c])
    assert tree.rows == 20_000
    assert exact_fields(merge_statistics([tree])) == exact_fields(one_pass)


def test_a_partial_merged_twice_is_refused(table):
    used = partial_statistics(table.iloc[:500])
    merge_statistics([used])
    with pytest.raises(ValueError, match="merged already"):
        merge_statistics([used])


def test_partials_of_other_options_are_refused(table):
    tfdv = tfdv_module()
    other = partial_statistics(table.iloc[:500], tfdv.StatsOptions(num_quantiles_histogram_buckets=10))
    with pytest.raises(ValueError, match="other StatsOptions"):
        merge_statistics([other])
    assert merge_statistics([partial_statistics(table.iloc[:500], stats_options())]).datasets[0].num_examples == 500


def test_a_column_with_two_types_is_refused_by_name():
    "A whole-number column with a gap in one chunk is float64 there: TFDV cannot merge INT and FLOAT."
    gaps = partial_statistics(pd.DataFrame({"n": [None, 3.0]}))
    whole = partial_statistics(pd.DataFrame({"n": [4, 5]}))
    with pytest.raises(ValueError, match=r"column 'n' .* FLOAT in partial 0, INT in partial 1"):
        merge_statistics([gaps, whole])
    assert not gaps.consumed and not whole.consumed, "a refused merge consumes nothing"
    no_value = partial_statistics(pd.DataFrame({"n": [np.nan, np.nan]}))   # an all-null numeric partition: FLOAT
    with pytest.raises(ValueError, match=r"column 'n' .* INT in partial 0, FLOAT in partial 1"):
        merge_statistics([whole, no_value])
    as_float = partial_statistics(pd.DataFrame({"n": [4, 5]}).astype("float64"))   # the remedy: one type everywhere
    n = feature_statistics(merge_statistics([gaps, as_float])).get("n")
    assert n.type == statistics_pb2.FeatureNameStatistics.FLOAT and n.num_stats.common_stats.num_missing == 1
    text = partial_statistics(pd.DataFrame({"t": ["a", "b"]}))
    no_text = partial_statistics(pd.DataFrame({"t": [None, None]}))   # an object column with no value is text to TFDV
    t = feature_statistics(merge_statistics([no_text, text]))["t"]
    assert t.type == statistics_pb2.FeatureNameStatistics.STRING and t.string_stats.common_stats.num_missing == 2
    only_m = tfdv_module().StatsOptions(feature_allowlist=["m"])   # a column TFDV leaves out is not merged
    left_out = [partial_statistics(pd.DataFrame({"m": [1, 2], "n": n}), only_m) for n in ([None, 3.0], [4, 5])]
    assert list(feature_statistics(merge_statistics(left_out, only_m))) == ["m"]
