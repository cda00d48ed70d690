"""A team's own tables, end to end, with params.yaml edits only. Real public data sets from ../shared/datasets
(skipped when absent). Each starts where most new users start: after the quick start ran the demo's pipeline."""
import json
import shutil

import pandas as pd
import pytest

from conftest import HAS_DEMO, ROOT, copy_project, run, set_params

DATASETS = ROOT.parent / "shared" / "datasets"
ADULT = DATASETS / "adult.csv"
QUICK = {("select", "n_iter"): 2, ("select", "cv_folds"): 3, ("train", "cv_folds"): 3,
         ("select", "candidates", "random_forest", "fixed", "n_estimators"): 60,
         ("evaluate", "importance_repeats"): 2}


@pytest.fixture
def quick_start(request, tmp_path):
    """The project as a new user has it after the README's quick start: the demo's pipeline run, with its outputs,
    dvc.lock and DVC cache (the tiny profile of it); a fresh copy in a project without the demo."""
    dest = tmp_path / "project"
    if not HAS_DEMO:
        return copy_project(dest)
    shutil.copytree(request.getfixturevalue("tiny_project"), dest, symlinks=True)
    return dest


def own_data_project(project, csv, table, params):
    "The README's steps: leave the demo out, copy the file in, drop the example's schemas, point params.yaml at it."
    run("python3 tools/drop_demo.py", project)
    shutil.copy(csv, project / "data/external" / csv.name)
    for schema in (project / "data/schema").glob("*.pbtxt"):
        schema.unlink()
    set_params(project, {("gather",): {table: {"path": f"data/external/{csv.name}"}}, ("validate", "tables"): [table],
                         ("preprocess", "units"): table, ("preprocess", "event_history"): None,
                         ("preprocess", "valid_ranges"): {}, ("features", "categorical"): [],
                         ("problem", "id_column"): None, ("problem", "cutoff_date"): None,
                         ("problem", "horizon_days"): None, ("problem", "active_window_days"): None,
                         **params, **QUICK})
    return project


@pytest.mark.integration
@pytest.mark.skipif(not ADULT.is_file(), reason="../shared/datasets/adult.csv is not here")
def test_rare_categories_in_the_held_out_rows_are_scored_and_named(quick_start):
    """Adult census: `native-country` has a long tail (Holand-Netherlands occurs once). With a random stratified
    split (seed 2, once the 24 exact duplicate rows are gone) that row lands in the test set, which is also the default batch to score: the model scores it like
    its rare levels, so the batch is scored with a warning that names the level, not refused."""
    project = own_data_project(quick_start, ADULT, "adult", {
        ("problem", "name"): "income over 50K", ("problem", "label"): "class", ("problem", "positive_class"): ">50K",
        ("preprocess", "seed"): 2, ("evaluate", "segments"): ["sex", "race"]})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((project / "reports/score/summary.json").read_text())
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert summary["rows"] == metrics["n_test"] and summary["unseen_levels"] >= 1
    history = pd.read_csv(project / "reports/monitoring/history.csv")   # the demo's batches left with the demo
    assert history["batch"].tolist() == ["serving"] and history["rows"].tolist() == [summary["rows"]]
    assert history["batch_date"].isna().all()   # rows split at random: undated, the model's age not judged
    report = " ".join((project / "reports/score/anomalies.md").read_text().split())
    assert "Anomalies: 0" in report and "| native-country | Holand-Netherlands | 1 |" in report and "| warning |" in report
    predictions = pd.read_parquet(project / "data/predictions/predictions.parquet")
    assert len(predictions) == metrics["n_test"] and predictions["probability"].between(0, 1).all()
    assert not (project / "data/external/crm.sqlite").exists(), "an own-data project carries no demo"
    schema = (project / "data/schema/adult.pbtxt").read_text()
    assert "min_domain_mass: 0.98" in schema, "the first run's inferred draft tolerates a few unseen categories"


BANK = DATASETS / "bank_marketing.csv"


def baseline_roc_auc(project, label):
    "Plain scikit-learn on the project's own split: the better of logistic regression and histogram gradient boosting."
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    spec = json.loads((project / "data/features/spec.json").read_text())
    train, test = (pd.read_parquet(project / f"data/features/{s}.parquet") for s in ("train", "test"))
    num, cat = spec["numeric"], spec["categorical"]
    linear = make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        (OneHotEncoder(handle_unknown="ignore", min_frequency=0.01), cat)), LogisticRegression(max_iter=2000))
    boosted = make_pipeline(make_column_transformer(
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1), cat),
        ("passthrough", num)), HistGradientBoostingClassifier(categorical_features=list(range(len(cat))), random_state=0))
    return max(roc_auc_score(test[label], m.fit(train[num + cat], train[label]).predict_proba(test[num + cat])[:, 1])
               for m in (linear, boosted))


