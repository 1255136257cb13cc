"""Metrics against hand-computed values, threshold choice, calibration error, the tabular
baseline (planted effect and the real file) and the plots.
Run with `.venv/bin/python -m pytest -q tests/test_evaluate.py`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from noshow.evaluate import (
    FEATURE_COLUMNS,
    BaselineError,
    baseline_predict,
    build_report,
    choose_threshold,
    compute_metrics,
    expected_calibration_error,
    fit_tabular_baseline,
    plot_calibration,
    plot_confusion,
    plot_pr,
    plot_roc,
    plot_training_curves,
)

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


def _planted_frame(n: int, seed: int) -> pd.DataFrame:
    """Rows with the real feature columns; no-shows driven by lead time, SMS and history."""
    rng = np.random.default_rng(seed)
    lead = rng.integers(0, 60, n)
    sms = rng.integers(0, 2, n)
    prior = rng.integers(0, 6, n)
    prior_ns = np.minimum(prior, rng.integers(0, 3, n))
    hood = rng.choice(["CENTRO", "JARDIM", "PRAIA", "MARUÍPE"], n)
    logit = -2.0 + 0.04 * lead - 0.5 * sms + 0.8 * prior_ns + 0.6 * (hood == "PRAIA")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "age": rng.integers(0, 90, n),
            "gender": rng.choice(["F", "M"], n),
            "neighbourhood": hood,
            "scholarship": rng.integers(0, 2, n),
            "hypertension": rng.integers(0, 2, n),
            "diabetes": rng.integers(0, 2, n),
            "alcoholism": rng.integers(0, 2, n),
            "handicap": rng.integers(0, 2, n),
            "sms_received": sms,
            "lead_days": lead,
            "weekday": rng.choice(["Monday", "Tuesday", "Friday"], n),
            "booking_hour": rng.integers(7, 18, n),
            "prior_appointments": prior,
            "prior_no_shows": prior_ns,
            "no_show": y,
        }
    )


def test_metrics_match_hand_computed_values():
    m = compute_metrics(Y, P, threshold=0.35)
    assert m["n"] == 4 and m["positives"] == 2
    assert m["roc_auc"] == pytest.approx(0.75)
    # Ranked .8(1) .4(0) .35(1) .1(0): precision 1 at recall 1/2, 2/3 at recall 1.
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (1, 1, 0, 2)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.5
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.8)
    assert m["accuracy"] == 0.75
    assert m["note"] is None


def test_threshold_counts_equal_probability_as_no_show():
    m = compute_metrics([0, 1], [0.5, 0.5], threshold=0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (0, 1, 0, 1)


def test_ece_on_crafted_bins():
    # Bins [.1,.2) [.3,.4) [.4,.5) [.8,.9): gaps .1, .65, .4, .2, one row each.
    assert expected_calibration_error(Y, P) == pytest.approx((0.1 + 0.65 + 0.4 + 0.2) / 4)
    # Two rows share bin [.2,.3): mean p .25 vs observed .5.
    assert expected_calibration_error([0, 1], [0.2, 0.3 - 1e-9]) == pytest.approx(0.25)
    # p = 1.0 falls in the last bin, not past it.
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0


def test_choose_threshold_maximizes_f1():
    # F1 at .8: 2/3, at .4: 1/2, at .35: 4/5, at .1: 2/3.
    assert choose_threshold(Y, P) == 0.35


def test_choose_threshold_breaks_ties_toward_larger_threshold():
    # F1 is 2/3 both at .9 (one hit, no false alarm) and at .2 (all flagged).
    assert choose_threshold([1, 0, 0, 1], [0.9, 0.6, 0.5, 0.2]) == 0.9


def test_choose_threshold_handles_repeated_probabilities():
    # All at 0.5: the only candidate flags everyone.
    assert choose_threshold([0, 1, 1], [0.5, 0.5, 0.5]) == 0.5
    # Tied scores at .7 count together: at .7 tp=2 fp=1 (F1 .8); at .9 tp=1 (F1 .67).
    assert choose_threshold([1, 1, 0, 0], [0.9, 0.7, 0.7, 0.1]) == 0.7


def test_choose_threshold_youden_objective():
    # Youden at .35 is 1 - .5 = .5; at .8 it is .5 - 0 = .5: tie -> larger.
    assert choose_threshold(Y, P, objective="youden") == 0.8


def test_choose_threshold_degenerate_inputs_give_half():
    assert choose_threshold([0, 0, 0], [0.2, 0.9, 0.4]) == 0.5
    assert choose_threshold([1, 1], [0.2, 0.9]) == 0.5
    assert choose_threshold([], []) == 0.5


def test_choose_threshold_refuses_unknown_objective():
    with pytest.raises(ValueError, match="objective must be one of f1, youden"):
        choose_threshold(Y, P, objective="accuracy")


def test_single_class_gives_undefined_aucs_with_a_note():
    m = compute_metrics([0, 0, 0], [0.1, 0.6, 0.3], threshold=0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert "only attended appointments" in m["note"]
    assert m["sensitivity"] is None and m["specificity"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.09) / 3)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.2], "differ in length"),
        ([0, 2], [0.2, 0.3], "labels must be 0"),
        ([0, 1], [0.2, float("nan")], "between 0 and 1"),
        ([0, 1], [0.2, 1.3], "between 0 and 1"),
        ([], [], "no rows"),
    ],
)
def test_compute_metrics_rejects_bad_input_clearly(y, p, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(y, p, threshold=0.5)


def test_build_report_thresholds_on_validation_and_scores_test():
    y_val, p_val = Y, P  # best F1 threshold .35
    y_test, p_test = [0, 1, 0, 1], [0.3, 0.36, 0.5, 0.9]
    baseline = ([0.2, 0.1, 0.9, 0.9], [0.95, 0.2, 0.1, 0.9])  # (validation, test)
    report = build_report(y_val, p_val, y_test, p_test, baseline=baseline)
    assert report["threshold"] == 0.35
    assert report["model"]["threshold"] == 0.35
    assert (report["model"]["tn"], report["model"]["fp"], report["model"]["tp"]) == (1, 1, 2)
    # The baseline gets its own validation threshold (.9 separates its classes perfectly).
    assert report["baseline"]["threshold"] == 0.9
    assert (report["baseline"]["fp"], report["baseline"]["tp"]) == (1, 1)
    assert report["validation"]["model"]["roc_auc"] == pytest.approx(0.75)
    assert build_report(y_val, p_val, y_test, p_test)["baseline"] is None


def test_baseline_learns_a_planted_effect_and_handles_unknown_categories():
    train, test = _planted_frame(3000, seed=1), _planted_frame(1500, seed=2)
    test.loc[:10, "neighbourhood"] = "NOWHERE"  # never seen in training
    test.loc[11:20, "weekday"] = None
    model = fit_tabular_baseline(train, seed=0)
    p = baseline_predict(model, test.drop(columns=["no_show"]))
    assert p.shape == (len(test),) and np.isfinite(p).all()
    assert compute_metrics(test["no_show"], p, 0.5)["roc_auc"] > 0.6


def test_baseline_is_reproducible_for_a_seed():
    train, test = _planted_frame(1500, seed=3), _planted_frame(200, seed=4)
    a = baseline_predict(fit_tabular_baseline(train, seed=7), test)
    b = baseline_predict(fit_tabular_baseline(train, seed=7), test)
    np.testing.assert_array_equal(a, b)


def test_baseline_refuses_text_only_frames():
    statements = pd.DataFrame({"record_id": [1, 2], "statement": ["a", "b"], "no_show": [0, 1]})
    with pytest.raises(BaselineError, match="baseline needs column"):
        fit_tabular_baseline(statements)
    model = fit_tabular_baseline(_planted_frame(500, seed=5))
    with pytest.raises(BaselineError, match="unavailable"):
        baseline_predict(model, statements)


def test_baseline_refuses_one_class_training_rows():
    train = _planted_frame(200, seed=6).assign(no_show=0)
    with pytest.raises(BaselineError, match="one class only"):
        fit_tabular_baseline(train)


def test_plots_return_figures_with_auc_legends():
    curves = {"classifier": (Y, P), "empty": ([0, 0], [0.1, 0.2])}
    roc = plot_roc(curves)
    labels = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    assert "classifier (AUC 0.750)" in labels and "empty (AUC n/a)" in labels
    pr = plot_pr({"classifier": (Y, P)})
    assert "classifier (AP 0.833)" in [t.get_text() for t in pr.axes[0].get_legend().get_texts()]
    cal = plot_calibration({"classifier": (Y, P)})  # ECE 0.3375 is 0.33749999... in floats
    assert "classifier (ECE 0.337)" in [t.get_text() for t in cal.axes[0].get_legend().get_texts()]
    conf = plot_confusion(
        {"model": compute_metrics(Y, P, 0.35), "baseline": compute_metrics(Y, P, 0.8)}
    )
    assert len(conf.axes) == 2
    assert {t.get_text() for t in conf.axes[0].texts} == {"1", "0", "2"}
    for fig in (roc, pr, cal, conf):
        assert isinstance(fig, Figure)


def test_training_curves_plot_loss_and_validation_auc(tmp_path):
    metrics = pd.DataFrame(
        [
            {"step": 1, "loss": 0.7},
            {"step": 2, "loss": 0.6},
            {"step": 2, "val_auc": 0.68, "val_loss": 0.5},
            {"step": 4, "loss": 0.5},
            {"step": 4, "val_auc": 0.71, "val_loss": 0.45},
        ]
    )
    fig = plot_training_curves(metrics)
    loss_ax, auc_ax = fig.axes
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 4]
    assert list(loss_ax.lines[1].get_ydata()) == [0.5, 0.45]
    assert list(auc_ax.lines[0].get_ydata()) == [0.68, 0.71]
    assert auc_ax.get_legend().get_texts()[0].get_text() == "validation (best 0.710)"
    fig.savefig(tmp_path / "curves.png")  # renders without a display
    assert (tmp_path / "curves.png").stat().st_size > 1000
    older = plot_training_curves(pd.DataFrame([{"step": 3, "eval_roc_auc": 0.7}]))
    assert list(older.axes[1].lines[0].get_ydata()) == [0.7]
    empty = plot_training_curves(pd.DataFrame())
    assert empty.axes[0].texts[0].get_text() == "no metrics yet"


@pytest.mark.slow
def test_time_split_baseline_on_real_data_matches_reference(real_data_path):
    data = pytest.importorskip("noshow.data", reason="noshow.data is not written yet")
    loaded = data.load_data(real_data_path)
    frame = data.split_data(loaded.frame, "time")
    assert set(FEATURE_COLUMNS) <= set(frame.columns)
    parts = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
    model = fit_tabular_baseline(parts["train"], seed=0)
    report = build_report(
        parts["validation"]["no_show"],
        baseline_predict(model, parts["validation"]),
        parts["test"]["no_show"],
        baseline_predict(model, parts["test"]),
    )
    auc = report["model"]["roc_auc"]
    print(f"time-split HistGradientBoosting baseline: test ROC-AUC {auc:.4f}")
    # Reference (../shared/data/README.md): LightGBM 0.726, 0.732 with patient history.
    assert 0.70 <= auc <= 0.76
