"""Bad input stops a stage with a non-zero exit and a message naming the stage, the source and the field."""
import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import copy_project, run, set_params

pytestmark = [pytest.mark.integration, pytest.mark.demo]   # the demo's sources and its tiny run, broken


def fails(project, stage, *expected):
    "Run `dvc repro <stage>`; it must fail, and its error output must contain every expected fragment."
    result = run(f"dvc repro {stage}", project, check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    error = next((line for line in message.splitlines() if line.startswith("error: ")), "")
    assert error, f"no one-line error in:\n{message}"
    for fragment in (f"stage '{stage}'", *expected):
        assert fragment in error, f"{fragment!r} missing from: {error}"
    return error


def test_missing_source_file(tiny_copy):
    set_params(tiny_copy, {("gather", "events", "path"): "data/external/nowhere/*.parquet"})
    fails(tiny_copy, "gather", "data/external/nowhere/*.parquet", "gather.events.path", "no file matches")


def test_missing_database_file(tiny_copy):
    set_params(tiny_copy, {("gather", "customers", "url"): "sqlite:///data/external/absent.sqlite"})
    fails(tiny_copy, "gather", "absent.sqlite", "gather.customers.url", "database file not found")
    assert not (tiny_copy / "data/external/absent.sqlite").exists()


def test_missing_table(tiny_copy):
    set_params(tiny_copy, {("gather", "customers", "query"): "SELECT * FROM clients"})
    fails(tiny_copy, "gather", "crm.sqlite", "field 'clients'", "no such table")


def faulty_copy_of_crm(project, sql):
    "A copy of the demo CRM database outside the demo stage's outputs, changed by `sql`, as the customers source."
    source = project / "sources" / "crm.sqlite"
    source.parent.mkdir()
    source.write_bytes((project / "data/external/crm.sqlite").read_bytes())
    with sqlite3.connect(source) as conn:
        conn.execute(sql)
    set_params(project, {("gather", "customers", "url"): "sqlite:///sources/crm.sqlite"})


def test_missing_required_column(tiny_copy):
    faulty_copy_of_crm(tiny_copy, "ALTER TABLE customers DROP COLUMN plan")
    fails(tiny_copy, "gather", "customers source", "field 'plan'", "required column is missing")


def test_missing_column_in_event_files(tiny_copy):
    """The event files lack the amount: the check sees it in the source files, before gather copies them, and names
    the parameter that names the column."""
    (tiny_copy / "sources").mkdir()
    for f in (tiny_copy / "data/external/events").glob("*.parquet"):
        pd.read_parquet(f).drop(columns="amount").to_parquet(tiny_copy / "sources" / f.name, index=False)
    set_params(tiny_copy, {("gather", "events", "path"): "sources/*.parquet"})
    fails(tiny_copy, "preprocess", "events table", "field 'preprocess.event_history.amount_column'",
          "'amount' is not a column of the event table")
    assert not (tiny_copy / "data/raw/events.parquet").stat().st_mtime > (tiny_copy / "dvc.lock").stat().st_mtime, \
        "refused before gather copied anything"


def test_empty_dataset(tiny_copy):
    set_params(tiny_copy, {("gather", "customers", "query"): "SELECT * FROM customers WHERE 1 = 0"})
    fails(tiny_copy, "gather", "customers source", "dataset is empty")


@pytest.mark.parametrize("keys, value, stage, fragment", [
    (("demo_data", "n_customers"), "many", "demo_data", "is not of type 'integer'"),
    (("select", "cv_folds"), 1, "select", "less than the minimum of 2"),
    (("train", "decision_threshold"), 1.5, "train", "is not valid under any of the given schemas"),
    (("problem", "cutoff_date"), "2025-02-30", "problem", "is not a 'date'"),
    (("features", "impute_numeric"), "magic", "features", "is not one of"),
])
def test_bad_parameter(tiny_copy, keys, value, stage, fragment):
    set_params(tiny_copy, {keys: value})
    fails(tiny_copy, stage, "params.yaml", f"field '{'.'.join(keys)}'", fragment)


def test_schema_anomaly_fails_validation(tiny_copy):
    faulty_copy_of_crm(tiny_copy, "UPDATE customers SET plan = 'platinum' WHERE rowid % 10 = 0")
    fails(tiny_copy, "validate", "data/raw/customers.parquet", "field 'plan'", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")


def test_unquoted_yes_that_matches_no_label_stops_an_own_data_run_at_its_first_stage(tmp_path):
    """A team's table labelled "took"/"declined" with `positive_class: Yes` unquoted in params.yaml (YAML reads it as
    true, which matches a Yes/No or true/false label, but not this one): `dvc repro` fails at the first stage it runs,
    before any notebook starts, naming the field, the label's values and the YAML cause."""
    project = copy_project(tmp_path / "project")
    rng = np.random.default_rng(0)
    pd.DataFrame({"age": rng.integers(18, 90, 300), "job": rng.choice(["admin", "technician", "services"], 300),
                  "subscribed": rng.choice(["took", "declined"], 300)}).to_csv(project / "data/external/clients.csv", index=False)
    for schema in (project / "data/schema").glob("*.pbtxt"):
        schema.unlink()
    set_params(project, {
        ("problem", "id_column"): None, ("problem", "label"): "subscribed", ("problem", "positive_class"): "__YES__",
        ("problem", "cutoff_date"): None, ("problem", "horizon_days"): None, ("problem", "active_window_days"): None,
        ("gather",): {"clients": {"path": "data/external/clients.csv", "required_columns": ["subscribed"]}},
        ("validate", "tables"): ["clients"], ("preprocess", "units"): "clients", ("preprocess", "event_history"): None,
        ("preprocess", "valid_ranges"): {}, ("features", "categorical"): [], ("evaluate", "segments"): ["job"]})
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("positive_class: __YES__", "positive_class: Yes"))
    assert yaml.safe_load(params.read_text())["problem"]["positive_class"] is True

    result = run("dvc repro", project, check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message
    error = next((line for line in message.splitlines() if line.startswith("error: ")), "")
    for fragment in ("params.yaml", "field 'problem.positive_class'", "YAML", "['declined', 'took']"):
        assert fragment in error, f"{fragment!r} missing from: {error or message}"
    assert message.count("Running stage") == 1, "no stage may run after the first one failed"
    assert not list((project / "reports/notebooks").glob("*.ipynb")), "the check runs before any notebook starts"
    assert not (project / "data/raw").exists() and not list((project / "data/external").glob("*.sqlite"))
