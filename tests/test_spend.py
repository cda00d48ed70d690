"""Spend beside churn: the demo business's event history gives a numeric label (preprocess.event_history.label: spend)
that the pipeline runs end to end as a regression, from the same customers and cutoffs as churn."""
import json

import pandas as pd
import pytest
import yaml

from conftest import run, set_params

pytestmark = [pytest.mark.integration, pytest.mark.demo]   # the demo's tiny run, asked the other question

REGRESSION_CANDIDATES = {
    "ridge": {"fixed": {}, "search": {"alpha": {"log_uniform": [0.01, 100.0]}}},
}
SPEND = {
    ("preprocess", "event_history", "label"): "spend",
    ("problem", "label"): "spend",
    ("problem", "task"): "auto",
    ("problem", "description"): "Predict how much each customer active on a cutoff date spends in the 90 days after it.",
    ("problem", "primary_metric"): "rmse",
    ("problem", "success_threshold"): 120.0,   # the tiny run: a mean of about 115 a customer, predicting it ~127 off
    ("problem", "positive_class"): None,
    ("problem", "cost_false_positive"): None,
    ("problem", "cost_false_negative"): None,
}


def spend_params(project) -> None:
    "Ask the tiny demo the spend question: the label, a regression metric, regression candidates (ridge and HGB)."
    candidates = yaml.safe_load((project / "params.yaml").read_text())["select"]["candidates"]
    set_params(project, {**SPEND, ("select", "candidates"): {
        **REGRESSION_CANDIDATES, "hist_gradient_boosting": candidates["hist_gradient_boosting"]}})


def test_spend_runs_end_to_end_as_a_regression(tiny_copy):
    churn = pd.read_parquet(tiny_copy / "data/interim/snapshots.parquet")
    serving = (tiny_copy / "data/interim/serving.parquet").read_bytes()
    spend_params(tiny_copy)
    run("dvc repro", tiny_copy)

    problem = json.loads((tiny_copy / "reports/problem.json").read_text())
    assert problem["task"] == "regression" and "derived from an event history" in problem["task_reason"], problem
    assert "the amount a unit spends after the cutoff" in problem["task_reason"]
    card = " ".join((tiny_copy / "reports/problem.md").read_text().split())
    assert "| Label | `spend`, the amount spent in the 90 days after the cutoff (0 for none) |" in card, card
    assert "Cost of" not in card

    # The same customers and cutoffs as churn, the label a float: 0 exactly where churn said 1.
    snapshots = pd.read_parquet(tiny_copy / "data/interim/snapshots.parquet")
    assert snapshots["spend"].dtype == "float64" and (snapshots["spend"] >= 0).all()
    keys = ["customer_id", "cutoff", "split"]
    pd.testing.assert_frame_equal(snapshots[keys], churn[keys])
    assert ((snapshots["spend"] == 0) == (churn["churned"] == 1)).all()
    assert (tiny_copy / "data/interim/serving.parquet").read_bytes() == serving   # the serving snapshot unchanged
    split = json.loads((tiny_copy / "reports/preprocess.json").read_text())["split"]
    assert set(split["test"]) == {"rows", "mean", "median", "min", "max"} and split["test"]["max"] > 0

    metrics = json.loads((tiny_copy / "reports/metrics.json").read_text())
    assert metrics["primary_metric"] == "rmse" and {"rmse", "mae", "r2"} <= set(metrics), sorted(metrics)
    assert set(metrics["naive_baselines"]) == {"predict_median", "predict_mean"}
    assert metrics["rmse"] < metrics["best_naive_score"] and metrics["primary_gain_over_best_naive"] > 0, metrics
    assert metrics["r2"] > 0 and metrics["model"] in ("ridge", "hist_gradient_boosting")
    assert metrics["meets_success_threshold"], metrics

    predictions = pd.read_parquet(tiny_copy / "data/predictions/predictions.parquet")
    assert "prediction" in predictions and predictions["prediction"].dtype == "float64"
    assert len(predictions) == len(pd.read_parquet(tiny_copy / "data/interim/serving.parquet"))


@pytest.mark.parametrize("change, fragments", [
    ({("problem", "task"): "binary"},
     ["stage 'problem'", "field 'problem.task'", "preprocess.event_history.label: spend", "regression"]),
    ({("preprocess", "event_history", "label"): "revenue"},
     ["stage 'preprocess'", "field 'preprocess.event_history.label'", "'revenue' is not one of ['churn', 'spend']"]),
])
def test_a_task_that_contradicts_the_label_or_an_unknown_label_is_refused_before_any_stage_runs(tiny_copy, change,
                                                                                                   fragments):
    spend_params(tiny_copy)
    set_params(tiny_copy, change)
    result = run("dvc repro", tiny_copy, check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    error = next((line for line in message.splitlines() if line.startswith("error: ")), message)
    assert all(f in error for f in fragments), error
    assert "Running stage 'problem'" not in message   # the check stage refused it: no stage ran
