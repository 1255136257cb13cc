"""The stacked model (noshow.evaluation.stacking): cross-fitted on validation so no row's own
label reaches its score, ahead of the tabular model (and of the blend) when the adapter knows
more, stored as JSON and refitted to the same predictions.
Run with `.venv/bin/python -m pytest -q tests/test_stacking.py`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from noshow.evaluation.intervals import compare_auc
from noshow.evaluation.stacking import (
    ADAPTER,
    BASELINE,
    STACKED_FILE,
    Stacked,
    StackingError,
    _boosting,
    cross_fit,
    design,
    fit_encoder,
    fit_stacked,
    fold_groups,
)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """The synthetic data's rows (their tabular columns), shuffled once."""
    from noshow.data.load import load_data

    frame = load_data("synthetic").frame
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _world(rows: pd.DataFrame, seed: int, interaction: bool = False):
    """Labels from the columns (which the "baseline" knows exactly) and a hidden signal h
    (which only the "adapter" sees); with `interaction`, h matters only for appointments
    with an SMS reminder, which no blend of the two scores can express."""
    rng = np.random.default_rng(seed)
    f = -1.6 + 0.02 * rows["lead_days"] + 0.6 * rows["prior_no_shows"] - 0.3 * rows["scholarship"]
    h = rng.normal(size=len(rows))
    signal = h * (2.0 * rows["sms_received"]) if interaction else 0.8 * h
    y = (rng.random(len(rows)) < _sigmoid(f + signal)).astype(int)
    p_base = _sigmoid(f.to_numpy())
    p_adapter = _sigmoid(-1.5 + h + rng.normal(0, 0.5, len(rows)))
    return y.to_numpy(), p_base, p_adapter


def test_a_rows_cross_fitted_score_does_not_depend_on_its_own_label(rows):
    part = rows.iloc[:600]
    y, p_base, p_adapter = _world(part, seed=1)
    x = design(
        part,
        [np.log(p_base / (1 - p_base)), np.log(p_adapter / (1 - p_adapter))],
        fit_encoder(part),
    )
    fold = np.arange(600) % 3
    held = cross_fit(x, y, fold, k=2, trees=20)
    flipped = np.where(fold == 1, 1 - y, y)  # fold 1's own labels change ...
    again = cross_fit(x, flipped, fold, k=2, trees=20)
    np.testing.assert_array_equal(again[:, fold == 1], held[:, fold == 1])  # ... not its scores
    assert not np.allclose(again[:, fold == 0], held[:, fold == 0])  # others learnt from them


def test_a_label_memorising_feature_does_not_help_on_held_out_folds(rows):
    rng = np.random.default_rng(2)
    part = rows.iloc[:1500].copy()
    y = rng.integers(0, 2, len(part))  # nothing to learn ...
    part["booking_hour"] = rng.permutation(len(part))  # ... but a unique id per row
    p_noise = rng.uniform(0.05, 0.95, (2, len(part)))
    x = design(part, list(np.log(p_noise / (1 - p_noise))), fit_encoder(part))
    loose = {"learning_rate": 0.3, "max_depth": 6, "min_samples_leaf": 1, "subsample": 1.0}
    fold = rng.permutation(len(part)) % 5
    held = cross_fit(x, y, fold, k=2, trees=60, settings=loose)
    memorised = _boosting(2, 60, loose, 0).fit(x, y).decision_function(x)
    assert roc_auc_score(y, memorised) > 0.95  # fitted on its own labels it memorises them
    assert abs(roc_auc_score(y, held[-1]) - 0.5) < 0.06  # held out, the ids are worth nothing


def test_stacked_beats_the_tabular_model_when_the_adapter_knows_more(rows):
    fit_rows, test_rows = rows.iloc[:3000], rows.iloc[3000:]
    y, p_base, p_adapter = _world(rows, seed=3)
    n = len(fit_rows)
    stacked = fit_stacked(
        fit_rows,
        {BASELINE: p_base[:n], ADAPTER: p_adapter[:n]},
        y[:n],
        groups=fit_rows["patient_id"],
        fold_unit="patient",
    )
    assert stacked.cv_auc["stacked"] > stacked.cv_auc[BASELINE] + 0.03
    p = stacked.predict(test_rows, {BASELINE: p_base[n:], ADAPTER: p_adapter[n:]})
    result = compare_auc(
        y[n:],
        {"stacked": p, "baseline": p_base[n:]},
        [("stacked", "baseline")],
        groups=test_rows["patient_id"],
    )
    diff = result["differences"][0]
    assert diff["estimate"] > 0.03 and diff["low"] > 0, diff["text"]