@pytest.mark.integration
@pytest.mark.skipif(not BANK.is_file(), reason="../shared/datasets/bank_marketing.csv is not here")
def test_bank_marketing_duration_is_flagged_then_dropped_by_params(quick_start):
    """Bank Marketing: no id, a 0/1 label. The leakage guard flags `duration` (known only after the call) and fails
    the features stage; dropping it in params.yaml, the run completes, no column left as text is numeric, and the
    hold-out ROC-AUC is within 0.01 of plain scikit-learn on the same split."""
    project = own_data_project(quick_start, BANK, "bank", {
        ("problem", "name"): "term deposit", ("problem", "label"): "subscribe", ("problem", "positive_class"): 1,
        ("evaluate", "segments"): ["job"]})
    result = run("dvc repro features", project, check=False)
    assert result.returncode != 0 and "features.leakage.accept" in result.stdout + result.stderr
    leakage = " ".join((project / "reports/leakage.md").read_text().split())
    assert "| duration |" in leakage and "| flagged |" in leakage
    assert leakage.count("| flagged |") == 1, leakage
    set_params(project, {("preprocess", "drop_columns"): ["duration"]})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    columns = (project / "reports/columns.md").read_text()
    for numeric in ("age", "balance", "campaign", "pdays", "previous"):
        assert f"| {numeric} " in columns and "numeric" in columns.split(f"| {numeric} ")[1].split("\n")[0]
    assert "| flagged |" not in (project / "reports/leakage.md").read_text()
    spec = json.loads((project / "data/features/spec.json").read_text())
    assert "duration" not in spec["numeric"] + spec["categorical"]
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["roc_auc"] >= baseline_roc_auc(project, "subscribe") - 0.01, metrics

    # New rows as they come from the source (a raw CSV slice: the held-out clients, label removed) are cleaned by the
    # training recipe and get exactly the probabilities the modelling-table path gave the same rows.
    modelled = pd.read_parquet(project / "data/predictions/predictions.parquet")
    raw = pd.read_csv(BANK).iloc[modelled["row_id"]].drop(columns="subscribe")
    raw.to_csv(project / "data/external/new_clients.csv", index=False)
    set_params(project, {("score", "batch"): "data/external/new_clients.csv"})
    result = run("dvc repro score", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scored = pd.read_parquet(project / "data/predictions/predictions.parquet")
    assert scored["row_id"].tolist() == list(range(len(raw)))   # a batch without ids is numbered by its rows
    assert scored["probability"].to_numpy().tolist() == modelled["probability"].to_numpy().tolist()
    assert scored["decision"].tolist() == modelled["decision"].tolist()


OCCUPANCY = DATASETS / "occupancy.csv"


@pytest.mark.integration
@pytest.mark.skipif(not OCCUPANCY.is_file(), reason="../shared/datasets/occupancy.csv is not here")
def test_occupancy_splits_by_date_and_accepts_its_sensors_by_name(quick_start):
    """Occupancy: separate Date and Time text columns; split by time on `Date` (rows are in time order, so the latest
    days are the test set). The label is a head count 0-3; the problem is "the room is occupied": positive_class
    [1, 2, 3]. `Time` is distinct on every row: an id, left out. The guard flags the light sensors, real signals:
    accepted by name, one params line each. The later, warmer days are scored, their skew named as a warning."""
    project = own_data_project(quick_start, OCCUPANCY, "rooms", {
        ("problem", "name"): "occupied room", ("problem", "label"): "Room_Occupancy_Count",
        ("problem", "positive_class"): [1, 2, 3], ("problem", "task"): "binary",   # four values: binary by choice
        ("preprocess", "timestamp_column"): "Date", ("evaluate", "segments"): []})
    result = run("dvc repro features", project, check=False)
    assert result.returncode != 0 and "features.leakage.accept" in result.stdout + result.stderr
    flagged = [line.split("|")[1].strip() for line in (project / "reports/leakage.md").read_text().splitlines()
               if "| flagged " in line]
    assert "S1_Light" in flagged, flagged
    columns = " ".join((project / "reports/columns.md").read_text().split())
    assert "| Date | date |" in columns and "| Time | id | text distinct on every row" in columns and "| S1_Temp | numeric |" in columns
    set_params(project, {("features", "leakage", "accept"): [
        {"feature": f, "reason": "the sensor reads the room's use as it happens: known at scoring"} for f in flagged]})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    snapshots = pd.read_parquet(project / "data/interim/snapshots.parquet")
    assert snapshots.loc[snapshots["split"] == "train", "cutoff"].max() <= snapshots.loc[snapshots["split"] == "test", "cutoff"].min()
    occupied = pd.read_csv(OCCUPANCY)["Room_Occupancy_Count"].gt(0).mean()
    preprocess = json.loads((project / "reports/preprocess.json").read_text())
    positive = sum(s["rows"] * s["positive_rate"] for s in preprocess["split"].values()) / sum(s["rows"] for s in preprocess["split"].values())
    assert abs(positive - occupied) < 0.01, (positive, occupied)   # 1, 2 and 3 people all count as occupied
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["roc_auc"] >= baseline_roc_auc(project, "Room_Occupancy_Count") - 0.01, metrics
    summary = json.loads((project / "reports/score/summary.json").read_text())
    assert summary["rows"] == metrics["n_test"], summary
    if summary["skew_warnings"]:
        assert "Skew against the training rows (warnings)" in (project / "reports/score/anomalies.md").read_text()


BIKES = DATASETS / "bike_sharing_hourly.csv"
REGRESSION = {("problem", "task"): "auto", ("problem", "positive_class"): None, ("problem", "cost_false_positive"): None,
              ("problem", "cost_false_negative"): None, ("train", "decision_threshold"): "cost_optimal",
              ("select", "candidates"): {
                  "ridge": {"fixed": {}, "search": {"alpha": {"log_uniform": [0.01, 100.0]}}},
                  "random_forest": {"fixed": {"n_jobs": 2}, "search": {"min_samples_leaf": [5, 20]}},
                  "hist_gradient_boosting": {"fixed": {"max_iter": 300, "early_stopping": True},
                                             "search": {"learning_rate": {"log_uniform": [0.05, 0.3]},
                                                        "max_leaf_nodes": [31, 63]}}}}


def features_and_split(project):
    spec = json.loads((project / "data/features/spec.json").read_text())
    train, test = (pd.read_parquet(project / f"data/features/{s}.parquet") for s in ("train", "test"))
    return spec, train, test


def plain_models(spec, classifier: bool):
    "Plain scikit-learn on the same columns: a linear model and histogram gradient boosting with default settings."
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    num, cat = spec["numeric"], spec["categorical"]
    linear = make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        (OneHotEncoder(handle_unknown="ignore", min_frequency=0.01), cat)),
        LogisticRegression(max_iter=2000) if classifier else Ridge())
    boosting = (HistGradientBoostingClassifier if classifier else HistGradientBoostingRegressor)(
        categorical_features=list(range(len(cat))), random_state=0)
    boosted = make_pipeline(make_column_transformer(
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1), cat),
        ("passthrough", num)), boosting)
    return linear, boosted


