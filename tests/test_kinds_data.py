"""A multiclass and a regression table through the problem, preprocess and features stages on toy projects."""
import numpy as np
import pandas as pd
import pytest

from ml_lifecycle import catalog
from ml_lifecycle.check import toy_project
from ml_lifecycle.core import StageError
from ml_lifecycle.params import declared_view
from ml_lifecycle.stages import features, preprocess, problem
from ml_lifecycle.tables import read_json, read_table, write_table

RNG = np.random.default_rng(5)
ROWS = 120
TABLE = pd.DataFrame({"shop": range(ROWS), "region": RNG.choice(["north", "south", "east"], ROWS),
                      "size": RNG.normal(100, 20, ROWS).round(1),
                      "tier": RNG.choice(["gold", " silver", "bronze"], ROWS),        # text, untrimmed
                      "rentals": [f"{v:,.0f}" for v in RNG.lognormal(7, 0.6, ROWS)]})  # numbers as text: "1,234"


def params(label: str, metric: str, threshold: float) -> dict:
    return {
        "problem": {"name": "shops", "task": "auto", "id_column": "shop", "label": label, "primary_metric": metric,
                    "success_threshold": threshold},
        "gather": {"shops": {"path": "shops.csv"}},
        "preprocess": {"units": "shops", "event_history": None, "timestamp_column": None, "test_size": 0.25,
                       "drop_columns": [], "column_types": {}, "missing_category": "unknown", "valid_ranges": {},
                       "seed": 0},
        "features": {"windows_days": [30], "categorical": ["region"], "impute_numeric": "median",
                     "min_category_frequency": 0.01, "leakage": {"max_auc": 0.95, "margin": 0.1, "accept": []}},
    }


def through_the_stages(values: dict, table: pd.DataFrame, root) -> dict:
    "The label's source in sight, the checks, then problem, preprocess and features as a run does them."
    table.to_csv(root / "shops.csv", index=False)
    for stage in (problem, preprocess, features):
        stage.check_inputs(values, root)
    write_table(table, root / catalog.raw_table("shops"))
    return {name: stage.run(declared_view(name, values, root), root)
            for name, stage in [("problem", problem), ("preprocess", preprocess), ("features", features)]}


@pytest.mark.parametrize("label, metric, threshold, task, dtype", [
    ("tier", "macro_f1", 0.5, "multiclass", object), ("rentals", "rmse", 400, "regression", "float64")])
def test_a_label_of_each_kind_runs_through_problem_preprocess_and_features(label, metric, threshold, task, dtype):
    table = TABLE.drop(columns={"tier": "rentals", "rentals": "tier"}[label])
    with toy_project(params(label, metric, threshold)) as (root, values):
        summary = through_the_stages(values, table, root)
        assert summary["problem"]["task"] == task and read_json(root / catalog.PROBLEM_JSON)["task"] == task
        card = " ".join((root / catalog.PROBLEM_CARD).read_text().split())
        assert "Cost of" not in card and f"| Success threshold | {metric} {'<=' if task == 'regression' else '>='}" in card
        train, test = (read_table(root / path, "check") for path in (catalog.TRAIN, catalog.TEST))
        assert len(train) == 90 and len(test) == 30 and train[label].dtype == dtype
        if task == "multiclass":
            assert "one of 3 classes: `bronze`, `gold`, `silver`" in card
            assert set(train[label]) == set(test[label]) == {"gold", "silver", "bronze"}   # trimmed, every class on both sides
        else:
            assert "`rentals`, a number to predict" in card and train[label].min() > 100   # "1,234" read as 1234
            assert abs(np.log(train[label].median() / test[label].median())) < 0.25       # stratified on quantile bins
        measure = {"multiclass": "roc_auc_ovr", "regression": "r2"}[task]
        assert f"| feature | {measure} |" in " ".join((root / catalog.LEAKAGE_REPORT).read_text().split())
        assert summary["features"]["numeric"] == ["size"] and summary["features"]["leaks_accepted"] == []


def test_a_leak_of_a_regression_label_is_flagged():
    table = TABLE.drop(columns="tier").assign(refunds=lambda t: t["rentals"].str.replace(",", "").astype(float) * 0.05)
    with toy_project(params("rentals", "mae", 300)) as (root, values):
        with pytest.raises(StageError) as error:
            through_the_stages(values, table, root)
        assert error.value.field == "features.leakage.accept" and "refunds (R² " in error.value.problem
        assert "| refunds | 0.9" in " ".join((root / catalog.LEAKAGE_REPORT).read_text().split())


@pytest.mark.parametrize("change, field", [
    ({"label": "tier", "primary_metric": "rmse"}, "problem.primary_metric"),      # a regression metric for classes
    ({"label": "rentals", "primary_metric": "roc_auc"}, "problem.primary_metric"),  # a binary metric for a number
    ({"label": "visits", "primary_metric": "rmse"}, "problem.task"),               # 12 whole numbers: ambiguous
])
def test_the_check_refuses_a_label_that_does_not_fit_the_problem_before_any_stage_runs(change, field):
    table = TABLE.assign(visits=RNG.choice([*range(1, 11), 12, 15], ROWS))
    values = params("tier", "macro_f1", 0.5)
    with toy_project({**values, "problem": {**values["problem"], **change}}) as (root, values):
        table.to_csv(root / "shops.csv", index=False)
        with pytest.raises(StageError) as error:
            problem.check_inputs(values, root)
        assert error.value.field == field, error.value


def test_a_regression_label_with_text_is_named_with_examples():
    table = TABLE.drop(columns="tier").assign(rentals=lambda t: t["rentals"].where(t.index % 40 != 0, "closed"))
    values = params("rentals", "rmse", 400)
    with toy_project({**values, "problem": {**values["problem"], "task": "regression"}}) as (root, values):
        with pytest.raises(StageError) as error:
            through_the_stages(values, table, root)
        assert error.value.field == "rentals" and "['closed']" in error.value.problem
