"""The whole pipeline, end to end, with the real tools: dvc repro runs every stage notebook through papermill."""
import json
import re

import nbformat
import pytest
import yaml

from conftest import ROOT, run, set_params

pytestmark = [pytest.mark.integration, pytest.mark.demo]   # every test works on the tiny demo run
STAGES = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


def test_repro_runs_every_stage_and_writes_the_outputs(tiny_project):
    ran = ran_stages((tiny_project / ".repro_stdout").read_text())
    assert sorted(ran) == sorted(STAGES) and ran.index("gather") < ran.index("validate") < ran.index("train")
    spec = yaml.safe_load((tiny_project / "dvc.yaml").read_text())["stages"]
    for stage, definition in spec.items():
        for out in definition.get("outs", []) + definition.get("metrics", []) + definition.get("plots", []):
            path = tiny_project / (next(iter(out)) if isinstance(out, dict) else out)
            assert path.exists(), f"stage {stage} did not write {path.name}"
    assert sorted(p.name for p in (tiny_project / "reports/notebooks").glob("*.ipynb")) == \
        sorted(p.name for p in (ROOT / "nbs").glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00"))


def test_metrics_have_the_documented_keys_and_sane_values(tiny_project):
    metrics = json.loads((tiny_project / "reports/metrics.json").read_text())
    keys = {"roc_auc", "average_precision", "log_loss", "brier", "precision", "recall", "f1", "accuracy",
            "threshold", "positive_rate", "contacted_rate", "profit_model", "profit_contact_all", "profit_contact_none",
            "profit_model_per_customer", "profit_gain_over_best_naive", "model", "n_train", "n_test",
            "primary_metric", "primary_score", "success_threshold", "meets_success_threshold"}
    assert keys <= set(metrics)
    assert 0.7 < metrics["roc_auc"] <= 1 and metrics["n_test"] > 100 and metrics["model"] in \
        {"logistic_regression", "random_forest", "hist_gradient_boosting"}
    assert metrics["meets_success_threshold"] == (metrics["roc_auc"] >= metrics["success_threshold"])
    assert metrics["profit_model"] > max(metrics["profit_contact_all"], metrics["profit_contact_none"]), \
        "the cost-optimal threshold must beat both naive policies on the hold-out"
    shown = json.loads(run("dvc metrics show --json", tiny_project).stdout)
    assert "reports/metrics.json" in json.dumps(shown)


def test_executed_notebooks_used_the_injected_parameters(tiny_project):
    nb = json.loads((tiny_project / "reports/notebooks/09_evaluate.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and 'params_file = "params.yaml"' in "".join(injected[0]["source"])


def test_second_repro_runs_nothing(tiny_project):
    result = run("dvc repro", tiny_project)
    assert ran_stages(result.stdout) == [] and "up to date" in result.stdout
    assert run("dvc status --json", tiny_project).stdout.strip() == "{}"


def test_changing_a_training_parameter_reruns_only_what_is_downstream(tiny_copy):
    set_params(tiny_copy, {("train", "decision_threshold"): 0.35})
    result = run("dvc repro", tiny_copy)
    assert sorted(ran_stages(result.stdout)) == ["backtest", "check", "evaluate", "monitor", "score", "train"]   # and what follows
    assert json.loads((tiny_copy / "reports/metrics.json").read_text())["threshold"] == 0.35


def test_experiments_set_params_and_show_them(tiny_copy):
    result = run("dvc exp run -S train.decision_threshold=0.4", tiny_copy)
    assert sorted(ran_stages(result.stdout)) == ["backtest", "check", "evaluate", "monitor", "score", "train"]
    shown = json.loads(run("dvc exp show --json", tiny_copy).stdout)
    assert '"decision_threshold": 0.4' in json.dumps(shown)


def test_dag_plots_and_metrics_commands_work(tiny_project, tmp_path):
    dag = run("dvc dag --md", tiny_project).stdout
    assert all(stage in dag for stage in STAGES)
    run(f"dvc plots show -o {tmp_path}/plots", tiny_project)
    html = (tmp_path / "plots" / "index.html").read_text()
    for title in ("ROC curve", "Precision-recall", "Reliability curve", "Profit by decision threshold",
                  "Permutation importance", "Confusion matrix"):
        assert title in html, title


def test_push_then_pull_into_a_fresh_clone(tiny_copy, tmp_path):
    run("dvc push", tiny_copy)
    clone = tiny_copy.parent / "clone"
    run(f"git clone -q {tiny_copy} {clone}", tmp_path)
    run("dvc pull", clone)
    for path in ("models/model.skops", "data/raw/events.parquet", "data/features/train.parquet"):
        assert (clone / path).read_bytes() == (tiny_copy / path).read_bytes()
    assert ran_stages(run("dvc repro", clone).stdout) == []


def test_papermill_parameters_reach_the_notebook(tiny_copy):
    "If the `parameters` tag were lost, papermill would silently run with the default file."
    other = yaml.safe_load((tiny_copy / "params.yaml").read_text())
    other["problem"]["name"] = "an alternative problem"
    (tiny_copy / "other.yaml").write_text(yaml.safe_dump(other))
    run("ml-lifecycle run problem --params-file other.yaml", tiny_copy)
    assert "an alternative problem" in (tiny_copy / "reports/problem.md").read_text()


def test_a_failed_run_keeps_earlier_outputs_in_the_cache(tiny_copy):
    before = (tiny_copy / "data/raw/events.parquet").read_bytes()
    set_params(tiny_copy, {("gather", "events", "path"): "data/external/nowhere/*.parquet"})
    result = run("dvc repro", tiny_copy, check=False)
    assert result.returncode != 0
    run("git checkout params.yaml && dvc checkout --force", tiny_copy)  # replaces the failed run's notebook
    assert (tiny_copy / "data/raw/events.parquet").read_bytes() == before
    assert ran_stages(run("dvc repro", tiny_copy).stdout) == []


def stale(project) -> set[str]:
    return set(json.loads(run("dvc status --json", project).stdout or "{}"))


def test_a_plumbing_edit_reruns_nothing(tiny_copy):
    "The CLI, the engine, the generator and the catalog run the stages but cannot change what they write."
    for module in ["cli", "execution", "pipeline", "catalog"]:
        path = tiny_copy / "src/ml_lifecycle" / f"{module}.py"
        path.write_text(path.read_text().replace('"Command line:', '"The command line:') + "\n# an edit\n")
    assert stale(tiny_copy) == set()


def test_an_edit_to_shared_code_reruns_the_stages_that_import_it(tiny_copy):
    path = tiny_copy / "src/ml_lifecycle/reporting.py"
    path.write_text(path.read_text() + "\n# an edit\n")
    importers = {s for s, spec in yaml.safe_load((tiny_copy / "dvc.yaml").read_text())["stages"].items()
                 if "src/ml_lifecycle/reporting.py" in spec["deps"]}
    assert {"preprocess", "select", "evaluate"} <= importers and "gather" not in importers
    assert stale(tiny_copy) == importers


def test_an_edit_to_one_stage_reruns_it_and_what_follows(tiny_copy):
    "A stage run executes its notebook's code: an edit there reruns the stage, then what reads what it changed."
    path = tiny_copy / "nbs/08_train.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if 'decision["validation_rows"] = len(validation)' in c.source)
    cell.source = cell.source.replace('decision["validation_rows"] = len(validation)',
                                      'decision["validation_rows"] = len(validation)\n    decision["edited"] = True')
    nbformat.write(nb, path)
    assert stale(tiny_copy) == {"train"}
    result = run("dvc repro", tiny_copy)
    assert sorted(ran_stages(result.stdout)) == ["evaluate", "train"]   # evaluate reads the threshold record; score, the model file alone
    assert json.loads((tiny_copy / "models/threshold.json").read_text())["edited"] is True


def test_a_forced_run_leaves_nothing_in_the_temporary_folder(tiny_copy, tmp_path):
    "No toy project, no scratch file: a production run executes no check cell and removes what it made."
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run(f"TMPDIR={scratch} dvc repro -f", tiny_copy)
    assert "Running stage 'score'" in result.stdout
    assert sorted(p.name for p in scratch.iterdir()) == []


def test_executed_notebooks_record_the_run_and_no_check(tiny_project):
    "A stage run skips the check cells (toy projects, toy fits, asserts), and the executed copy says which."
    for path in sorted((tiny_project / "reports/notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        skipped = [c for c in cells if "check-skipped" in c.metadata.get("tags", [])]
        assert skipped, f"{path.name}: no check cell was skipped"
        assert all(c.outputs == [] and c.execution_count is None for c in skipped), path.name
        shown = json.dumps([c.get("outputs", []) for c in cells])
        assert "toy-project-" not in shown and "AssertionError" not in shown, f"{path.name}: a check's output is recorded"


def test_the_backtest_writes_the_decay_curve_and_the_interval(tiny_project):
    "Every model on every later window: age 0 is the fresh model itself, and the interval is an age where it fell behind."
    import pandas as pd
    summary = json.loads((tiny_project / "reports/backtest.json").read_text())
    every = yaml.safe_load((tiny_project / "params.yaml").read_text())["backtest"]["every_days"]
    assert summary["applicable"] and summary["models"] >= 3 and summary["every_days"] == every
    decay = pd.read_csv(tiny_project / "reports/plots/decay.csv")
    pairs = pd.read_csv(tiny_project / "reports/backtest.csv")
    assert decay.loc[0, "age_days"] == 0 and decay.loc[0, "gap"] == 0 and (decay["age_days"] % every == 0).all()
    assert decay["windows"].sum() == len(pairs) and decay.loc[0, "windows"] == summary["models"]
    assert (pairs["age_days"] == (pd.to_datetime(pairs["window"]) - pd.to_datetime(pairs["trained"])).dt.days).all()
    stale = decay[(decay["gap"] > summary["tolerance"]) | (decay["profit_gap"] > summary["profit_tolerance"])]
    assert summary["interval_days"] == (int(stale["age_days"].min()) if len(stale) else None)
    assert ("Retrain at least every" if summary["interval_days"] else "No retraining interval") in \
        (tiny_project / "reports/backtest.md").read_text()
