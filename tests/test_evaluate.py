"""Metrics against hand-computed values, threshold choice, calibration error, ROC-AUC
intervals (DeLong and bootstrap, by row and by patient) and their wording, the report, the
end-of-run evaluation (nothing fitted reads test labels) and the plots
(noshow/evaluation/: metrics, intervals, report, plots).
Run with `.venv/bin/python -m pytest -q tests/test_evaluate.py`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from noshow.evaluation.calibration import Calibrator
from noshow.evaluation.intervals import compare_auc, describe_difference
from noshow.evaluation.metrics import (
    choose_threshold,
    compute_metrics,
    expected_calibration_error,
    format_auc,
)
from noshow.evaluation.plots import plot_calibration, plot_confusion, plot_pr, plot_roc
from noshow.evaluation.report import REPORT_NAMES, build_report, evaluate_run

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


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


def _scores(n: int, seed: int, strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a P(no-show) that carries `strength` of signal, ~20% positives."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    return y, 1 / (1 + np.exp(-(rng.normal(size=n) + strength * y - 1.5)))


def test_bootstrap_interval_covers_the_estimate_and_repeats_for_a_seed():
    y, p = _scores(2000, seed=1)
    _, q = _scores(2000, seed=1, strength=0.6)
    run = lambda seed: compare_auc(  # noqa: E731
        y, {"a": p, "b": q}, [("a", "b")], method="bootstrap", resamples=300, seed=seed
    )
    first, again, other = run(7), run(7), run(8)
    auc = first["auc"]["a"]
    assert auc["estimate"] == pytest.approx(roc_auc_score(y, p))
    assert auc["low"] < auc["estimate"] < auc["high"]
    diff = first["differences"][0]
    assert diff["low"] < diff["estimate"] < diff["high"]
    assert first == again
    assert other["auc"]["a"]["low"] != auc["low"]
    assert (first["method"], first["resamples"], first["seed"]) == ("bootstrap", 300, 7)


def test_delong_matches_hand_computed_variance_on_a_tiny_case():
    # Positives .8 .4, negatives .6 .2. Share of negatives below each positive: 1, .5; share
    # of positives above each negative: .5, 1. AUC .75; variance = var(1, .5)/2 +
    # var(.5, 1)/2 = .125/2 + .125/2 = .125.
    auc = compare_auc([1, 1, 0, 0], {"m": [0.8, 0.4, 0.6, 0.2]})["auc"]["m"]
    assert auc["estimate"] == pytest.approx(0.75)
    assert auc["se"] == pytest.approx(np.sqrt(0.125))
    assert auc["low"] == pytest.approx(0.75 - 1.959964 * np.sqrt(0.125))
    assert auc["high"] == 1.0  # clipped to the possible range


def test_delong_and_bootstrap_agree_on_the_spread():
    y, p = _scores(5000, seed=2)
    _, q = _scores(5000, seed=2, strength=0.7)
    kw = {"scores": {"a": p, "b": q}, "pairs": [("a", "b")]}
    delong = compare_auc(y, **kw)
    boot = compare_auc(y, **kw, method="bootstrap", resamples=500, seed=0)
    for key in ("a", "b"):
        assert boot["auc"][key]["se"] == pytest.approx(delong["auc"][key]["se"], rel=0.15)
    assert boot["differences"][0]["se"] == pytest.approx(delong["differences"][0]["se"], rel=0.15)


def test_patient_groups_widen_intervals_only_when_rows_repeat():
    y, p = _scores(3000, seed=3)
    singletons = np.arange(len(y))
    rows = compare_auc(y, {"a": p})["auc"]["a"]
    each_alone = compare_auc(y, {"a": p}, groups=singletons)["auc"]["a"]
    assert each_alone["se"] == pytest.approx(rows["se"], rel=0.01)
    # Every patient three times: three copies carry one row's evidence, so the interval
    # must be about sqrt(3) wider than the row-level one on the tripled data.
    y3, p3, g3 = np.repeat(y, 3), np.repeat(p, 3), np.repeat(singletons, 3)
    naive = compare_auc(y3, {"a": p3})["auc"]["a"]["se"]
    for method in ("delong", "bootstrap"):
        clustered = compare_auc(y3, {"a": p3}, groups=g3, method=method, resamples=400)
        assert clustered["unit"] == "group"
        assert clustered["auc"]["a"]["se"] / naive == pytest.approx(np.sqrt(3), rel=0.12)


def test_describe_difference_says_no_clear_difference_when_the_interval_covers_zero():
    assert describe_difference(0.004, -0.002, 0.010, "classifier", "baseline") == (
        "No clear difference between classifier and baseline: +0.004 ROC-AUC "
        "(95% CI -0.002 to +0.010)."
    )
    assert describe_difference(0.012, 0.004, 0.020, "hybrid", "baseline") == (
        "Hybrid is ahead of baseline by 0.012 ROC-AUC (95% CI +0.004 to +0.020)."
    )
    assert describe_difference(-0.012, -0.020, -0.004, "generative", "baseline") == (
        "Generative is behind baseline by 0.012 ROC-AUC (95% CI -0.020 to -0.004)."
    )


def test_compare_auc_wording_and_verdicts_follow_the_interval():
    y, p = _scores(4000, seed=4, strength=1.2)
    _, weak = _scores(4000, seed=5, strength=0.3)
    r = compare_auc(
        y, {"strong": p, "weak": weak, "same": p}, [("strong", "weak"), ("same", "strong")]
    )
    ahead, tie = r["differences"]
    assert ahead["verdict"] == "ahead" and ahead["text"].startswith("Strong is ahead of weak")
    assert tie["verdict"] == "no clear difference" and tie["estimate"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": {}}, "no models"),
        ({"scores": {"a": P}, "pairs": [("a", "b")]}, "not in scores"),
        ({"scores": {"a": P}, "method": "jackknife"}, "method must be one of delong, bootstrap"),
        ({"scores": {"a": P}, "groups": [1, 2]}, "groups and labels differ"),
        ({"scores": {"a": P}, "level": 95}, "level must be between 0 and 1"),
    ],
)
def test_compare_auc_rejects_bad_input_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_auc(Y, **kwargs)


def test_compare_auc_with_one_class_gives_no_interval():
    r = compare_auc([0, 0, 0], {"a": [0.1, 0.2, 0.3], "b": [0.3, 0.2, 0.1]}, [("a", "b")])
    assert r["auc"]["a"]["estimate"] is None
    assert r["differences"][0]["text"] == "ROC-AUC is undefined here."


def test_format_auc_shows_the_interval():
    assert format_auc({"roc_auc": 0.7284, "roc_auc_low": 0.7221, "roc_auc_high": 0.7346}) == (
        "0.728 (95% CI 0.722-0.735)"
    )
    assert format_auc({"roc_auc": 0.7284}) == "0.728"
    assert format_auc({"roc_auc": None}) == "n/a"


def test_build_report_holds_every_row_with_intervals_and_differences():
    y_val, p_val = _scores(1500, seed=6)
    y_test, p_test = _scores(2000, seed=7)
    rng = np.random.default_rng(8)
    other = lambda p: np.clip(p + rng.normal(0, 0.05, len(p)), 0, 1)  # noqa: E731
    cal = Calibrator(method="platt", slope=0.8, intercept=-0.2)
    report = build_report(
        y_val,
        p_val,
        y_test,
        p_test,
        baseline=(other(p_val), other(p_test)),
        untuned_baseline=(other(p_val), other(p_test)),
        hybrid=(other(p_val), other(p_test)),
        stacked=(other(p_val), other(p_test)),
        calibrator=cal,
        groups=np.arange(2000) // 2,
    )
    for key in REPORT_NAMES:
        m = report[key]
        assert m["roc_auc_low"] < m["roc_auc"] < m["roc_auc_high"], key
        assert report["validation"][key]["n"] == 1500
    # "model" is what the adapter will show: calibrated scores, threshold chosen on them.
    assert report["model"]["roc_auc"] == pytest.approx(report["model_uncalibrated"]["roc_auc"])
    assert report["threshold"] == choose_threshold(y_val, cal.apply(p_val))
    assert report["model"]["mean_p"] == pytest.approx(cal.apply(p_test).mean())
    assert report["calibration"]["method"] == "platt"
    assert report["intervals"]["unit"] == "group" and report["intervals"]["method"] == "delong"
    pairs = [(d["a"], d["b"]) for d in report["differences"]]
    assert pairs == [
        ("model", "baseline"),
        ("hybrid", "baseline"),
        ("hybrid", "model"),
        ("stacked", "baseline"),
        ("stacked", "model"),
        ("stacked", "hybrid"),
        ("model", "baseline_untuned"),
        ("baseline", "baseline_untuned"),
    ]
    assert all(d["low"] <= d["estimate"] <= d["high"] and d["text"] for d in report["differences"])
    json.dumps(report)  # eval.json: plain numbers and strings only


def _adapter_scores(rows: pd.DataFrame, seed: int) -> np.ndarray:
    """A stand-in adapter: P from a few columns plus noise (no labels involved)."""
    rng = np.random.default_rng(seed)
    z = 0.03 * rows["lead_days"] + 0.8 * rows["prior_no_shows"] - 0.4 * rows["sms_received"]
    return 1 / (1 + np.exp(-(z.to_numpy() - 1.8 + rng.normal(0, 0.7, len(rows)))))


@pytest.fixture(scope="module")
def synthetic_run() -> SimpleNamespace:
    """The synthetic data's time split, stand-in adapter scores and one evaluate_run on them
    (shared: each run tunes a baseline)."""
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data("synthetic").frame, "time")
    train, val, test = (
        frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "validation", "test")
    )
    p_val, p_test = _adapter_scores(val, 0), _adapter_scores(test, 1)
    run = evaluate_run(train, val, test, p_val, p_test)
    return SimpleNamespace(train=train, val=val, test=test, p_val=p_val, p_test=p_test, run=run)


def test_evaluate_run_fits_nothing_on_test_labels(synthetic_run):
    s, run = synthetic_run, synthetic_run.run
    flipped = s.test.assign(no_show=1 - s.test["no_show"])
    other = evaluate_run(s.train, s.val, flipped, s.p_val, s.p_test)
    assert other.calibrator == run.calibrator  # scaler: validation only
    assert other.hybrid == run.hybrid  # hybrid: validation only
    assert other.stacked.to_dict() == run.stacked.to_dict()  # stacked: validation only
    assert other.baseline.params == run.baseline.params  # tuning: validation only
    assert [t["validation_auc"] for t in other.baseline.trials] == [
        t["validation_auc"] for t in run.baseline.trials
    ]
    columns = ["p_no_show", "p_no_show_raw", "p_baseline", "p_baseline_untuned", "p_hybrid"]
    columns.append("p_stacked")
    pd.testing.assert_frame_equal(other.scores[columns], run.scores[columns])
    # ... while the test metrics do read them: flipped labels turn each AUC into 1 - AUC.
    for key in ("model", "baseline", "hybrid", "stacked"):
        assert other.report[key]["roc_auc"] == pytest.approx(1 - run.report[key]["roc_auc"])


def test_evaluate_run_reports_every_model_and_what_it_fitted(synthetic_run):
    run, report = synthetic_run.run, synthetic_run.run.report
    assert report["intervals"]["unit"] == "group"  # synthetic rows carry patient ids
    for key in ("model", "model_uncalibrated", "baseline", "baseline_untuned", "hybrid", "stacked"):
        m = report[key]
        assert m["n"] == len(synthetic_run.test) and m["roc_auc_low"] is not None
    assert report["baseline_tuning"]["params"] == run.baseline.params
    assert report["hybrid_model"] == run.hybrid.to_dict()
    assert report["stacked_model"] == run.stacked.summary()
    assert run.stacked.baseline_params == run.baseline.params
    assert run.stacked.threshold == report["stacked"]["threshold"]
    assert run.stacked.fold_unit == "day"  # every test day follows the validation days
    stacked_pairs = [(d["a"], d["b"]) for d in report["differences"] if d["a"] == "stacked"]
    assert stacked_pairs == [("stacked", "baseline"), ("stacked", "model"), ("stacked", "hybrid")]
    assert report["calibration"] == run.calibrator.to_dict()
    assert run.calibrator.threshold == report["threshold"]
    assert run.hybrid.threshold == report["hybrid"]["threshold"]
    assert set(report["quality_timings"]) >= {"baseline_tuning_s", "hybrid_s", "total_s"}
    assert list(run.scores["split"].unique()) == ["validation", "test"]
    raw = np.r_[synthetic_run.p_val, synthetic_run.p_test]
    np.testing.assert_allclose(run.scores["p_no_show"], run.calibrator.apply(raw))
    json.dumps(report)


def test_evaluate_run_recalibrates_each_test_day_from_the_days_before_it(synthetic_run):
    s, report = synthetic_run, synthetic_run.run.report
    section = report["recalibration"]["models"]
    assert set(section) == {"model", "hybrid", "stacked"}
    model = section["model"]
    assert set(model["ece"]) == {"uncalibrated", "once", "rolling"}
    assert set(section["hybrid"]["ece"]) == {"once", "rolling"}
    assert model["ece"]["once"]["estimate"] == pytest.approx(report["model"]["ece"])
    assert model["ece"]["uncalibrated"]["estimate"] == pytest.approx(
        report["model_uncalibrated"]["ece"]
    )
    days = sorted(s.test["appointment_day"].dt.strftime("%Y-%m-%d").unique())
    assert [d["day"] for d in model["by_day"]] == days
    rolling = s.run.scores.loc[s.run.scores["split"] == "test", "p_no_show_rolling"]
    assert rolling.notna().all() and len(rolling) == len(s.test)
    assert s.run.scores.loc[s.run.scores["split"] == "validation", "p_no_show_rolling"].isna().all()
    # the last test day's own outcomes do not move its recalibrated scores
    last = s.test["appointment_day"] == s.test["appointment_day"].max()
    flipped = s.test.assign(no_show=np.where(last, 1 - s.test["no_show"], s.test["no_show"]))
    other = evaluate_run(s.train, s.val, flipped, s.p_val, s.p_test)
    mine = other.scores.loc[other.scores["split"] == "test", "p_no_show_rolling"]
    np.testing.assert_array_equal(
        mine.to_numpy()[last.to_numpy()], rolling.to_numpy()[last.to_numpy()]
    )


def test_evaluate_run_tunes_the_baseline_on_all_validation_rows_when_given(synthetic_run):
    s = synthetic_run
    scored = s.val.iloc[::3]  # the adapter scored a third of validation
    run = evaluate_run(s.train, scored, s.test, s.p_val[::3], s.p_test, tuning_rows=s.val)
    settings = lambda trials: [{k: v for k, v in t.items() if k != "seconds"} for t in trials]  # noqa: E731
    assert settings(run.baseline.trials) == settings(s.run.baseline.trials)
    assert run.report["validation"]["model"]["n"] == len(scored)


def test_evaluate_run_puts_the_rows_in_the_order_they_were_scored(synthetic_run):
    s = synthetic_run
    ids = (s.val["record_id"], s.test["record_id"])
    flip = lambda frame: frame.iloc[::-1]  # noqa: E731
    shuffled = evaluate_run(s.train, flip(s.val), flip(s.test), s.p_val, s.p_test, record_ids=ids)
    assert shuffled.report["model"] == s.run.report["model"]
    assert shuffled.report["hybrid"] == s.run.report["hybrid"]
    with pytest.raises(ValueError, match="test rows lack scored record_id"):
        evaluate_run(s.train, s.val, s.test.iloc[1:], s.p_val, s.p_test, record_ids=ids)


def test_evaluate_run_on_text_only_rows_leaves_the_tabular_models_out():
    rng = np.random.default_rng(4)
    text = lambda n: pd.DataFrame(  # noqa: E731
        {"record_id": np.arange(n), "statement": ["x"] * n, "no_show": rng.integers(0, 2, n)}
    )
    train, val, test = text(200), text(300), text(300)
    run = evaluate_run(train, val, test, rng.random(300), rng.random(300))
    assert run.baseline is None and run.hybrid is None and run.stacked is None
    assert run.report["baseline"] is None and run.report["hybrid"] is None
    assert run.report["stacked"] is None and run.report["recalibration"] is None
    assert "tabular baseline unavailable" in run.notes[0]
    assert run.report["intervals"]["unit"] == "row"
    assert run.report["model"]["roc_auc_low"] is not None


def test_evaluate_run_with_one_class_validation_still_reports(synthetic_run):
    s = synthetic_run
    attended = s.val.assign(no_show=0)
    run = evaluate_run(s.train, attended, s.test, s.p_val, s.p_test)
    assert run.calibrator.method == "identity" and run.hybrid is None
    assert any("calibration skipped" in n for n in run.notes)
    assert any("tabular baseline unavailable" in n for n in run.notes)
    assert run.report["baseline"] is None  # tuning needs both classes in validation ...
    assert run.report["baseline_untuned"]["roc_auc"] > 0.5  # ... the untuned one does not
    assert run.report["model"]["roc_auc_low"] is not None  # test rows hold both classes


def test_evaluate_run_refuses_scores_that_do_not_match_the_rows(synthetic_run):
    s = synthetic_run
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_run(s.train, s.val, s.test, [0.5], [0.5])


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


def test_roc_legend_carries_the_interval_when_given():
    y, p = _scores(600, seed=9)
    intervals = compare_auc(y, {"classifier": p})["auc"]
    fig = plot_roc({"classifier": (y, p)}, intervals=intervals)
    ci = intervals["classifier"]
    expected = f"classifier (AUC {ci['estimate']:.3f}, 95% CI {ci['low']:.3f}-{ci['high']:.3f})"
    assert expected in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
