"""The model file is self-contained: the row cleaning, the fitted pipeline and the decision threshold in one skops
file. Outside the pipeline, `load_model(path)` alone turns raw rows into the decisions (`predict`) and probabilities
(`predict_proba`) the score stage writes: no recipe (`data/interim/cleaning.json`), no `models/threshold.json`."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import copy_project, run
from ml_lifecycle import catalog
from ml_lifecycle.stages import score
from ml_lifecycle.stages import train
from ml_lifecycle.cleaning import clean_rows, cleaning_recipe, decide_types
from ml_lifecycle.params import declared_view
from ml_lifecycle.tables import write_json, write_table
from ml_lifecycle.check import toy_project
from ml_lifecycle.modelling import load_model, model_parts
from test_own_data import BANK, own_data_project

PROBLEM = {"name": "toy", "task": "binary", "id_column": "customer_id", "label": "churned", "primary_metric": "roc_auc",
           "success_threshold": 0.6, "cost_false_positive": 10, "cost_false_negative": 60}


def alone(project, dest):
    "The model file and its digest, copied out of the project: all a service or another team gets."
    dest.mkdir()
    for name in (catalog.MODEL, catalog.MODEL_DIGEST):
        shutil.copy(project / name, dest / name.rsplit("/", 1)[1])
    return load_model(dest / "model.skops", stage="score")


def toy_raw_units(n, seed):
    "Rows as a person exports them: numbers as text with thousands separators and gaps, untrimmed codes, a column of their own."
    rng = np.random.default_rng(seed)
    x = rng.integers(-4000, 4000, n) / 2   # halves: the same number whichever parser reads the text
    plan = rng.choice(["basic", "plus", "pro"], n)
    churned = (x / 1000 + (plan == "pro") + rng.normal(size=n) > 0.5).astype(int)
    text = pd.Series([f"{v:,}" for v in x]).mask(rng.random(n) < 0.05, "?")
    return pd.DataFrame({"customer_id": np.arange(n) + 1000 * seed, "x": text, "plan": pd.Series(plan).radd(" "),
                         "note": "a team's own column", "churned": churned})


def test_on_a_toy_project_the_model_file_alone_gives_the_decisions_score_writes(tmp_path):
    root, values = toy_project({"problem": PROBLEM,
                                "train": {"decision_threshold": "cost_optimal", "cv_folds": 3, "seed": 0},
                                "score": {"batch": "incoming/batch.csv", "chunk_rows": 70, "skew_sample_rows": 200},
                                "validate": {"unseen_levels": {"max_share": 0.02, "by_feature": {}}}}, tmp_path / "toy")
    units = toy_raw_units(400, seed=1)
    recipe = cleaning_recipe(decide_types(units.drop(columns="note"), "customer_id", keep=["churned"]), "customer_id",
                             "churned", "unknown", {"x": (-1500, 1500)})   # as preprocess decides and writes it
    assert recipe["types"]["x"] == "numeric" and recipe["types"]["plan"] == "categorical"
    spec = {"id_column": "customer_id", "label": "churned", "numeric": ["x"], "categorical": ["plan"],
            "impute_numeric": "median", "min_category_frequency": 0.01}
    write_json(recipe, root / catalog.CLEANING)
    write_json(spec, root / catalog.FEATURE_SPEC)
    write_json({"primary_metric": "roc_auc", "chosen": "logistic_regression", "chosen_settings": {}}, root / catalog.CHOICE)
    write_table(clean_rows(units, recipe)[0], root / catalog.TRAIN)   # the modelling table: cleaned
    decision = train.run(declared_view("train", values, root), root)

    batch = toy_raw_units(300, seed=2)   # new rows, raw, with the label and a column the model does not use
    (root / "incoming").mkdir()
    batch.to_csv(root / "incoming/batch.csv", index=False)
    summary = score.run(declared_view("score", values, root), root)
    written = pd.read_parquet(root / catalog.PREDICTIONS_FILE)
    assert summary["cells_set_missing"]["impossible_x_set_missing"] > 0   # the model's cleaner counted them
    assert written["customer_id"].tolist() == batch["customer_id"].tolist()

    # Outside the pipeline: the model file alone, given the rows as read from the CSV.
    for name in (catalog.CLEANING, catalog.THRESHOLD):
        (root / name).unlink()
    model = alone(root, tmp_path / "service")
    raw = pd.read_csv(root / "incoming/batch.csv")
    assert model.threshold == decision["threshold"] == summary["threshold"]
    assert model.predict_proba(raw)[:, 1].tolist() == written["probability"].tolist()
    assert (model.predict(raw) == 1).tolist() == written["decision"].tolist()
    assert 0 < written["decision"].sum() < len(written)   # some decisions each way: the comparison means something
    cleaner, fitted, threshold = model_parts(model, "score")
    assert cleaner.clean(raw)[1] == summary["cells_set_missing"]


@pytest.mark.integration
@pytest.mark.skipif(not BANK.is_file(), reason="../shared/datasets/bank_marketing.csv is not here")
def test_the_bank_model_file_alone_scores_the_held_out_clients_raw_as_score_did(tmp_path):
    """Bank Marketing as a team's own data (no id, a 0/1 label, `duration` dropped as the known leak): after `dvc
    repro`, the held-out clients, raw as gathered (`data/raw/bank.parquet`: every column, the label and `duration`
    included), scored outside the pipeline by the model file alone, get exactly the probabilities and decisions the
    score stage wrote for them."""
    project = own_data_project(copy_project(tmp_path / "project"), BANK, "bank", {
        ("problem", "name"): "term deposit", ("problem", "label"): "subscribe", ("problem", "positive_class"): 1,
        ("evaluate", "segments"): ["job"], ("preprocess", "drop_columns"): ["duration"]})
    result = run("dvc repro", project, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scored = pd.read_parquet(project / catalog.PREDICTIONS_FILE)
    metrics = json.loads((project / catalog.METRICS).read_text())
    assert len(scored) == metrics["n_test"] > 1000   # score's default batch: the held-out rows

    gathered = pd.read_parquet(project / catalog.raw_table("bank"))
    held_out = gathered.iloc[scored["row_id"]].reset_index(drop=True)   # row_id: the row's place in the unit table
    model = alone(project, tmp_path / "service")
    assert model.threshold == metrics["threshold"]
    assert model.predict_proba(held_out)[:, 1].tolist() == scored["probability"].tolist()
    decisions = model.predict(held_out)
    assert (decisions == 1).tolist() == scored["decision"].tolist()
    assert 0 < decisions.sum() < len(decisions)