@pytest.mark.integration
@pytest.mark.skipif(not BIKES.is_file(), reason="../shared/datasets/bike_sharing_hourly.csv is not here")
def test_bike_sharing_is_a_regression_whose_parts_of_the_count_are_flagged(quick_start):
    """Hourly bike rentals: `cnt` is a count with hundreds of values, so `task: auto` infers a regression. `casual` and
    `registered` add up to `cnt`: the guard flags both; dropped in params, the run completes, split by time on
    `dteday`, with a hold-out RMSE no more than 2% above the better of ridge and histogram gradient boosting."""
    from sklearn.metrics import root_mean_squared_error
    project = own_data_project(quick_start, BIKES, "bikes", {
        ("problem", "name"): "hourly rentals", ("problem", "label"): "cnt", ("problem", "primary_metric"): "rmse",
        ("problem", "success_threshold"): 100.0, ("preprocess", "timestamp_column"): "dteday",
        ("evaluate", "segments"): ["season"], ("features", "categorical"): ["season", "weathersit"], **REGRESSION})
    result = run("dvc repro features", project, check=False)
    assert result.returncode != 0 and "features.leakage.accept" in result.stdout + result.stderr
    problem = json.loads((project / "reports/problem.json").read_text())
    assert problem["task"] == "regression" and "number" in problem["task_reason"], problem
    assert "regression" in (project / "reports/problem.md").read_text()
    flagged = {line.split("|")[1].strip() for line in (project / "reports/leakage.md").read_text().splitlines()
               if "| flagged " in line}
    assert {"casual", "registered"} <= flagged, flagged
    set_params(project, {("preprocess", "drop_columns"): ["casual", "registered"]})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| flagged |" not in (project / "reports/leakage.md").read_text()
    spec, train, test = features_and_split(project)
    columns = spec["numeric"] + spec["categorical"]
    baseline = min(root_mean_squared_error(test["cnt"], m.fit(train[columns], train["cnt"]).predict(test[columns]))
                   for m in plain_models(spec, classifier=False))
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["rmse"] <= 1.02 * baseline, (metrics["rmse"], baseline)
    assert metrics["rmse"] < min(b["rmse"] for b in metrics["naive_baselines"].values())
    predictions = pd.read_parquet(project / "data/predictions/predictions.parquet")
    assert len(predictions) == metrics["n_test"] and predictions["prediction"].notna().all()


