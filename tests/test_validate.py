"""Data validation gates the pipeline: the committed schema, injected faults, drift against the last accepted data,
named warnings, training/serving environments and skew, the Beam path, and `make schema`."""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, VENV_BIN, run, set_params

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from ml_lifecycle import gate as g  # noqa: E402  (TFDV is imported on first use: about 12 s, once)
from ml_lifecycle.stages import validate as v  # noqa: E402
from ml_lifecycle.core import StageError  # noqa: E402
from ml_lifecycle.params import check_params  # noqa: E402
from ml_lifecycle.stages.demo_data import FAULTS, generate_demo_sources  # noqa: E402
from ml_lifecycle.stages.gather import gather  # noqa: E402

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

# Each fault of the demo generator, and the (table, feature, anomaly type) the validate stage must report for it.
EXPECTED = {
    "new_category": ("customers", "channel", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
    "missing_column": ("customers", "email_opt_in", "SCHEMA_MISSING_COLUMN"),
    "type_change": ("events", "amount", "UNEXPECTED_DATA_TYPE"),
    "out_of_range": ("customers", "age", "FLOAT_TYPE_BIG_FLOAT"),
    "missing_rate_jump": ("customers", "income", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
    "distribution_shift": ("customers", "plan", "COMPARATOR_L_INFTY_HIGH"),
}


DEMO_SOURCES = {"customers": {"url": "sqlite:///data/external/crm.sqlite", "query": "SELECT * FROM customers"},
                "events": {"path": "data/external/events/*.parquet"}}


def raw_tables(fault="none", n_customers=1000, seed=7) -> dict:
    "The raw tables demo_data + gather write for a small business broken by `fault`, without DVC."
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "dvc.yaml").touch()
        (root / "params.yaml").touch()
        generate_demo_sources(n_customers, "2023-01-01", "2025-06-30", seed, fault, root=root)
        gather(DEMO_SOURCES, root=root)
        return {t: pd.read_parquet(root / f"data/raw/{t}.parquet") for t in DEMO_SOURCES}


def check(tables: dict, reference: dict | None = None) -> list[dict]:
    "Anomaly rows of raw tables against the committed schemas (and drift against reference statistics)."
    return [a for t, df in tables.items() for a in g.check_statistics(
        g.compute_statistics(df), t, g.load_schema(t, ROOT), reference=(reference or {}).get(t), stage="validate")["anomalies"]]


def found(rows):
    return {(a["table"], a["feature"], a["anomaly"]) for a in rows}


@pytest.fixture(scope="module")
def clean():
    "Clean demo raw tables (seed 7) and their statistics: the reference the faults are compared with."
    tables = raw_tables()
    return tables, {t: g.compute_statistics(df) for t, df in tables.items()}


# ---------------------------------------------------------------------------------------------- the contract
@pytest.mark.demo
def test_the_committed_schemas_admit_clean_demo_data_of_another_seed(clean):
    "No anomaly and no drift for honest data of a different draw: the thresholds are not tuned to one sample."
    assert check(raw_tables(seed=8, n_customers=1500), reference=clean[1]) == []
    assert check(clean[0]) == []


@pytest.mark.demo
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_alone_is_caught_with_its_feature_and_type(fault, clean):
    rows = check(raw_tables(fault), reference=clean[1])
    assert EXPECTED[fault] in found(rows), found(rows)
    assert {a["table"] for a in rows} == {EXPECTED[fault][0]}, "a fault in one table must not flag the other"


# ---------------------------------------------------------------------------------------------- drift
def shifted_plans(customers, share):
    "`share` of the basic-plan customers moved to premium."
    moved = customers["plan"].eq("basic") & (pd.Series(range(len(customers))) % 100 < share * 100)
    return customers.assign(plan=customers["plan"].mask(moved, "premium"))


@pytest.mark.demo
@pytest.mark.parametrize("table, shift, drifted, feature, anomaly", [
    ("customers", lambda df: shifted_plans(df, 0.05), False, "plan", "COMPARATOR_L_INFTY_HIGH"),
    ("customers", lambda df: shifted_plans(df, 0.40), True, "plan", "COMPARATOR_L_INFTY_HIGH"),
    ("events", lambda df: df.assign(amount=df["amount"] * 1.05), False, "amount", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),
    ("events", lambda df: df.assign(amount=df["amount"] * 2.0), True, "amount", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),
])
def test_drift_beyond_the_schema_threshold_and_only_then(clean, table, shift, drifted, feature, anomaly):
    tables, reference = clean
    result = g.check_statistics(g.compute_statistics(shift(tables[table])), table, g.load_schema(table, ROOT),
                                reference=reference[table], stage="validate")
    measure = "l_infty" if anomaly == "COMPARATOR_L_INFTY_HIGH" else "jensen_shannon_divergence"
    value, threshold = result["drift"][feature][measure]["value"], result["drift"][feature][measure]["threshold"]
    assert (value > threshold) == drifted, (value, threshold)
    assert ((table, feature, anomaly) in found(result["anomalies"])) == drifted
    assert all(a["kind"] == "drift" for a in result["anomalies"])
    assert v.drift_metrics([result])[table][feature][measure] == pytest.approx(value, abs=1e-6)


@pytest.mark.demo
def test_drift_fails_or_warns_as_configured(clean):
    tables, reference = clean
    result = g.check_statistics(g.compute_statistics(shifted_plans(tables["customers"], 0.4)), "customers",
                                g.load_schema("customers", ROOT), reference=reference["customers"], stage="validate")
    v.apply_policy([result], drift_action="fail")
    with pytest.raises(StageError, match="COMPARATOR_L_INFTY_HIGH") as err:
        g.raise_on_anomalies([result], stage="validate")
    assert (err.value.stage, err.value.field) == ("validate", "plan")
    v.apply_policy([result], drift_action="warn")
    g.raise_on_anomalies([result], stage="validate")
    assert {a["severity"] for a in result["anomalies"]} == {"warning"}


# ---------------------------------------------------------------------------------------------- warn_only
@pytest.mark.demo
def test_warn_only_downgrades_exactly_the_named_anomaly(clean):
    rows = check(raw_tables(["new_category", "out_of_range"]))
    result = {"table": "customers", "rows": 1, "anomalies": rows}
    named = {"table": "customers", "feature": "channel", "anomaly": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
             "reason": "marketplace channel launched, schema change under review"}
    stale = {**named, "feature": "region"}
    assert v.apply_policy([result], [named, stale]) == [stale]
    severity = {(a["feature"], a["anomaly"]): a["severity"] for a in rows}
    assert severity == {("channel", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"): "warning",
                        ("age", "FLOAT_TYPE_BIG_FLOAT"): "error"}
    with pytest.raises(StageError) as err:
        g.raise_on_anomalies([result], stage="validate")
    assert err.value.field == "age"
    report = v.anomalies_markdown([result], [stale])
    assert "marketplace channel launched" in report and "customers.region" in report


@pytest.mark.parametrize("entry, field", [
    ({"table": "customers", "feature": "*", "anomaly": "SCHEMA_MISSING_COLUMN", "reason": "everything"}, "feature"),
    ({"table": "customers", "anomaly": "SCHEMA_MISSING_COLUMN", "reason": "every feature"}, None),
    ({"table": "customers", "feature": "age", "anomaly": "SCHEMA_MISSING_COLUMN"}, None),
    ({"table": "customers", "feature": "age", "anomaly": "ANY", "reason": "every type"}, "anomaly"),
])
def test_warn_only_is_never_a_global_off_switch(entry, field):
    params = {"validate": {**PARAMS["validate"], "warn_only": [entry]}}
    with pytest.raises(StageError) as err:
        check_params("validate", params, v.PARAMS_SCHEMA)
    assert err.value.field == "validate.warn_only.0" + (f".{field}" if field else "")
    check_params("validate", {"validate": PARAMS["validate"]}, v.PARAMS_SCHEMA)   # the committed params pass


# ---------------------------------------------------------------------------------------------- Beam
@pytest.mark.demo
def test_the_beam_pipeline_and_the_in_memory_path_find_the_same_anomalies(clean, tmp_path):
    broken = raw_tables(["new_category", "out_of_range", "missing_rate_jump", "type_change", "distribution_shift"])
    options = {"runner": "DirectRunner", "direct_num_workers": 2, "direct_running_mode": "multi_processing"}
    by_engine = {}
    for engine in ("pandas", "beam"):
        rows = []
        for table, df in broken.items():
            df.to_parquet(tmp_path / f"{table}.parquet", index=False)
            stats = g.compute_statistics(df) if engine == "pandas" else \
                v.beam_statistics(str(tmp_path / f"{table}.parquet"), options, batch_rows=2000)
            assert stats.datasets[0].num_examples == len(df)
            rows += g.check_statistics(stats, table, g.load_schema(table, ROOT), reference=clean[1][table],
                                       stage="validate")["anomalies"]
        by_engine[engine] = sorted((a["table"], a["feature"], a["anomaly"], a["kind"]) for a in rows)
    assert len(by_engine["pandas"]) >= 5
    assert by_engine["beam"] == by_engine["pandas"]



def test_an_inferred_schema_takes_a_few_unseen_categories_in_both_engines(tmp_path):
    "A team's own table: 1% of rows with new levels pass and are named; 20% fail; the Beam engine agrees."
    customers = g.toy_customers(seed=3)
    schema = g.allow_unseen_levels(g.tfdv.infer_schema(g.compute_statistics(customers)),
                                   PARAMS["validate"]["unseen_levels"]["max_share"])
    options = {"runner": "DirectRunner", "direct_num_workers": 1, "direct_running_mode": "in_memory"}
    for share, refused in ((0.01, False), (0.2, True)):
        batch = g.toy_customers(seed=4)
        batch["channel"] = batch["channel"].mask(batch.index < share * len(batch), "kiosk")
        batch.to_parquet(tmp_path / "batch.parquet", index=False)
        for stats in (g.compute_statistics(batch), v.beam_statistics(str(tmp_path / "batch.parquet"), options)):
            checked = g.check_statistics(stats, "own", schema, stage="validate")
            assert [(a["feature"], a["anomaly"]) for a in checked["anomalies"]] == \
                ([("channel", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")] if refused else [])
            assert [(u["feature"], u["level"], u["rows"]) for u in checked["unseen_levels"]] == \
                [("channel", "kiosk", int(share * len(batch)))]


# ---------------------------------------------------------------------------------------------- train/serve
@pytest.fixture(scope="module")
def modelling(tiny_project):
    "The tiny run's modelling tables: a training set, and a batch to score (the hold-out rows, id and inputs only)."
    train = pd.read_parquet(tiny_project / "data/features/train.parquet")
    serving = pd.read_parquet(tiny_project / "data/features/test.parquet").drop(columns=["churned", "split", "cutoff"])
    return train, serving


@pytest.mark.integration
@pytest.mark.demo
def test_a_serving_batch_without_the_label_passes(modelling):
    train, serving = modelling
    assert g.validate_table(train, "features", ROOT, environment="TRAINING", stage="train")["anomalies"] == []
    result = g.validate_table(serving, "features", ROOT, environment="SERVING", stage="score")
    assert result["anomalies"] == [] and not result["schema_inferred"]
    g.raise_on_anomalies([result], stage="score")


@pytest.mark.integration
@pytest.mark.demo
def test_a_training_set_without_the_label_fails(modelling):
    train, _ = modelling
    result = g.validate_table(train.drop(columns="churned"), "features", ROOT, environment="TRAINING", stage="train")
    assert ("features", "churned", "SCHEMA_MISSING_COLUMN") in found(result["anomalies"])
    with pytest.raises(StageError) as err:
        g.raise_on_anomalies([result], stage="train")
    assert err.value.stage == "train" and err.value.field == "churned"
    with pytest.raises(StageError, match="unknown environment") as err:
        g.validate_table(train, "features", ROOT, environment="STAGING", stage="score")
    assert err.value.stage == "score", "the gate names the stage that called it"


@pytest.mark.integration
@pytest.mark.demo
def test_skew_between_training_and_serving(modelling):
    train, serving = modelling
    assert g.skew_anomalies(train, serving, "features", ROOT, stage="score") == []
    skewed = serving.assign(spend_90d=serving["spend_90d"] * 3, plan=serving["plan"].where(
        pd.Series(range(len(serving)), index=serving.index) % 2 == 0, "premium"))
    rows = g.skew_anomalies(train, skewed, "features", ROOT, stage="score")
    assert found(rows) == {("features", "plan", "COMPARATOR_L_INFTY_HIGH"),
                           ("features", "spend_90d", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH")}
    assert {a["kind"] for a in rows} == {"skew"} and all("training and serving" in a["description"] for a in rows)


def test_the_gate_names_the_stage_that_called_it(tmp_path):
    "A batch refused by score is an error of stage 'score', not of 'validate' (the gate takes the caller's name)."
    customers = g.toy_customers(200)
    stats, schema = g.compute_statistics(customers), g.toy_schema(customers)
    for stage in ("validate", "score"):
        with pytest.raises(StageError, match="unknown environment") as err:
            g.check_statistics(stats, "toy", schema, environment="SERVING", stage=stage)
        assert err.value.stage == stage and str(err.value).startswith(f"stage '{stage}'")
        with pytest.raises(StageError, match="no committed schema") as err:
            g.skew_anomalies(customers, customers, "toy", tmp_path, stage=stage)
        assert err.value.stage == stage


# ---------------------------------------------------------------------------------------------- the stage
def report(project):
    return json.loads((project / "reports/validation/anomalies.json").read_text())


@pytest.fixture(scope="module")
def faulty_run(tiny_project, tmp_path_factory):
    "`dvc repro validate` with every fault injected at once (each breaks a different feature), in a copy."
    project = tmp_path_factory.mktemp("faulty") / "project"
    shutil.copytree(tiny_project, project, symlinks=True)
    set_params(project, {("demo_data", "fault"): list(FAULTS)})
    return project, run("dvc repro validate", project, check=False)


@pytest.mark.integration
@pytest.mark.demo
def test_the_tiny_run_is_clean_and_sets_the_first_reference(tiny_project):
    tables = report(tiny_project)["tables"]
    assert [t["anomalies"] for t in tables] == [[], []] and not any(t["has_reference"] for t in tables)
    for table in ("customers", "events"):
        assert (tiny_project / f"data/reference/{table}.stats.pb").read_bytes() == \
            (tiny_project / f"data/validation/{table}.stats.pb").read_bytes()
        assert (tiny_project / f"reports/validation/html/{table}.html").stat().st_size > 1000
    assert "| plan | STRING |" in " ".join((tiny_project / "reports/validation/statistics.md").read_text().split())


@pytest.mark.integration
@pytest.mark.demo
@pytest.mark.parametrize("fault", FAULTS)
def test_the_validate_stage_fails_on_the_fault_and_names_it(faulty_run, fault):
    project, result = faulty_run
    assert result.returncode != 0
    assert "error: stage 'validate': data/raw/" in result.stdout + result.stderr
    table, feature, anomaly = EXPECTED[fault]
    rows = [a for t in report(project)["tables"] for a in t["anomalies"]]
    assert (table, feature, anomaly, "error") in {(a["table"], a["feature"], a["anomaly"], a["severity"]) for a in rows}
    assert f"| error | {table} | {feature} | {anomaly} |" in " ".join((project / "reports/validation/anomalies.md").read_text().split())


@pytest.mark.integration
@pytest.mark.demo
def test_rejected_data_does_not_become_the_reference(faulty_run, tiny_project):
    project, result = faulty_run
    assert result.returncode != 0
    for table in ("customers", "events"):
        assert (project / f"data/reference/{table}.stats.pb").read_bytes() == \
            (tiny_project / f"data/reference/{table}.stats.pb").read_bytes()
    validate_lock = lambda p: yaml.safe_load((p / "dvc.lock").read_text())["stages"]["validate"]
    assert validate_lock(project) == validate_lock(tiny_project), "a failed run records nothing for the stage"


@pytest.mark.integration
@pytest.mark.demo
def test_a_named_warning_passes_moves_the_reference_and_drift_shows_in_metrics_diff(tiny_copy, tiny_project):
    "New data (another seed) with a plan shift that a person accepted by name: passes, warns, records drift."
    set_params(tiny_copy, {("demo_data", "seed"): 8, ("demo_data", "fault"): "distribution_shift",
                           ("validate", "warn_only"): [{"table": "customers", "feature": "plan",
                                                        "anomaly": "COMPARATOR_L_INFTY_HIGH",
                                                        "reason": "spring campaign moved customers to premium"}]})
    run("dvc repro validate", tiny_copy)
    tables = {t["table"]: t for t in report(tiny_copy)["tables"]}
    assert all(t["has_reference"] for t in tables.values())
    rows = [a for t in tables.values() for a in t["anomalies"]]
    assert [(a["feature"], a["anomaly"], a["severity"]) for a in rows] == [("plan", "COMPARATOR_L_INFTY_HIGH", "warning")]
    assert "spring campaign" in (tiny_copy / "reports/validation/anomalies.md").read_text()
    drift = json.loads((tiny_copy / "reports/validation/drift.json").read_text())
    assert drift["customers"]["plan"]["l_infty"] > 0.1 and 0 < drift["events"]["amount"]["jensen_shannon_divergence"] < 0.1
    diff = json.loads(run("dvc metrics diff --json", tiny_copy).stdout)
    moved = diff.get("reports/validation/drift.json", {})
    assert moved["customers.plan.l_infty"]["new"] == drift["customers"]["plan"]["l_infty"], moved
    for table in ("customers", "events"):   # accepted: this data is the next run's reference
        current = (tiny_copy / f"data/validation/{table}.stats.pb").read_bytes()
        assert (tiny_copy / f"data/reference/{table}.stats.pb").read_bytes() == current
        assert current != (tiny_project / f"data/reference/{table}.stats.pb").read_bytes()


@pytest.mark.integration
@pytest.mark.demo
def test_make_schema_proposes_changes_and_leaves_the_committed_schema_untouched(tiny_copy):
    raw = tiny_copy / "data/raw/customers.parquet"
    customers = pd.read_parquet(raw)
    customers.loc[customers.index % 10 == 0, "channel"] = "marketplace"
    customers.to_parquet(raw, index=False)
    committed = {p.name: p.read_bytes() for p in (tiny_copy / "data/schema").glob("*.pbtxt")}
    assert set(committed) == {"customers.pbtxt", "events.pbtxt", "features.pbtxt"}
    # The project's own tools, and no environment bootstrap in the copy (-o: the stamp counts as up to date).
    result = run(f"make -o .venv/.installed schema BIN={VENV_BIN}", tiny_copy)
    assert '+  value: "marketplace"' in result.stdout
    assert "== events: the committed schema admits the current data" in result.stdout
    assert {p.name: p.read_bytes() for p in (tiny_copy / "data/schema").glob("*.pbtxt")} == committed
    assert run("git status --porcelain data/schema", tiny_copy).stdout == ""
    candidates = tiny_copy / "tmp/schema-candidates"
    assert {p.name for p in candidates.glob("*.pbtxt")} >= {"customers.pbtxt", "customers.inferred.pbtxt",
                                                           "features.pbtxt", "features.inferred.pbtxt"}
    assert "marketplace" in (candidates / "customers.pbtxt").read_text()
