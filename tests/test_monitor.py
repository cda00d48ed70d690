"""The monitor stage on a sequence of scored batches: `ok` every month before an injected drift, `retrain` from its
first month on, naming the drifting feature; a batch monitored again replaces its row; outcomes arriving later give
earlier batches their realised metric; a model older than the backtest's interval is a reason; a missing batch date or a
bad parameter is a clear `StageError`. And the scheduled retraining workflow (.github/workflows/retrain.yml) is valid
and names what exists.

Fast: a toy project (a logistic model on 3000 rows), each month scored by the score stage and monitored."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from conftest import ROOT, run as run_command
from ml_lifecycle import catalog
from ml_lifecycle.check import toy_project
from ml_lifecycle.cleaning import RecipeCleaner, cleaning_recipe, decide_types
from ml_lifecycle.core import StageError, resolve
from ml_lifecycle.modelling import assemble_model, make_pipeline, model_columns, save_model, write_model_digest
from ml_lifecycle.params import check_params, declared_view
from ml_lifecycle.stages import monitor, score
from ml_lifecycle.tables import write_json, write_table

WORKFLOW = ROOT / ".github" / "workflows" / "retrain.yml"
DRIFT_MONTH, MONTHS, LAG = 4, 7, 2   # months 0-3 steady, spend drifts from month 4 on; outcomes 2 months late
SPEC = {"id_column": "customer_id", "numeric": ["x", "spend"], "categorical": ["plan"], "label": "churned",
        "impute_numeric": "median", "min_category_frequency": 0.01}
PROBLEM = {"name": "toy", "task": "binary", "id_column": "customer_id", "label": "churned", "primary_metric": "roc_auc",
           "success_threshold": 0.6, "cost_false_positive": 10, "cost_false_negative": 60, "cutoff_date": "2025-04-01",
           "horizon_days": 60, "active_window_days": 90}
MONITOR = {"outcomes": "data/outcomes", "batch_date": None, "drift_threshold": 0.1, "drift_by_feature": {},
           "prediction_sample_rows": 1000, "chunk_rows": 1000, "seed": 0}


def customers(n: int, seed: int, first_id: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"customer_id": np.arange(first_id, first_id + n), "x": rng.normal(size=n),
                         "spend": rng.lognormal(3, 0.5, n), "plan": rng.choice(["basic", "plus", "premium"], n)})
    rows["churned"] = (rows["x"] - 0.02 * rows["spend"] + rng.normal(size=n) > -0.5).astype(int)
    return rows


@pytest.fixture(scope="module")
def project():
    "A toy project trained on 3000 rows, and a labelled hold-out of 3000 more to make monthly batches from."
    values = {"problem": PROBLEM, "engine": "pandas", "spark": {"master": "local[1]", "buckets": 1, "conf": {}},
              "preprocess": {"event_history": {"table": "events"}, "timestamp_column": None},
              "validate": {"unseen_levels": {"max_share": 0.02, "by_feature": {}}},
              "score": {"batch": "batches/none.parquet", "chunk_rows": 1000, "skew_sample_rows": 1000},
              "monitor": MONITOR}
    with toy_project(values) as (root, values):
        training = customers(3000, 0, 1).assign(cutoff=pd.Timestamp("2025-01-01"))
        write_table(training, resolve(catalog.TRAIN, root))
        write_json(SPEC, resolve(catalog.FEATURE_SPEC, root))
        recipe = cleaning_recipe(decide_types(training.drop(columns="cutoff"), "customer_id", keep=["churned"]),
                                 "customer_id", "churned", "unknown", {})
        fitted = make_pipeline(SPEC, LogisticRegression()).fit(training[model_columns(SPEC)], training["churned"])
        write_model_digest(save_model(assemble_model(RecipeCleaner(recipe), fitted, 0.5), resolve(catalog.MODEL, root)),
                           catalog.MODEL)
        held_out = customers(3000, 1, 10_001).assign(cutoff=pd.Timestamp("2025-04-01"))
        yield root, values, held_out


def month_values(values: dict, name: str, **monitor_settings) -> dict:
    return {**values, "score": {**values["score"], "batch": f"batches/{name}.parquet"},
            "monitor": {**values["monitor"], **monitor_settings}}


def score_and_monitor(root, values, name: str) -> dict:
    score.run(declared_view("score", values, root), root)
    monitor.check_inputs(values, root)
    return monitor.run(declared_view("monitor", values, root), root)


@pytest.fixture(scope="module")
def year(project):
    "The months scored and monitored in order, the outcomes of each arriving LAG months later: their verdicts."
    root, values, held_out = project
    batches = list(monitor.monthly_batches(held_out, "2025-05-01", MONTHS, 1000, "churned", "customer_id",
                                           drift_month=DRIFT_MONTH, drift_features=("spend",), start=2.0, step=0.2))
    verdicts = []
    for month, (name, batch, _) in enumerate(batches):
        write_table(batch, root / "batches" / f"{name}.parquet")
        if month >= LAG:
            earlier, _, labels = batches[month - LAG]
            write_table(labels, root / "data/outcomes" / f"{earlier}.parquet")
        verdicts.append(score_and_monitor(root, month_values(values, name), name))
    return batches, verdicts


def history(root) -> pd.DataFrame:
    return pd.read_csv(resolve(catalog.MONITOR_HISTORY, root), dtype={"batch": str})


def test_ok_before_the_drift_retrain_from_it_naming_the_feature(project, year):
    root = project[0]
    _, verdicts = year
    assert [v["verdict"] for v in verdicts] == ["ok"] * DRIFT_MONTH + ["retrain"] * (MONTHS - DRIFT_MONTH)
    for v in verdicts[DRIFT_MONTH:]:
        assert v["drifted_features"] == ["spend"] and v["max_drift_feature"] == "spend", v
        assert re.match(r"spend drifted: jensen_shannon_divergence 0\.\d{3} > 0\.1", v["reasons"][0]), v["reasons"]
    assert all(v["max_drift"] < 0.1 and not v["reasons"] for v in verdicts[:DRIFT_MONTH])
    # Event history: the model is dated by problem.cutoff_date; no backtest.json, so its rule is skipped, and said so.
    assert verdicts[-1]["model_date"] == "2025-04-01" and "problem.cutoff_date" in verdicts[-1]["model_date_source"]
    assert any(s.startswith("model age: reports/backtest.json is absent") for s in verdicts[-1]["skipped"])
    table = history(root)
    assert table["batch"].tolist() == [name for name, _, _ in year[0]]
    assert table["verdict"].tolist() == [v["verdict"] for v in verdicts]
    assert table["batch_date"].tolist() == [f"2025-{m:02d}-01" for m in range(5, 5 + MONTHS)]
    drift = pd.read_csv(resolve(catalog.MONITOR_DRIFT, root))
    assert set(drift.groupby("batch")["feature"].apply(frozenset)) == {frozenset({"x", "spend", "plan"})}
    assert resolve(catalog.MONITOR_REPORT, root).read_text().startswith("# Monitoring: retrain")


def test_outcomes_give_realised_metrics_as_they_arrive(project, year):
    root, values, _ = project
    batches, verdicts = year
    table = history(root)
    labelled = MONTHS - LAG
    assert table["realised_metric"].notna().tolist() == [True] * labelled + [False] * LAG
    assert (table["realised_metric"].head(labelled) > 0.6).all() and (table["labelled_rows"].head(labelled) == 1000).all()
    assert verdicts[LAG]["realised_batch"] == batches[0][0] and verdicts[0]["realised_metric"] is None
    assert any(s.startswith("realised metric: no outcomes") for s in verdicts[0]["skipped"])
    # The last two months' outcomes arrive: monitoring the latest batch again fills their realised metric.
    for name, _, labels in batches[-LAG:]:
        labels.to_csv(root / "data/outcomes" / f"{name}.csv", index=False)   # as a CSV, this time
    last = batches[-1][0]
    again = monitor.run(declared_view("monitor", month_values(values, last), root), root)
    assert history(root)["realised_metric"].notna().all() and again["realised_batch"] == last


def test_a_batch_monitored_again_replaces_its_row(project, year):
    root, values, _ = project
    before = history(root)
    name = year[0][-1][0]
    monitor.run(declared_view("monitor", month_values(values, name), root), root)
    after = history(root)
    assert len(after) == len(before) == MONTHS and after["batch"].is_unique
    pd.testing.assert_frame_equal(after, before)


def test_an_undated_batch_is_monitored_and_bad_params_are_named(project, year):
    root, values, held_out = project
    undated = held_out.head(200).drop(columns=["churned", "cutoff"])
    write_table(undated, root / "batches" / "undated.parquet")
    monitor.check_inputs(month_values(values, "undated"), root)   # no date: monitored, its age not judged
    score.run(declared_view("score", month_values(values, "undated"), root), root)
    undated_verdict = monitor.run(declared_view("monitor", month_values(values, "undated"), root), root)
    assert undated_verdict["batch_date"] is None and undated_verdict["model_age_days"] is None
    assert any(s.startswith("model age:") for s in undated_verdict["skipped"])
    assert "of no date" in (root / "reports/monitoring/verdict.md").read_text()
    dated = month_values(values, "undated", batch_date="2025-12-01")
    score.run(declared_view("score", dated, root), root)
    assert monitor.run(declared_view("monitor", dated, root), root)["batch_date"] == "2025-12-01"
    for bad, field in ((1.5, "monitor.drift_threshold"), ("soon", "monitor.drift_threshold")):
        with pytest.raises(StageError) as e:
            check_params("monitor", month_values(values, "undated", drift_threshold=bad), monitor.PARAMS_SCHEMA)
        assert (e.value.stage, e.value.field) == ("monitor", field)
    with pytest.raises(StageError) as e:
        check_params("monitor", month_values(values, "undated", batch_date="May"), monitor.PARAMS_SCHEMA)
    assert e.value.field == "monitor.batch_date"
    with pytest.raises(StageError) as e:
        monitor.check_inputs(month_values(values, "not-there"), root)
    assert e.value.field == "score.batch"


def test_a_model_older_than_the_backtest_interval_is_a_reason(project, year):
    root, values, _ = project
    backtest, first = resolve(catalog.BACKTEST_JSON, root), year[0][0][0]   # the first month: steady, 30 days on
    score.run(declared_view("score", month_values(values, first), root), root)   # the predictions are its own again
    try:
        for interval, verdict in ((20, "retrain"), (45, "ok")):
            write_json({"applicable": True, "interval_days": interval}, backtest)
            judged = monitor.run(declared_view("monitor", month_values(values, first), root), root)
            assert (judged["verdict"], judged["model_age_days"]) == (verdict, 30), judged
        assert judged["skipped"] == [] and judged["batch"] == first
        write_json({"applicable": True, "interval_days": 20}, backtest)
        assert monitor.run(declared_view("monitor", month_values(values, first), root), root)["reasons"] == [
            "the model is 30 days old (dated 2025-04-01: problem.cutoff_date (labels derived from events are known up "
            "to it)), beyond the backtest's interval of 20 days"]
    finally:
        backtest.unlink(missing_ok=True)
        monitor.run(declared_view("monitor", month_values(values, first), root), root)   # its row as it was


def test_the_committed_params_meet_the_contract():
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    check_params("monitor", values, monitor.PARAMS_SCHEMA)
    assert values["monitor"]["outcomes"] == catalog.OUTCOMES and (ROOT / catalog.OUTCOMES / ".gitkeep").is_file()


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def test_the_retrain_workflow_is_valid_and_scheduled(workflow):
    result = run_command([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                          str(WORKFLOW)], ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    triggers = workflow.get("on", workflow.get(True))   # YAML 1.1 reads a bare `on` as true
    assert {"schedule", "workflow_dispatch"} <= set(triggers) and triggers["schedule"][0]["cron"].split()[2] != "*"
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step
            else:
                subprocess.run(["bash", "-n", "-c", step["run"]], check=True)


def test_the_retrain_workflow_names_what_exists(workflow):
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    scripts = "\n".join(s.get("run", "") for s in steps)
    for tool in set(re.findall(r"\.venv/bin/([\w-]+)", scripts)):
        assert (ROOT / ".venv" / "bin" / tool).exists() or shutil.which(tool), tool
    for target in re.findall(r"\bmake (\S+)", scripts):
        assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M), target
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "dvc exp run" in scripts and re.search(r"-S \"score\.batch=\$BATCH\" monitor$", scripts, re.M)
    assert {"score", "monitor"} <= set(stages) and "score.batch" in stages["monitor"]["params"]
    assert f'json.load(open("{catalog.MONITOR_VERDICT}"))["verdict"]' in scripts
    assert catalog.MONITOR_REPORT in scripts and catalog.MONITOR_VERDICT.startswith(catalog.MONITORING)
    assert any(s.get("with", {}).get("path") == catalog.MONITORING for s in steps)   # the history, uploaded
    assert f"git add params.yaml dvc.lock {catalog.MONITORING}" in scripts
    assert (ROOT / workflow["env"]["INCOMING"] / ".gitkeep").is_file()
    retrain = [s for s in steps if "retrain" in s.get("if", "")]
    assert len(retrain) == 1 and "dvc exp run --force" in retrain[0]["run"]
    assert retrain[0]["if"] == "steps.verdict.outputs.verdict == 'retrain'"