@pytest.mark.integration
@pytest.mark.skipif(not OCCUPANCY.is_file(), reason="../shared/datasets/occupancy.csv is not here")
def test_occupancy_head_count_is_a_multiclass_problem(quick_start):
    """The room's head count (0-3) as classes: `task: auto` infers multiclass from four whole numbers. The light
    sensors are accepted by name; macro-F1 on the later days no more than 0.01 below the better of logistic
    regression and histogram gradient boosting on the same split."""
    from sklearn.metrics import f1_score
    project = own_data_project(quick_start, OCCUPANCY, "rooms", {
        ("problem", "name"): "people in the room", ("problem", "label"): "Room_Occupancy_Count",
        ("problem", "task"): "auto", ("problem", "positive_class"): None, ("problem", "primary_metric"): "macro_f1",
        ("problem", "success_threshold"): 0.5, ("preprocess", "timestamp_column"): "Date", ("evaluate", "segments"): []})
    set_params(project, {("select", "cv_folds"): 5})   # folds of consecutive time where some hold only two classes
    result = run("dvc repro features", project, check=False)
    assert (project / "reports/leakage.md").is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    problem = json.loads((project / "reports/problem.json").read_text())
    assert problem["task"] == "multiclass" and "whole numbers" in problem["task_reason"], problem
    flagged = [line.split("|")[1].strip() for line in (project / "reports/leakage.md").read_text().splitlines()
               if "| flagged " in line]
    assert result.returncode != 0 and "S1_Light" in flagged, flagged
    set_params(project, {("features", "leakage", "accept"): [
        {"feature": f, "reason": "the sensor reads the room's use as it happens: known at scoring"} for f in flagged]})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    spec, train, test = features_and_split(project)
    columns, label = spec["numeric"] + spec["categorical"], "Room_Occupancy_Count"
    baseline = max(f1_score(test[label], m.fit(train[columns], train[label]).predict(test[columns]), average="macro")
                   for m in plain_models(spec, classifier=True))
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["macro_f1"] >= baseline - 0.01, (metrics["macro_f1"], baseline)
    assert metrics["log_loss"] < metrics["naive_baselines"]["class_prior"]["log_loss"]
    predictions = pd.read_parquet(project / "data/predictions/predictions.parquet")
    assert {f"probability_{c}" for c in range(4)} <= set(predictions.columns), predictions.columns
    assert predictions["prediction"].isin(range(4)).all()


CDNOW = DATASETS / "cdnow_purchases.csv"
PURCHASE_LOG = {   # the README's params for a purchase log alone: its own column names, no unit table
    ("problem", "name"): "repeat purchase", ("problem", "id_column"): "customer_id", ("problem", "label"): "churned",
    ("problem", "cutoff_date"): "2022-04-01", ("problem", "horizon_days"): 90, ("problem", "active_window_days"): 180,
    ("gather",): {"purchases": {"path": "data/external/cdnow_purchases.csv",
                                "required_columns": ["customer_id", "date", "amount"]}},
    ("validate", "tables"): ["purchases"], ("preprocess", "units"): None,
    ("preprocess", "event_history"): {"table": "purchases", "id_column": "customer_id", "time_column": "date",
                                      "amount_column": "amount", "quantity_column": "quantity", "label": "churn",
                                      "signup_column": None,
                                      "amount_cap_quantile": 0.995, "train_snapshots": 3, "serving_as_of": "2022-07-01"},
    ("evaluate", "segments"): []}


