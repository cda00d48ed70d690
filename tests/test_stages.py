"""Unit tests of the functions the stage notebooks export."""
import sqlite3

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.core import StageError, project_root, resolve
from ml_lifecycle.tables import atomic_write
from ml_lifecycle.stages.demo_data import add_data_flaws, generate_demo_sources, simulate_customers, simulate_purchases
from ml_lifecycle.snapshots import build_features
from ml_lifecycle.stages.features import feature_spec
from ml_lifecycle.stages.gather import database_url, gather, read_sql_source
from ml_lifecycle.cleaning import ROW_ID, clean_rows, cleaning_recipe, decide_types, infer_column_type, with_row_id
from ml_lifecycle.stages.preprocess import (clean_events, clean_units, label_from_column, label_snapshots, snapshot_cutoffs,
                                     split_table)
from ml_lifecycle.modelling import (TRUSTED_TYPES, Problem, grouped_sample, load_model, make_model, make_pipeline,
                                    make_preprocessor, save_model, write_model_digest)
from ml_lifecycle.stages.evaluate import evaluate
from ml_lifecycle.stages.select import best_per_candidate, search_candidates, search_rows

from conftest import ROOT

START, END = pd.Timestamp("2023-01-01"), pd.Timestamp("2025-06-30")
PROBLEM = Problem.from_params(dict(name="churn", id_column="customer_id", label="churned", cutoff_date="2025-04-01",
                                   horizon_days=90, active_window_days=180, primary_metric="roc_auc",
                                   success_threshold=0.7, cost_false_positive=10, cost_false_negative=120))


@pytest.fixture(scope="module")
def business():
    "A small simulated business, cleaned, with labelled snapshots and features."
    rng = np.random.default_rng(11)
    customers = simulate_customers(3000, START, END, rng)
    events = simulate_purchases(customers, START, END, rng)
    raw_customers, raw_events = add_data_flaws(customers, events, rng)
    clean_c, _, _ = clean_units(raw_customers, "customer_id", ["region", "channel", "plan", "email_opt_in"],
                             "unknown", {"age": (18, 100)}, date_columns=["signup_date"])
    clean_e, _ = clean_events(raw_events, clean_c["customer_id"], "customer_id", PROBLEM.cutoff_date, 0.995)
    snapshots = label_snapshots(clean_c, clean_e, snapshot_cutoffs(PROBLEM, 2), PROBLEM)
    attributes = ["signup_date", "region", "channel", "plan", "email_opt_in", "age", "income"]
    table = build_features(clean_c, clean_e, snapshots, "customer_id", [30, 90, 180], attributes)
    return dict(customers=clean_c, events=clean_e, snapshots=snapshots, table=table,
                spec={**feature_spec(table, "customer_id", "churned", ["region", "channel", "plan", "email_opt_in"]),
                      "impute_numeric": "median", "min_category_frequency": 0.01})


# core -----------------------------------------------------------------------------------------------------------

def test_project_root_is_found_from_any_subfolder(monkeypatch):
    monkeypatch.chdir(ROOT / "nbs")
    assert project_root() == ROOT and resolve("data/raw") == ROOT / "data" / "raw"


def test_project_root_outside_a_project_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no project root"):
        project_root(tmp_path)


def test_failed_atomic_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous run")
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda tmp: (tmp.write_text("half"), (_ for _ in ()).throw(RuntimeError("crash"))))
    assert target.read_text() == "previous run" and list(tmp_path.iterdir()) == [target]


# demo data ------------------------------------------------------------------------------------------------------

