"""Any kind of problem through select, train and score (issue 19): small featurised toy projects, a regression and a
multiclass problem, framed as the problem stage frames them (`task: auto`, the kind recorded in
`reports/problem.json`). The chosen model is the best by the primary metric in its direction (an error the lowest),
every metric is reported as a positive number, and the model file's own `predict` is score's `prediction`."""
import json

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle import catalog
from ml_lifecycle.check import toy_project
from ml_lifecycle.cleaning import cleaning_recipe, decide_types
from ml_lifecycle.core import StageError
from ml_lifecycle.modelling import TRUSTED_TYPES, load_model, sio
from ml_lifecycle.params import declared_view
from ml_lifecycle.stages import score, select, train
from ml_lifecycle.tables import read_json, write_json, write_table

SELECT = {"cv_folds": 3, "n_iter": 2, "seed": 0}
REGRESSION_CANDIDATES = {"ridge": {"search": {"alpha": {"log_uniform": [0.1, 10.0]}}},
                         "random_forest": {"fixed": {"n_estimators": 10}, "search": {"max_depth": [1, 2]}}}
CLASS_CANDIDATES = {"logistic_regression": {"fixed": {"max_iter": 500}, "search": {"C": [0.001, 0.002]}},
                    "random_forest": {"fixed": {"n_estimators": 30}, "search": {"max_depth": [4, 6]}}}