def test_trees_add_what_a_blend_cannot_express(rows):
    from noshow.evaluation.hybrid import fit_hybrid

    y, p_base, p_adapter = _world(rows, seed=4, interaction=True)
    n = 3000
    stacked = fit_stacked(
        rows.iloc[:n],
        {BASELINE: p_base[:n], ADAPTER: p_adapter[:n]},
        y[:n],
        groups=rows["patient_id"].iloc[:n],
        fold_unit="patient",
    )
    assert stacked.n_trees > 0
    assert stacked.cv_auc["stacked"] > stacked.cv_auc["blend"] + 0.01
    blend = fit_hybrid(p_adapter[:n], p_base[:n], y[:n])
    p = stacked.predict(rows.iloc[n:], {BASELINE: p_base[n:], ADAPTER: p_adapter[n:]})
    assert (
        roc_auc_score(y[n:], p)
        > roc_auc_score(y[n:], blend.predict(p_adapter[n:], p_base[n:])) + 0.01
    )


def test_stacked_round_trips_as_json_and_refits_to_the_same_predictions(rows, tmp_path):
    part = rows.iloc[:1200]
    y, p_base, p_adapter = _world(part, seed=5)
    part = part.assign(no_show=y)
    baseline_p = dict(zip(part["record_id"], p_base, strict=True))
    stacked = fit_stacked(
        part,
        {BASELINE: p_base, ADAPTER: p_adapter},
        y,
        groups=part["patient_id"],
        fold_unit="patient",
        record_ids=part["record_id"],
    )
    stacked.threshold, stacked.baseline_params = 0.3, {"max_leaf_nodes": 15, "n_iter": 80}
    path = stacked.save(tmp_path)
    assert path == tmp_path / STACKED_FILE
    data = json.loads(path.read_text())
    assert data["fitted_on"] == "validation" and data["inputs"] == [BASELINE, ADAPTER]
    loaded = Stacked.load(tmp_path)
    assert loaded.model is None and loaded.n_trees == stacked.n_trees
    with pytest.raises(StackingError, match="refit"):
        loaded.predict(part, {BASELINE: p_base, ADAPTER: p_adapter})
    # a server holds the data set in another order and refits the tuned baseline itself
    shuffled = part.sample(frac=1.0, random_state=1)
    refitted = loaded.refit(shuffled, lambda r: r["record_id"].map(baseline_p).to_numpy())
    assert refitted.threshold == 0.3 and refitted.baseline_params == stacked.baseline_params
    new = rows.iloc[1200:1500]
    _, nb, na = _world(new, seed=6)
    np.testing.assert_allclose(
        refitted.predict(new, {BASELINE: nb, ADAPTER: na}),
        stacked.predict(new, {BASELINE: nb, ADAPTER: na}),
        atol=1e-9,
    )
    with pytest.raises(StackingError, match="not in the loaded data"):
        loaded.refit(part.iloc[10:], lambda r: r["record_id"].map(baseline_p).to_numpy())
    assert Stacked.load(tmp_path / "elsewhere") is None


def test_folds_are_days_for_a_time_split_and_patients_otherwise(rows):
    from noshow.data.splits import split_data

    frame = split_data(rows, "time")
    val, test = frame[frame["split"] == "validation"], frame[frame["split"] == "test"]
    groups, unit = fold_groups(val, test)
    assert unit == "day" and len(np.unique(groups)) == val["appointment_day"].nunique()
    frame = split_data(rows, "patient")
    val, test = frame[frame["split"] == "validation"], frame[frame["split"] == "test"]
    groups, unit = fold_groups(val, test)
    assert unit == "patient" and (groups == val["patient_id"].to_numpy()).all()
    text = pd.DataFrame({"statement": ["x"] * 4})
    assert fold_groups(text, text) == (None, "row")


@pytest.mark.parametrize(
    ("p", "y", "message"),
    [
        ({ADAPTER: [0.5] * 4}, [0, 1, 0, 1], "inputs must be 'baseline' then"),
        ({BASELINE: [0.5] * 4, ADAPTER: [0.5] * 4}, [0, 0, 0, 0], "both classes"),
        ({BASELINE: [0.5] * 4, ADAPTER: [1.5] * 4}, [0, 1, 0, 1], "must be probabilities"),
        ({BASELINE: [0.5] * 4, ADAPTER: [0.5] * 4}, [0, 1, 0], "differ in length"),
    ],
)
def test_fit_refuses_bad_input_clearly(rows, p, y, message):
    with pytest.raises(StackingError, match=message):
        fit_stacked(rows.iloc[:4], p, y)


def test_text_only_rows_say_what_the_stacked_model_needs():
    text = pd.DataFrame({"statement": ["x"] * 4, "no_show": [0, 1, 0, 1]})
    with pytest.raises(StackingError, match="needs column"):
        fit_stacked(text, {BASELINE: [0.5] * 4, ADAPTER: [0.5] * 4}, [0, 1, 0, 1])
