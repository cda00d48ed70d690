"""Bring your own data: point params.yaml at a team's CSV and the whole pipeline runs on it, no code edited.

Uses the real Bank Marketing data set from ../shared/datasets (skipped when it is absent). The steps are exactly
those of the README's "Use your own data" section."""
import json
import shutil

import pandas as pd
import pytest

from conftest import HAS_DEMO, ROOT, copy_project, run, set_params

BANK = ROOT.parent / "shared" / "datasets" / "bank_marketing.csv"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not BANK.is_file(), reason="../shared/datasets/bank_marketing.csv is not here")]

OWN_DATA = {
    ("problem", "name"): "term deposit subscription",
    ("problem", "description"): "Rank clients by their chance to subscribe a term deposit, to choose whom to call.",
    ("problem", "id_column"): None,
    ("problem", "label"): "subscribe",
    ("problem", "positive_class"): 1,
    ("problem", "cutoff_date"): None,
    ("problem", "horizon_days"): None,
    ("problem", "active_window_days"): None,
    ("problem", "cost_false_positive"): 5.0,
    ("problem", "cost_false_negative"): 50.0,
    ("gather",): {"bank": {"path": "data/external/bank_marketing.csv", "required_columns": ["subscribe"]}},
    ("validate", "tables"): ["bank"],
    ("preprocess", "units"): "bank",
    ("preprocess", "event_history"): None,
    ("preprocess", "valid_ranges"): {},
    ("preprocess", "drop_columns"): ["duration"],    # a target leak: the call's length is known only after it
    ("features", "categorical"): [],
    ("evaluate", "segments"): ["job", "marital"],
}
QUICK = {("select", "n_iter"): 2, ("select", "cv_folds"): 3, ("train", "cv_folds"): 3,
         ("select", "candidates", "random_forest", "fixed", "n_estimators"): 60,
         ("evaluate", "importance_repeats"): 2,
         **({("demo_data", "n_customers"): 200} if HAS_DEMO else {})}   # the demo stage still runs: keep it small


def test_the_pipeline_runs_on_a_teams_own_csv(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copy(BANK, project / "data/external/bank_marketing.csv")     # 1. put the file in data/external/
    for schema in (project / "data/schema").glob("*.pbtxt"):            # 2. drop the example's schemas
        schema.unlink()
    set_params(project, {**OWN_DATA, **QUICK})                          # 3. point params.yaml at it
    result = run("dvc repro", project)                                  # 4. run
    assert "error" not in result.stdout.lower()
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["roc_auc"] > 0.75 and metrics["n_test"] > 8000 and metrics["meets_success_threshold"]   # no leak
    assert (project / "data/schema/bank.pbtxt").is_file(), "the first run infers the schema for review"
    predictions = pd.read_parquet(project / "data/predictions/predictions.parquet")
    assert len(predictions) == metrics["n_test"] and predictions["probability"].between(0, 1).all()
    assert "term deposit" in (project / "reports/model_card.md").read_text()
    assert run("dvc repro", project).stdout.count("Running stage") == 0
