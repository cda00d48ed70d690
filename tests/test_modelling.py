"""Model selection, evaluation, the model artefact and scoring: the claims a senior ML engineer would check."""
import hashlib
import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import run, set_params
from ml_lifecycle.modelling import Problem, cost_optimal_threshold, load_model

PROBLEM = Problem.from_params(dict(name="churn", id_column="customer_id", label="churned", cutoff_date="2025-04-01",
                                   horizon_days=90, active_window_days=180, primary_metric="roc_auc",
                                   success_threshold=0.7, cost_false_positive=30, cost_false_negative=150))


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_threshold_follows_the_costs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3))
    y = (X @ [1.5, -1.0, 0.5] + rng.logistic(size=4000) > 1).astype(int)
    proba = LogisticRegression().fit(X[:2000], y[:2000]).predict_proba(X[2000:])[:, 1]
    thresholds = [cost_optimal_threshold(y[2000:], proba, Problem(**{**PROBLEM.__dict__, "cost_false_positive": c}))
                  for c in (5.0, 30.0, 90.0)]
    assert thresholds[0] < thresholds[1] < thresholds[2], thresholds   # a cheaper offer lowers the threshold
    # For calibrated probabilities the optimum sits near offer / value (contact when p * value > offer).
    assert abs(thresholds[1] - 30 / 150) < 0.08


@pytest.mark.integration
@pytest.mark.demo
def test_planted_signal_is_recovered(tiny_project):
    metrics = json.loads((tiny_project / "reports/metrics.json").read_text())
    assert metrics["roc_auc"] > 0.80 and metrics["meets_success_threshold"]


@pytest.mark.integration
@pytest.mark.demo
def test_same_params_give_the_same_model_bytes_and_metrics(tiny_copy):
    before = {p: digest(tiny_copy / p) for p in ("models/choice.json", "models/model.skops", "reports/metrics.json")}
    for stage in ("select", "train", "evaluate"):
        run(f"ml-lifecycle run {stage}", tiny_copy)
    assert {p: digest(tiny_copy / p) for p in before} == before


@pytest.mark.integration
@pytest.mark.demo
def test_a_model_without_signal_fails_the_success_check(tiny_copy):
    train = pd.read_parquet(tiny_copy / "data/features/train.parquet")
    train["churned"] = np.random.default_rng(0).permutation(train["churned"].to_numpy())
    train.to_parquet(tiny_copy / "data/features/train.parquet", index=False)
    set_params(tiny_copy, {("evaluate", "fail_on_miss"): True})
    run("ml-lifecycle run select && ml-lifecycle run train", tiny_copy)
    result = run("ml-lifecycle run evaluate", tiny_copy, check=False)
    assert result.returncode != 0 and "below the success threshold" in result.stderr and "roc_auc" in result.stderr
    metrics = json.loads((tiny_copy / "reports/metrics.json").read_text())
    assert metrics["meets_success_threshold"] is False and metrics["roc_auc"] < 0.65


@pytest.mark.integration
@pytest.mark.demo
def test_an_unknown_segment_column_fails_the_project_check_in_seconds(tiny_copy):
    set_params(tiny_copy, {("evaluate", "segments"): ["plan", "planz"]})
    result = run("ml-lifecycle check", tiny_copy, check=False)
    assert result.returncode != 0 and "evaluate.segments" in result.stderr and "planz" in result.stderr


@pytest.mark.integration
@pytest.mark.demo
def test_the_evaluate_notebook_shows_its_curves_as_a_figure(tiny_project):
    executed = nbformat.read(tiny_project / "reports/notebooks/09_evaluate.ipynb", as_version=4)
    assert any("image/png" in out.get("data", {}) for cell in executed.cells for out in cell.get("outputs", []))


@pytest.mark.integration
@pytest.mark.demo
def test_a_model_file_with_untrusted_types_is_refused(tiny_copy):
    import operator
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    planted = Pipeline([("f", FunctionTransformer(operator.neg)), ("model", LogisticRegression())])
    planted.fit(np.array([[0.0], [1.0]]), [0, 1])
    sio.dump(planted, tiny_copy / "models/model.skops")
    result = run("ml-lifecycle run evaluate", tiny_copy, check=False)
    assert result.returncode != 0 and "_operator.neg" in result.stderr and "untrusted" in result.stderr


@pytest.mark.integration
@pytest.mark.demo
def test_scoring_accepts_a_clean_batch(tiny_project):
    predictions = pd.read_parquet(tiny_project / "data/predictions/predictions.parquet")
    serving = pd.read_parquet(tiny_project / "data/features/serving.parquet")
    assert predictions["customer_id"].tolist() == serving["customer_id"].tolist()
    assert predictions["probability"].between(0, 1).all()
    threshold = json.loads((tiny_project / "models/threshold.json").read_text())["threshold"]
    assert (predictions["decision"] == (predictions["probability"] >= threshold)).all()
    model = load_model(tiny_project / "models/model.skops", stage="score")   # the model file alone decides the same
    assert model.threshold == threshold and (model.predict(serving) == 1).tolist() == predictions["decision"].tolist()
    summary = json.loads((tiny_project / "reports/score/summary.json").read_text())
    assert summary["rows"] == len(serving)


@pytest.mark.integration
@pytest.mark.demo
@pytest.mark.parametrize("break_batch, feature", [
    (lambda b: b.assign(plan=np.where(np.arange(len(b)) % 5 == 0, "platinum", b["plan"])), "plan"),
    (lambda b: b.drop(columns="recency_days"), "recency_days"),
])
def test_scoring_refuses_a_batch_with_anomalies(tiny_copy, break_batch, feature):
    before = digest(tiny_copy / "data/predictions/predictions.parquet")
    batch = break_batch(pd.read_parquet(tiny_copy / "data/features/serving.parquet"))
    (tiny_copy / "incoming").mkdir()
    batch.to_csv(tiny_copy / "incoming/batch.csv", index=False)
    set_params(tiny_copy, {("score", "batch"): "incoming/batch.csv"})
    result = run("dvc repro score", tiny_copy, check=False)
    assert result.returncode != 0
    error = next(l for l in (result.stdout + result.stderr).splitlines() if l.startswith("error: "))
    assert "stage 'score'" in error and "incoming/batch.csv" in error and f"'{feature}'" in error
    run("git checkout params.yaml && dvc checkout --force", tiny_copy)
    assert digest(tiny_copy / "data/predictions/predictions.parquet") == before
