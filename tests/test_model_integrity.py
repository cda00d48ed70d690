"""The model file is verified before anything is loaded from it: a model changed after training (values edited and
resaved with the project's own save_model, so every type in it is still trusted) is refused by every stage that loads it."""
import hashlib
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.cleaning import RecipeCleaner, cleaning_recipe
from ml_lifecycle.core import StageError
from ml_lifecycle.modelling import (TRUSTED_TYPES, assemble_model, digest_file, load_model, make_model, make_pipeline,
                                    save_model, write_model_digest)

SPEC = {"id_column": "customer_id", "label": "churned", "numeric": ["x"], "categorical": ["plan"],
        "impute_numeric": "median", "min_category_frequency": 0.01}


def toy_rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"x": rng.normal(size=n), "plan": rng.choice(["a", "b"], n)})
    return rows, (rows["x"] + rng.normal(scale=0.5, size=n) > 0).astype(int)


def negate(pipeline, name):
    "What a tamperer would do: flip the model's learned values (leaves, coefficients); its types stay the same."
    model = pipeline.named_steps["model"]
    if name == "random_forest":
        for tree in model.estimators_:
            tree.tree_.value[:] = -tree.tree_.value
    elif name == "hist_gradient_boosting":
        for predictors in model._predictors:
            for predictor in predictors:
                predictor.nodes["value"] *= -1
    else:
        model.coef_ *= -1
    return pipeline


@pytest.mark.parametrize("name, settings", [("logistic_regression", {}), ("random_forest", {"n_estimators": 5}),
                                            ("hist_gradient_boosting", {"max_iter": 10})])
@pytest.mark.parametrize("stage", ["evaluate", "score"])
def test_a_model_changed_after_training_is_refused_with_both_digests_and_the_fix(tmp_path, name, settings, stage):
    X, y = toy_rows()
    pipeline = make_pipeline(SPEC, make_model(name, settings, 0)).fit(X, y)
    path = save_model(pipeline, tmp_path / "model.skops")
    recorded = write_model_digest(path, "models/model.skops")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert recorded == digest_file(path) and recorded.read_text() == f"{expected}  models/model.skops\n"
    np.testing.assert_array_equal(load_model(path, stage=stage).predict_proba(X), pipeline.predict_proba(X))
    save_model(negate(pipeline, name), path)   # resaved with the project's own save_model: the digest stays behind
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    assert found != expected and recorded.read_text().startswith(expected)
    with pytest.raises(StageError) as refused:
        load_model(path, stage=stage)
    assert refused.value.stage == stage and "model.skops" in refused.value.source
    for text in (f"expected sha256 {expected}", f"found sha256 {found}", "dvc checkout --force", "dvc repro train"):
        assert text in refused.value.problem


def test_a_model_without_a_recorded_digest_is_refused(tmp_path):
    X, y = toy_rows()
    path = save_model(make_pipeline(SPEC, make_model("logistic_regression", {}, 0)).fit(X, y), tmp_path / "model.skops")
    with pytest.raises(StageError, match="no recorded digest") as refused:
        load_model(path, stage="score")
    assert refused.value.stage == "score" and hashlib.sha256(path.read_bytes()).hexdigest() in refused.value.problem


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum not installed")
def test_the_digest_file_is_what_sha256sum_checks(tmp_path):
    X, y = toy_rows()
    (tmp_path / "models").mkdir()
    path = save_model(make_pipeline(SPEC, make_model("logistic_regression", {}, 0)).fit(X, y), tmp_path / "models/model.skops")
    write_model_digest(path, "models/model.skops")
    check = ["sha256sum", "-c", "models/model.skops.sha256"]
    assert subprocess.run(check, cwd=tmp_path, capture_output=True, text=True).stdout.strip() == "models/model.skops: OK"
    path.write_bytes(path.read_bytes() + b"\0")
    assert subprocess.run(check, cwd=tmp_path, capture_output=True).returncode != 0


def self_contained(name="logistic_regression", settings=None):
    "A model file's content as train assembles it: the recipe's cleaner, the fitted pipeline, the decision at 0.4."
    X, y = toy_rows()
    recipe = cleaning_recipe([{"column": "x", "type": "numeric"}, {"column": "plan", "type": "categorical"}],
                             "customer_id", "churned", "unknown", {"x": [-2.0, 2.0]})
    return assemble_model(RecipeCleaner(recipe), make_pipeline(SPEC, make_model(name, settings or {}, 0)).fit(X, y), 0.4)


def lower_threshold(model):
    model.set_params(threshold=0.01)   # act on nearly everyone
    return model


def widen_ranges(model):
    model.estimator.named_steps["clean"].recipe["valid_ranges"]["x"] = [-100.0, 100.0]   # impossible values let through
    return model


@pytest.mark.parametrize("change", [lower_threshold, widen_ranges])
@pytest.mark.parametrize("stage", ["evaluate", "score"])
def test_a_self_contained_model_whose_decision_or_cleaning_changed_is_refused(tmp_path, change, stage):
    "The threshold and the recipe are in the file now: changing either after training changes the digest."
    X, _ = toy_rows()
    X = X.assign(x=X["x"] * 2)   # some values outside the valid range: the cleaner sets them missing
    model = self_contained()
    path = save_model(model, tmp_path / "model.skops")
    recorded = write_model_digest(path, "models/model.skops").read_text()
    loaded = load_model(path, stage=stage)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    changed = change(model)
    assert not np.array_equal(changed.predict(X), loaded.predict(X)) or \
        not np.array_equal(changed.predict_proba(X), loaded.predict_proba(X))   # the change matters
    save_model(changed, path)
    with pytest.raises(StageError) as refused:
        load_model(path, stage=stage)
    assert refused.value.stage == stage and f"expected sha256 {recorded[:64]}" in refused.value.problem


@pytest.mark.parametrize("name, settings", [("logistic_regression", {}), ("random_forest", {"n_estimators": 5}),
                                            ("hist_gradient_boosting", {"max_iter": 10})])
def test_the_allow_list_names_the_cleaner_and_nothing_broader(tmp_path, name, settings):
    """Every type in a self-contained model file beyond skops's own trust is on the allow-list; the one the model file
    added is the project's cleaner (skops trusts scikit-learn's FixedThresholdClassifier itself); without it on the
    list the file is refused, naming it."""
    import skops.io as sio
    path = save_model(self_contained(name, settings), tmp_path / "model.skops")
    write_model_digest(path)
    untrusted = set(sio.get_untrusted_types(file=path))
    assert "ml_lifecycle.cleaning.RecipeCleaner" in untrusted and untrusted <= set(TRUSTED_TYPES)
    assert not any("FixedThresholdClassifier" in t or t.endswith(".Pipeline") for t in TRUSTED_TYPES)
    with pytest.raises(StageError, match="untrusted") as refused:
        load_model(path, trusted=tuple(t for t in TRUSTED_TYPES if "RecipeCleaner" not in t))
    assert refused.value.field == "ml_lifecycle.cleaning.RecipeCleaner"


def test_the_same_model_gives_the_same_bytes(tmp_path):
    "Byte-reproducible: two assemblies of the same fit (two train runs) write the same file."
    first = save_model(self_contained(), tmp_path / "a.skops").read_bytes()
    assert save_model(self_contained(), tmp_path / "b.skops").read_bytes() == first