def rfm(table):
    "Recency, purchase count and total spend before the cutoff: the classic baseline's three features."
    return pd.DataFrame({"recency": table["recency_days"], "frequency": table["lifetime_purchases"],
                         "monetary": table["avg_purchase_value"] * table["lifetime_purchases"]})


def rfm_baseline(project, label, classifier):
    "Logistic (or linear) regression on `rfm`, fitted on the project's training snapshots, scored on its hold-out."
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import mean_squared_error, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    train, test = (pd.read_parquet(project / f"data/features/{s}.parquet") for s in ("train", "test"))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000) if classifier else LinearRegression())
    model.fit(rfm(train), train[label])
    if classifier:
        return roc_auc_score(test[label], model.predict_proba(rfm(test))[:, 1])
    return mean_squared_error(test[label], model.predict(rfm(test))) ** 0.5


@pytest.mark.integration
@pytest.mark.skipif(not CDNOW.is_file(), reason="../shared/datasets/cdnow_purchases.csv is not here")
def test_the_cdnow_purchase_log_alone_gives_a_churn_and_a_spend_model_as_good_as_rfm(quick_start):
    """CDNOW's purchases as exported (ids `00001`, dates `20210101`), no customer table: churn in the 90 days after a
    cutoff, then the spend in them, by params alone. Each model at least matches a recency-frequency-monetary baseline
    on the same snapshots (ROC-AUC within 0.01; RMSE within 2%). A cutoff the log cannot label is refused before any
    stage runs, saying which dates fit."""
    project = own_data_project(quick_start, CDNOW, "purchases", PURCHASE_LOG)
    set_params(project, {("problem", "cutoff_date"): "2022-05-01"})
    refused = run("dvc repro", project, check=False)
    assert refused.returncode != 0 and "the hold-out cutoff must be on or before 2022-04-02" in refused.stderr + refused.stdout
    assert not (project / "data/raw/purchases.parquet").exists(), "refused by the check, before gather ran"
    set_params(project, {("problem", "cutoff_date"): "2022-04-01"})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((project / "reports/preprocess.json").read_text())
    assert report["event_column_types"] == {"customer_id": "id", "date": "time", "quantity": "quantity", "amount": "amount"}
    assert {"lifetime_quantity", "quantity_90d"} <= set(json.loads((project / "data/features/spec.json").read_text())["numeric"])
    assert report["units_from_events"] > 23000 and report["non_positive_amounts"] == 80
    validation = json.loads((project / "reports/validation/summary.json").read_text())["purchases"]
    assert validation["anomalies"] == 0 and "read_as_numbers" not in validation, validation   # 00001 is a code, no number
    columns = " ".join((project / "reports/columns.md").read_text().split())
    assert "text with leading zeros, kept as written (e.g. '00001')" in columns
    assert "whole numbers written as yyyymmdd dates, e.g. 20210101" in columns
    events = pd.read_parquet(project / "data/interim/events.parquet")
    assert events["timestamp"].min() == pd.Timestamp("2021-01-01") and events["timestamp"].max() == pd.Timestamp("2022-06-30")
    predictions = pd.read_parquet(project / "data/predictions/predictions.parquet")
    assert predictions["customer_id"].str.fullmatch(r"\d{5}").all() and len(predictions) == report["serving_rows"]
    churn = json.loads((project / "reports/metrics.json").read_text())
    assert churn["roc_auc"] >= rfm_baseline(project, "churned", True) - 0.01, churn

    set_params(project, {("problem", "label"): "spend", ("problem", "primary_metric"): "rmse",
                         ("problem", "success_threshold"): 60, ("problem", "positive_class"): None,
                         ("problem", "cost_false_positive"): None, ("problem", "cost_false_negative"): None,
                         ("preprocess", "event_history", "label"): "spend",
                         ("select", "candidates"): {"ridge": {"fixed": {}, "search": {"alpha": {"log_uniform": [0.01, 100.0]}}},
                                                    "hist_gradient_boosting": {"fixed": {"max_iter": 300, "early_stopping": True},
                                                                               "search": {"learning_rate": {"log_uniform": [0.02, 0.3]}}}}})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    spend = json.loads((project / "reports/metrics.json").read_text())
    assert spend["primary_metric"] == "rmse" and spend["rmse"] <= 1.02 * rfm_baseline(project, "spend", False), spend
    assert json.loads((project / "reports/problem.json").read_text())["task"] == "regression"