def units(n, seed):
    "Featurised rows: two snapshots per customer, a number and a category, the spend (linear in both) and a tier."
    rng = np.random.default_rng(seed)
    x, plan = rng.normal(size=n), rng.choice(["basic", "plus", "pro"], n)
    spend = 60 + 12 * x + 8 * (plan == "pro") + rng.normal(scale=2, size=n)
    tier = np.select([x < -0.6, x < 0.6], ["bronze", "silver"], "gold")
    return pd.DataFrame({"customer_id": np.arange(n) // 2 + 10_000 * seed, "x": x, "plan": plan, "spend": spend, "tier": tier})


def kind_project(tmp_path, label, task, primary_metric, candidates, table=None):
    "A toy project after features, framed as a `task` problem on `label` by the problem stage; its values."
    root, values = toy_project({
        "problem": {"name": f"toy {label}", "task": "auto", "id_column": "customer_id", "label": label,
                    "primary_metric": primary_metric, "success_threshold": 1.0},
        "select": {**SELECT, "candidates": candidates},
        "train": {"decision_threshold": "cost_optimal", "cv_folds": 3, "seed": 0},
        "score": {"batch": "incoming/batch.parquet", "chunk_rows": 100, "skew_sample_rows": 200},
        "validate": {"unseen_levels": {"max_share": 0.02, "by_feature": {}}}}, tmp_path / "toy")
    table = units(400, seed=1) if table is None else table
    modelled = table[["customer_id", "x", "plan", label]]
    write_json({**values["problem"], "task": task, "task_reason": "set by the test"}, root / catalog.PROBLEM_JSON)
    write_json({"id_column": "customer_id", "label": label, "numeric": ["x"], "categorical": ["plan"],
                "impute_numeric": "median", "min_category_frequency": 0.01}, root / catalog.FEATURE_SPEC)
    write_json(cleaning_recipe(decide_types(modelled, "customer_id", keep=[label]), "customer_id", label, "unknown", {}),
               root / catalog.CLEANING)
    write_table(modelled, root / catalog.TRAIN)
    (root / "incoming").mkdir()
    units(300, seed=2)[["customer_id", "x", "plan"]].to_parquet(root / "incoming/batch.parquet", index=False)
    return root, values


def through(root, values):
    "select, train and score runs on the toy project: their summaries."
    return tuple(stage.run(declared_view(name, values, root), root)
                 for name, stage in (("select", select), ("train", train), ("score", score)))


@pytest.mark.parametrize("primary_metric", ["rmse", "mae", "r2"])
def test_a_regression_chooses_the_lowest_error_and_predicts_values(tmp_path, primary_metric):
    root, values = kind_project(tmp_path, "spend", "regression", primary_metric, REGRESSION_CANDIDATES)
    chosen, decision, summary = through(root, values)
    selection = read_json(root / catalog.SELECTION_JSON)["candidates"]
    # Errors are reported as errors (positive), and the lowest wins; r2 the highest. The line wins on a linear signal.
    assert chosen["chosen"] == "ridge" and selection["ridge"]["rmse_mean"] > 0 and selection["ridge"]["mae_mean"] > 0
    assert selection["ridge"]["rmse_mean"] < selection["random_forest"]["rmse_mean"]
    assert selection["ridge"]["r2_mean"] > selection["random_forest"]["r2_mean"] and selection["ridge"]["r2_mean"] > 0.9
    assert 0 < selection["ridge"]["mape_mean"] < 0.1   # the spend is above zero: mape is reported too
    tried = pd.read_csv(root / catalog.SEARCH_RESULTS)
    assert (tried[f"{primary_metric}_mean"] > 0).all()
    lower = "(lower is better)" in (root / catalog.SELECTION_REPORT).read_text()
    assert lower == (primary_metric != "r2")

    assert decision == {"strategy": "predicted_value", "model": "ridge"}
    assert read_json(root / catalog.THRESHOLD) == {"strategy": "predicted_value", "model": "ridge",
                                                   "settings": read_json(root / catalog.CHOICE)["chosen_settings"]}
    model = load_model(root / catalog.MODEL, stage="score")
    assert list(model.named_steps) == ["clean", "features", "model"] and type(model[-1]).__name__ == "Ridge"
    written = pd.read_parquet(root / catalog.PREDICTIONS_FILE)
    batch = pd.read_parquet(root / "incoming/batch.parquet")
    assert list(written.columns) == ["customer_id", "prediction"]
    assert written["prediction"].tolist() == model.predict(batch).tolist()   # the model file alone predicts the same
    assert summary["task"] == "regression" and summary["rows"] == 300 and "threshold" not in summary
    assert summary["min_prediction"] <= summary["mean_prediction"] <= summary["max_prediction"]
    assert np.isclose(summary["mean_prediction"], written["prediction"].mean())
    assert read_json(root / catalog.SCORE_SUMMARY) == summary


def test_a_regression_label_at_zero_has_no_mape(tmp_path):
    table = units(400, seed=1).assign(spend=lambda t: (t["spend"] - 60).clip(lower=0))
    root, values = kind_project(tmp_path, "spend", "regression", "mae", REGRESSION_CANDIDATES, table)
    select.run(declared_view("select", values, root), root)
    assert "mape_mean" not in read_json(root / catalog.SELECTION_JSON)["candidates"]["ridge"]
    mape = {**values, "problem": {**values["problem"], "primary_metric": "mape"}}
    with pytest.raises(StageError) as refused:
        select.run(declared_view("select", mape, root), root)
    assert refused.value.field == "problem.primary_metric" and "above zero" in refused.value.problem


def test_a_multiclass_problem_chooses_the_lowest_log_loss_and_predicts_the_most_probable_class(tmp_path):
    root, values = kind_project(tmp_path, "tier", "multiclass", "log_loss", CLASS_CANDIDATES)
    chosen, decision, summary = through(root, values)
    selection = read_json(root / catalog.SELECTION_JSON)["candidates"]
    losses = {name: scores["log_loss_mean"] for name, scores in selection.items()}
    assert min(losses.values()) > 0 and chosen["chosen"] == min(losses, key=losses.get) == "random_forest", losses
    assert all(0 < scores["balanced_accuracy_mean"] <= 1 and 0.5 < scores["roc_auc_ovr_mean"] <= 1
               for scores in selection.values())

    assert decision["strategy"] == "most_probable_class" and decision["classes"] == ["bronze", "gold", "silver"]
    assert read_json(root / catalog.THRESHOLD)["classes"] == ["bronze", "gold", "silver"]
    model = load_model(root / catalog.MODEL, stage="score")
    assert list(model.named_steps) == ["clean", "features", "model"] and list(model.classes_) == decision["classes"]
    written = pd.read_parquet(root / catalog.PREDICTIONS_FILE)
    batch = pd.read_parquet(root / "incoming/batch.parquet")
    assert list(written.columns) == ["customer_id", "prediction", "probability_bronze", "probability_gold",
                                     "probability_silver"]
    assert written["prediction"].tolist() == model.predict(batch).tolist()   # the model file's predict
    assert np.array_equal(written.filter(like="probability_").to_numpy(), model.predict_proba(batch))
    truth = np.select([batch["x"] < -0.6, batch["x"] < 0.6], ["bronze", "silver"], "gold")
    assert (written["prediction"] == truth).mean() > 0.85
    assert summary["task"] == "multiclass" and summary["rows"] == 300 and "threshold" not in summary
    assert summary["predicted"] == written["prediction"].value_counts().reindex(decision["classes"], fill_value=0).to_dict()
    assert np.isclose(sum(summary["mean_probability"].values()), 1)
    assert json.loads((root / catalog.SCORE_SUMMARY).read_text()) == summary

    first = (root / catalog.MODEL).read_bytes()   # byte-reproducible, as the binary model file
    train.run(declared_view("train", values, root), root)
    assert (root / catalog.MODEL).read_bytes() == first


def test_class_codes_keep_their_type(tmp_path):
    table = units(400, seed=1)
    table["tier"] = table["tier"].map({"bronze": 1, "silver": 2, "gold": 3})
    root, values = kind_project(tmp_path, "tier", "multiclass", "balanced_accuracy", CLASS_CANDIDATES, table)
    _, decision, summary = through(root, values)
    written = pd.read_parquet(root / catalog.PREDICTIONS_FILE)
    assert decision["classes"] == [1, 2, 3] and written["prediction"].dtype == np.int64
    assert list(written.columns)[2:] == ["probability_1", "probability_2", "probability_3"]
    assert set(summary["predicted"]) == {"1", "2", "3"}


def test_a_candidate_of_the_wrong_family_is_refused_naming_it(tmp_path):
    root, values = kind_project(tmp_path, "tier", "multiclass", "log_loss", {"ridge": {}, "random_forest": {}})
    with pytest.raises(StageError) as early:   # by the project check, before anything runs
        select.check_inputs(values, root)
    with pytest.raises(StageError) as late:    # and by the stage itself
        select.run(declared_view("select", values, root), root)
    for refused in (early.value, late.value):
        assert refused.stage == "select" and refused.field == "select.candidates.ridge"
        assert "multiclass" in refused.problem and "logistic_regression" in refused.problem
    regression = {**values, "problem": {**values["problem"], "task": "regression"},
                  "select": {**values["select"], "candidates": {"logistic_regression": {}}}}
    with pytest.raises(StageError) as refused:
        select.check_inputs(regression, root)
    assert refused.value.field == "select.candidates.logistic_regression" and "ridge" in refused.value.problem
    select.check_inputs({**regression, "select": {**values["select"], "candidates": {"ridge": {}}}}, root)
    assert select.check_inputs({**values, "problem": {**values["problem"], "label": "other"}}, root) is None   # not decided


@pytest.mark.parametrize("name, task", [("ridge", "regression"), ("random_forest", "regression"),
                                        ("hist_gradient_boosting", "regression"), ("logistic_regression", "multiclass"),
                                        ("random_forest", "multiclass"), ("hist_gradient_boosting", "multiclass")])
def test_every_model_file_holds_only_allow_listed_types(tmp_path, name, task):
    label, metric = ("spend", "rmse") if task == "regression" else ("tier", "log_loss")
    settings = {"n_estimators": 5} if name == "random_forest" else {}
    root, values = kind_project(tmp_path, label, task, metric, {name: {"fixed": settings}})
    write_json({"primary_metric": metric, "chosen": name, "chosen_settings": settings}, root / catalog.CHOICE)
    train.run(declared_view("train", values, root), root)
    assert set(sio.get_untrusted_types(file=root / catalog.MODEL)) <= set(TRUSTED_TYPES)