def test_demo_sources_are_deterministic_per_seed(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dvc.yaml").touch(), (tmp_path / name / "params.yaml").touch()
    generate_demo_sources(400, "2023-01-01", "2025-06-30", 5, root=tmp_path / "a")
    generate_demo_sources(400, "2023-01-01", "2025-06-30", 5, root=tmp_path / "b")
    generate_demo_sources(400, "2023-01-01", "2025-06-30", 6, root=tmp_path / "c")
    read = lambda p: (pd.read_sql("select * from customers", sqlite3.connect(p / "data/external/crm.sqlite")),
                      pd.concat(pd.read_parquet(f) for f in sorted((p / "data/external/events").glob("*.parquet"))))
    (ca, ea), (cb, eb), (cc, ec) = read(tmp_path / "a"), read(tmp_path / "b"), read(tmp_path / "c")
    pd.testing.assert_frame_equal(ca, cb)
    pd.testing.assert_frame_equal(ea, eb)
    assert not ca.equals(cc) and not ea.equals(ec)
    assert sorted(p.name for p in (tmp_path / "a/data/external/events").glob("*.parquet"))[0] == "events-2023-01.parquet"


def test_demo_data_has_the_flaws_of_real_data(business):
    rng = np.random.default_rng(3)
    customers = simulate_customers(5000, START, END, rng)
    raw_c, raw_e = add_data_flaws(customers, simulate_purchases(customers, START, END, rng), rng)
    assert raw_c["customer_id"].duplicated().sum() > 0 and raw_e["event_id"].duplicated().sum() > 0
    assert 0.03 < raw_c["age"].isna().mean() < 0.08 and (raw_c["age"] > 100).any() | (raw_c["age"] < 18).any()
    assert raw_c["region"].isna().any() and (raw_e["amount"] <= 0).any()
    assert raw_e["amount"].max() > 20 * raw_e["amount"].median()


# gather ---------------------------------------------------------------------------------------------------------

def test_sql_source_reads_through_sqlalchemy_and_names_failures(tmp_path):
    db = tmp_path / "crm.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("create table customers (customer_id int, plan text)")
        conn.execute("insert into customers values (1, 'basic')")
    assert read_sql_source(f"sqlite:///{db}", "select * from customers").to_dict("records") == \
        [{"customer_id": 1, "plan": "basic"}]
    with pytest.raises(StageError) as err:
        read_sql_source(f"sqlite:///{db}", "select * from orders")
    assert err.value.stage == "gather" and err.value.field == "orders" and "crm.sqlite" in err.value.source


def test_database_errors_never_show_the_password(tmp_path):
    with pytest.raises(StageError) as err:   # no such driver here: the error names it, not the password
        read_sql_source("postgresql+nodriver://ana:secret@127.0.0.1:1/crm", "select 1")
    assert "secret" not in str(err.value) and "***" in str(err.value) and "cannot open" in str(err.value)
    assert database_url(f"sqlite:///{tmp_path}/x.sqlite") == f"sqlite:///{tmp_path}/x.sqlite"


def test_gather_writes_nothing_when_any_source_fails(tmp_path):
    (tmp_path / "dvc.yaml").touch(), (tmp_path / "params.yaml").touch()
    pd.DataFrame({"customer_id": [1], "amount": [2.0]}).to_csv(tmp_path / "ok.csv", index=False)
    with pytest.raises(StageError):
        gather({"a": {"path": "ok.csv"}, "b": {"path": "absent.csv"}}, tmp_path)
    assert not (tmp_path / "data").exists()


# preprocess -----------------------------------------------------------------------------------------------------

def test_training_labels_never_look_past_the_hold_out_cutoff(business):
    cutoffs = snapshot_cutoffs(PROBLEM, 3)
    train_cutoffs = [c for c, split in cutoffs.items() if split == "train"]
    assert max(train_cutoffs) + pd.Timedelta(days=PROBLEM.horizon_days) <= PROBLEM.cutoff_date
    # Rewriting every purchase from the hold-out cutoff on leaves the training snapshots unchanged.
    events = business["events"]
    future = events["timestamp"] >= PROBLEM.cutoff_date
    scrambled = pd.concat([events[~future], events[future].assign(customer_id=events[future]["customer_id"].sample(
        frac=1, random_state=0).to_numpy())])
    snaps = label_snapshots(business["customers"], scrambled, snapshot_cutoffs(PROBLEM, 2), PROBLEM)
    pd.testing.assert_frame_equal(snaps[snaps["split"] == "train"].reset_index(drop=True),
                                  business["snapshots"].query("split == 'train'").reset_index(drop=True))


def test_snapshots_hold_only_active_customers_with_both_classes(business):
    snaps = business["snapshots"]
    assert set(snaps["split"]) == {"train", "test"} and 0.1 < snaps["churned"].mean() < 0.6
    assert not snaps.duplicated(["customer_id", "cutoff"]).any()


def test_a_table_with_its_own_label_splits_by_time_or_stratified():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"id": range(1000), "x": rng.normal(size=1000), "y": rng.choice(["yes", "no"], 1000, p=[0.2, 0.8]),
                          "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.permutation(1000), unit="h")})
    units, y, _ = label_from_column(table, "y", "yes")
    by_time, serving = split_table(units, y, "id", "y", "when", 0.25, 0)
    test_times, train_times = (units.loc[by_time["split"] == s, "when"] for s in ("test", "train"))
    assert len(test_times) == 250 and test_times.min() > train_times.max()   # nothing from the future in training
    stratified, _ = split_table(units, y, "id", "y", None, 0.25, 0)
    rates = stratified.groupby("split")["y"].mean()
    assert abs(rates["train"] - rates["test"]) < 0.01 and len(serving) == 250 and "y" not in serving


@pytest.mark.parametrize("positive_class", ["Yes", "yes", True, " YES "])
def test_positive_class_matches_however_yaml_read_it(positive_class):
    table = pd.DataFrame({"x": range(6), "y": ["Yes", "No", None, "yes ", "", "NO"]})
    units, y, report = label_from_column(clean_units(table, "x", [], "unknown", {}, keep=["y"])[0], "y", positive_class)
    assert y.tolist() == [1, 0, 1, 0] and report == {"missing_label_dropped": 2}   # gaps dropped, never negatives


@pytest.mark.parametrize("positive_class", [1, "1", 1.0, True])
def test_positive_class_matches_numeric_labels(positive_class):
    assert label_from_column(pd.DataFrame({"y": [1, 0, 1]}), "y", positive_class)[1].tolist() == [1, 0, 1]
    assert label_from_column(pd.DataFrame({"y": ["1", "0", "1"]}), "y", positive_class)[1].tolist() == [1, 0, 1]


def test_unmatched_positive_class_names_the_values_and_yaml():
    with pytest.raises(StageError) as error:
        label_from_column(pd.DataFrame({"y": ["stay", "leave"]}), "y", False)
    assert error.value.field == "problem.positive_class" and "['leave', 'stay']" in error.value.problem
    assert "YAML" in error.value.problem


def test_without_an_id_exact_duplicate_rows_are_removed_and_counted():
    rows = with_row_id(pd.DataFrame({"a": [1, 1, 1, 2], "b": ["x", "x", "y", "x"]}), None)
    cleaned, report, _ = clean_units(rows, ROW_ID, [], "unknown", {})
    assert cleaned[ROW_ID].tolist() == [0, 2, 3] and report["duplicate_units"] == 1


@pytest.mark.parametrize("values, kind", [
    (["1,200", "NA", "?", " 3.5", ""] * 5, "numeric"),          # numbers stored as text
    (["Yes", "No", None] * 10, "boolean"), (["TRUE", "false"] * 10, "boolean"),
    ([f"ID{i}" for i in range(30)], "id"), (list(range(30)), "id"),   # unique per row
    (["same"] * 30, "drop"), ([f"comment {i % 25}" for i in range(30)], "drop"),   # constant, near-unique text
    (["a", "b", "c"] * 10, "categorical"), (np.linspace(0, 1, 30).tolist(), "numeric"),
    (["2017/12/22", "2017/12/23", "?"] * 10, "date"), (["10:49:41", "10:50:11", "10:51:02"] * 10, "categorical")])
def test_each_typing_rule(values, kind):
    assert infer_column_type(pd.Series(values, name="c"))[0] == kind


def test_typing_counts_gaps_and_obeys_params():
    frame = pd.DataFrame({"k": range(30), "total": [" 1,000", "?", "12"] * 10, "zip": [1000, 2000, 3000] * 10})
    decisions = decide_types(frame, "k", overrides={"zip": "categorical"})
    typed, _ = clean_rows(frame, cleaning_recipe(decisions, "k", None, "unknown", {}))
    assert typed["total"].dtype == "float64" and typed["total"].isna().sum() == 10 and typed["zip"].iloc[0] == "1000"
    assert [(d["type"], d["missing_share"]) for d in decisions] == [("id", 0.0), ("numeric", 0.3333), ("categorical", 0.0)]


def test_label_window_beyond_the_data_is_refused(business):
    late = Problem(**{**PROBLEM.__dict__, "cutoff_date": pd.Timestamp("2025-06-01")})
    with pytest.raises(StageError, match="move problem.cutoff_date earlier") as err:
        label_snapshots(business["customers"], business["events"], snapshot_cutoffs(late, 1), late)
    assert err.value.field == "timestamp"


def test_outlier_cap_is_fitted_before_the_hold_out(business):
    events = business["events"]
    boosted = pd.concat([events, events.tail(50).assign(event_id=lambda d: d["event_id"] + 10**9,
                                                        timestamp=PROBLEM.cutoff_date + pd.Timedelta(days=1),
                                                        amount=1e7)])
    _, before = clean_events(events, business["customers"]["customer_id"], "customer_id", PROBLEM.cutoff_date, 0.99)
    _, after = clean_events(boosted, business["customers"]["customer_id"], "customer_id", PROBLEM.cutoff_date, 0.99)
    assert before["amount_cap"] == after["amount_cap"]


# features -------------------------------------------------------------------------------------------------------

def test_features_are_point_in_time(business):
    events, snaps = business["events"], business["snapshots"]
    test_cutoff = snaps.loc[snaps["split"] == "test", "cutoff"].iloc[0]
    truncated = events[events["timestamp"] < test_cutoff]
    again = build_features(business["customers"], truncated, snaps, "customer_id", [30, 90, 180],
                           ["signup_date", "region", "channel", "plan", "email_opt_in", "age", "income"])
    pd.testing.assert_frame_equal(again, business["table"])


def test_preprocessor_survives_unseen_categories_and_missing_values(business):
    table, spec = business["table"], business["spec"]
    pre = make_preprocessor(spec).fit(table[table["split"] == "train"])
    odd = table.head(20).assign(plan="platinum", age=np.nan, region=None)
    out = pre.transform(odd)
    assert out.shape[0] == 20 and np.isfinite(out).all()


# select and train -----------------------------------------------------------------------------------------------

def test_selection_is_deterministic_and_finds_the_planted_signal(business):
    train = business["table"].query("split == 'train'")
    candidates = {"logistic_regression": {"fixed": {"max_iter": 500}, "search": {"C": {"log_uniform": [0.01, 10]}}},
                  "hist_gradient_boosting": {"fixed": {"max_iter": 40}, "search": {"max_leaf_nodes": [7, 15]}}}
    first = search_candidates(train, business["spec"], candidates, "roc_auc", 3, 2, 0, factor=2, min_rows=200, n_jobs=2)
    second = search_candidates(train, business["spec"], candidates, "roc_auc", 3, 2, 0, factor=2, min_rows=200, n_jobs=1)
    pd.testing.assert_frame_equal(first, second)   # same rows, same order, same scores: no timings, n_jobs changes nothing
    assert "fit_time_s" not in first and first["confirmed"].sum() == len(candidates)
    best = best_per_candidate(first, "roc_auc")
    assert best["roc_auc_mean"].min() > 0.8 and best.index[0] in candidates


def test_a_row_budget_samples_whole_customers_and_keeps_the_churn_rate(business):
    train = business["table"].query("split == 'train'").reset_index(drop=True)
    budget = len(train) // 3
    sample, seen = search_rows(train, business["spec"], budget, seed=5)
    assert len(sample) <= budget and len(sample) > 0.95 * budget and seen["sampled_rows"] == len(sample)
    assert seen["training_rows"] == len(train) and seen["customers"] == train["customer_id"].nunique()
    per_customer = lambda t: t.groupby("customer_id").size()
    kept = per_customer(train).loc[per_customer(sample).index]
    assert (per_customer(sample) == kept).all()   # every snapshot of a sampled customer, none of the others
    assert abs(sample["churned"].mean() - train["churned"].mean()) < 0.005
    shares = lambda t: per_customer(t).value_counts(normalize=True).sort_index()
    assert (shares(sample) - shares(train)).abs().max() < 0.01   # the snapshots-per-customer mix is kept too
    pd.testing.assert_frame_equal(search_rows(train, business["spec"], budget, seed=5)[0], sample)
    assert search_rows(train, business["spec"], len(train), seed=5)[0] is train   # a budget that does not bind
    positions = grouped_sample(train["churned"], train["customer_id"], budget, 5)
    pd.testing.assert_frame_equal(train.iloc[positions].reset_index(drop=True), sample)
    candidates = {"logistic_regression": {"fixed": {"max_iter": 500}, "search": {"C": {"log_uniform": [0.01, 10]}}}}
    tried = search_candidates(sample, business["spec"], candidates, "roc_auc", 3, 2, 0)
    assert best_per_candidate(tried, "roc_auc")["roc_auc_mean"].iloc[0] > 0.8   # the signal is still found


def test_a_model_on_noise_does_not_meet_the_success_threshold(business):
    train = business["table"].query("split == 'train'").copy()
    train["churned"] = np.random.default_rng(0).permutation(train["churned"].to_numpy())
    tried = search_candidates(train, business["spec"], {"logistic_regression": {"fixed": {"max_iter": 500}}}, "roc_auc", 3, 1, 0)
    assert not PROBLEM.meets_target(best_per_candidate(tried, "roc_auc")["roc_auc_mean"].iloc[0])


def test_saved_model_round_trips_and_foreign_types_are_refused(business, tmp_path):
    table, spec = business["table"], business["spec"]
    cols, train = spec["numeric"] + spec["categorical"], table[table["split"] == "train"]
    for name in ("logistic_regression", "random_forest", "hist_gradient_boosting"):
        settings = {"n_estimators": 10} if name == "random_forest" else {"max_iter": 20} if name != "logistic_regression" else {}
        pipe = make_pipeline(spec, make_model(name, settings, 0)).fit(train[cols], train["churned"])
        write_model_digest(save_model(pipe, tmp_path / f"{name}.skops"))   # as the train stage records it
        loaded = load_model(tmp_path / f"{name}.skops")
        np.testing.assert_array_equal(loaded.predict_proba(train[cols]), pipe.predict_proba(train[cols]))
    with pytest.raises(StageError, match="untrusted") as err:
        load_model(tmp_path / "random_forest.skops", trusted=tuple(t for t in TRUSTED_TYPES if "tree" not in t))
    assert err.value.field == "sklearn.tree._tree.Tree"


def test_evaluate_agrees_with_scikit_learn():
    from sklearn.metrics import f1_score, roc_auc_score
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 500), rng.random(500)
    scores = evaluate(y, p, 0.3)
    assert scores["roc_auc"] == roc_auc_score(y, p) and scores["f1"] == f1_score(y, p >= 0.3)
