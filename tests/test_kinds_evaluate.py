"""The evaluate stage on a regression and a multiclass problem (issue 19): toy projects whose model file is saved as
train saves one of those kinds (the pipeline with its row cleaner first, no threshold), the kind recorded by the
problem stage in `reports/problem.json`. Each kind writes its metrics beside the naive baselines, every plot file
`dvc.yaml` declares (those of the other kinds with their header only), segments and a model card of its own."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from ml_lifecycle import catalog
from ml_lifecycle.check import toy_project
from ml_lifecycle.cleaning import RecipeCleaner, cleaning_recipe
from ml_lifecycle.core import StageError
from ml_lifecycle.modelling import (
    LOWER_IS_BETTER, TASK_METRICS, assemble_model, make_model, make_pipeline, model_columns, save_model,
    write_model_digest)
from ml_lifecycle.params import declared_view
from ml_lifecycle.stages import evaluate
from ml_lifecycle.tables import read_json, write_json, write_table

SPEC = {"id_column": "customer_id", "numeric": ["signal", "noise"], "categorical": ["plan"], "impute_numeric": "median",
        "min_category_frequency": 0.01}
BINARY_ONLY = ("roc", "precision_recall", "calibration", "profit")
REGRESSION_ONLY = ("predicted_actual", "residuals")


def toy_rows(n, cutoffs, seed, task, label, codes=("low", "mid", "high")):
    "Rows with a signal, noise and a plan; the label a quantity (regression) or one of three `codes` (multiclass)."
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"customer_id": np.arange(n), "cutoff": pd.to_datetime(rng.choice(cutoffs, n)),
                          "signal": rng.normal(size=n), "noise": rng.normal(size=n), "plan": rng.choice(["a", "b"], n)})
    value = frame["signal"] + 0.5 * (frame["plan"] == "b") + rng.normal(scale=0.4, size=n)
    label_values = (100 + 20 * value if task == "regression" else
                    np.select([value < -0.5, value < 0.7], list(codes[:2]), codes[2]))
    return frame.assign(**{label: label_values})


def kind_project(tmp_path, task, problem, evaluate_settings=None, codes=("low", "mid", "high"), model_file=None):
    "A toy project of a `task` problem, its model file saved and recorded as train does; `(root, params)`."
    values = {"problem": problem, "evaluate": {"segments": ["plan"], "fail_on_miss": False, "importance_repeats": 2,
                                               "seed": 0, **(evaluate_settings or {})}}
    root, values = toy_project(values, tmp_path / "toy")
    label, spec = problem["label"], {**SPEC, "label": problem["label"]}
    train = toy_rows(400, ["2024-01-01", "2024-04-01"], 1, task, label, codes)
    write_json(spec, root / catalog.FEATURE_SPEC)
    write_table(train, root / catalog.TRAIN)
    write_table(toy_rows(300, ["2024-07-01"], 2, task, label, codes), root / catalog.TEST)
    name = "ridge" if task == "regression" else "logistic_regression"
    pipeline = make_pipeline(spec, make_model(name, {}, 0, task=task)).fit(train[model_columns(spec)], train[label])
    recipe = cleaning_recipe([{"column": c, "type": "numeric"} for c in SPEC["numeric"]] +
                             [{"column": "plan", "type": "categorical"}], "customer_id", label, "unknown", {})
    saved = model_file(RecipeCleaner(recipe), pipeline) if model_file else \
        Pipeline([("clean", RecipeCleaner(recipe)), *pipeline.steps])   # as train saves a multiclass or regression model
    save_model(saved, root / catalog.MODEL)
    write_model_digest(root / catalog.MODEL, catalog.MODEL)
    write_json({"model": name, "settings": {}, "strategy": "predicted_value" if task == "regression" else
                "most_probable_class"}, root / catalog.THRESHOLD)
    write_json({**problem, "task": task, "task_reason": "toy"}, root / catalog.PROBLEM_JSON)   # as the problem stage records it
    return root, values


def run_stage(root, values):
    return evaluate.run(declared_view("evaluate", values, root), root)


def plot_text(root, name):
    return (root / catalog.plot_file(name)).read_text()


REGRESSION = {"name": "spend", "description": "What a customer will spend.", "task": "auto", "id_column": "customer_id",
              "label": "spend", "primary_metric": "rmse", "success_threshold": 15.0}
MULTICLASS = {"name": "tier", "id_column": "customer_id", "label": "tier", "primary_metric": "log_loss",
              "success_threshold": 0.8}


def test_a_regression_is_judged_on_its_errors_beside_the_naive_baselines(tmp_path):
    root, values = kind_project(tmp_path, "regression", REGRESSION)
    result = run_stage(root, values)
    metrics = read_json(root / catalog.METRICS)
    assert metrics == result and set(TASK_METRICS["regression"]) <= set(metrics)   # mape too: the label is above zero
    assert not {"roc_auc", "threshold", "profit_model", "per_class"} & set(metrics)
    assert metrics["primary_metric"] == "rmse" and metrics["primary_score"] == metrics["rmse"] < 15
    assert metrics["meets_success_threshold"] is True and metrics["r2"] > 0.5
    naive = metrics["naive_baselines"]
    assert set(naive) == {"predict_median", "predict_mean"} and all(set(b) == set(TASK_METRICS["regression"]) for b in naive.values())
    best = min(naive, key=lambda name: naive[name]["rmse"])   # an error: the lowest is the best
    assert metrics["best_naive"] == best and metrics["best_naive_score"] == naive[best]["rmse"]
    assert metrics["primary_gain_over_best_naive"] == pytest.approx(naive[best]["rmse"] - metrics["rmse"], abs=2e-6)
    assert metrics["primary_gain_over_best_naive"] > 5   # far better than predicting the median or the mean

    for name in BINARY_ONLY + ("confusion",):   # declared by dvc.yaml for every kind: the header alone
        assert plot_text(root, name) == ",".join(evaluate.PLOT_COLUMNS[name]) + "\n", name
    points = pd.read_csv(root / catalog.plot_file("predicted_actual"))
    test = pd.read_parquet(root / catalog.TEST)
    assert list(points) == ["actual", "predicted"] and len(points) == 300
    assert np.allclose(np.sort(points["actual"]), np.sort(test["spend"].round(5)))
    residuals = pd.read_csv(root / catalog.plot_file("residuals"))
    assert list(residuals) == evaluate.PLOT_COLUMNS["residuals"] and residuals["decile"].tolist() == list(range(1, 11))
    assert residuals["rows"].sum() == 300 and residuals["mean_predicted"].is_monotonic_increasing
    assert np.allclose(residuals["mean_residual"], residuals["mean_actual"] - residuals["mean_predicted"], atol=1e-4)
    importance = pd.read_csv(root / catalog.plot_file("importance"))
    assert importance.loc[0, "feature"] == "signal" and importance.loc[0, "importance"] > 5   # rmse grows: positive

    segments = read_json(root / catalog.SEGMENTS_JSON)
    assert set(segments) == {"plan=a", "plan=b"} and set(segments["plan=a"]) == {"rows", "rmse", "mae", "r2", "mape"}
    assert "mean_actual" in (root / catalog.SEGMENTS_REPORT).read_text()
    card = (root / catalog.MODEL_CARD).read_text()
    assert "**Success criterion:** rmse <= 15: the model meets it." in card
    assert "naive: predict_median" in card and "naive: predict_mean" in card and "**Better than doing nothing:**" in card
    assert "Label mean:" in card and "`predicted_value`" in card and "ROC-AUC" not in card and "decision threshold" not in card


def test_fail_on_miss_fails_a_regression_whose_error_is_above_its_ceiling(tmp_path):
    problem = {**REGRESSION, "success_threshold": 5.0}
    root, values = kind_project(tmp_path, "regression", problem, {"fail_on_miss": True})
    with pytest.raises(StageError) as failure:
        run_stage(root, values)
    assert failure.value.field == "rmse" and "is above the success threshold 5.0 (rmse <= 5;" in failure.value.problem
    metrics = read_json(root / catalog.METRICS)   # every report written before the stage fails
    assert metrics["meets_success_threshold"] is False and metrics["rmse"] > 5
    assert "rmse <= 5: the model does NOT meet it" in (root / catalog.MODEL_CARD).read_text()


def test_a_higher_is_better_regression_metric_keeps_its_direction(tmp_path):
    root, values = kind_project(tmp_path, "regression", {**REGRESSION, "primary_metric": "r2", "success_threshold": 0.5})
    metrics = run_stage(root, values)
    assert "r2" not in LOWER_IS_BETTER and metrics["meets_success_threshold"] and metrics["r2"] >= 0.5
    naive = metrics["naive_baselines"]
    assert metrics["best_naive_score"] == max(b["r2"] for b in naive.values())   # the highest is the best
    assert metrics["primary_gain_over_best_naive"] == pytest.approx(metrics["r2"] - metrics["best_naive_score"], abs=2e-6)
    assert "r2 >= 0.5: the model meets it" in (root / catalog.MODEL_CARD).read_text()


def test_a_multiclass_model_is_judged_per_class_beside_the_class_shares(tmp_path):
    root, values = kind_project(tmp_path, "multiclass", MULTICLASS)
    metrics = run_stage(root, values)
    assert set(TASK_METRICS["multiclass"]) <= set(metrics) and metrics["primary_score"] == metrics["log_loss"] < 0.8
    assert metrics["meets_success_threshold"] is True and 0 <= metrics["accuracy"] <= 1
    assert set(metrics["per_class"]) == {"low", "mid", "high"}
    assert all(set(c) == {"precision", "recall", "f1", "support"} for c in metrics["per_class"].values())
    assert sum(c["support"] for c in metrics["per_class"].values()) == metrics["n_test"] == 300
    prior = metrics["naive_baselines"]["class_prior"]
    assert metrics["best_naive"] == "class_prior" and prior["roc_auc_ovr"] == 0.5 and prior["log_loss"] > metrics["log_loss"]
    assert metrics["primary_gain_over_best_naive"] == pytest.approx(prior["log_loss"] - metrics["log_loss"], abs=2e-6)

    for name in BINARY_ONLY + REGRESSION_ONLY:
        assert plot_text(root, name) == ",".join(evaluate.PLOT_COLUMNS[name]) + "\n", name
    confusion = pd.read_csv(root / catalog.plot_file("confusion"))
    test = pd.read_parquet(root / catalog.TEST)
    assert list(confusion) == ["actual", "predicted"] and confusion["actual"].tolist() == test["tier"].tolist()
    assert set(confusion["predicted"]) <= {"low", "mid", "high"}
    recall = (confusion["actual"] == confusion["predicted"]).groupby(confusion["actual"]).mean()
    assert {c: round(v, 6) for c, v in recall.items()} == {c: s["recall"] for c, s in metrics["per_class"].items()}
    assert set(read_json(root / catalog.SEGMENTS_JSON)["plan=b"]) == {"rows", *TASK_METRICS["multiclass"]}
    card = (root / catalog.MODEL_CARD).read_text()
    assert "**Success criterion:** log_loss <= 0.8: the model meets it." in card and "## Per class" in card
    assert "| class   |   precision |   recall |" in card and "naive: class_prior" in card and "Class shares:" in card


def test_multiclass_labels_coded_as_numbers(tmp_path):
    problem = {**MULTICLASS, "primary_metric": "macro_f1", "success_threshold": 0.99}
    root, values = kind_project(tmp_path, "multiclass", problem, codes=(1, 2, 3))
    metrics = run_stage(root, values)
    assert set(metrics["per_class"]) == {"1", "2", "3"} and not metrics["meets_success_threshold"]   # a floor missed
    assert metrics["primary_gain_over_best_naive"] == pytest.approx(
        metrics["macro_f1"] - metrics["naive_baselines"]["class_prior"]["macro_f1"], abs=2e-6)
    assert set(pd.read_csv(root / catalog.plot_file("confusion"))["actual"]) == {1, 2, 3}
    assert json.loads((root / catalog.METRICS).read_text())["primary_metric"] == "macro_f1"


def test_a_model_file_of_another_kind_is_refused(tmp_path):
    binary_file = lambda cleaner, pipeline: assemble_model(cleaner, pipeline, 0.5)   # noqa: E731
    root, values = kind_project(tmp_path, "multiclass", MULTICLASS, model_file=binary_file)
    with pytest.raises(StageError) as refusal:
        run_stage(root, values)
    assert refusal.value.source == catalog.MODEL and "but the problem is multiclass" in refusal.value.problem
    assert not (root / catalog.METRICS).exists()
