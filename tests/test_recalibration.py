"""Calibration that follows the clinic (noshow.evaluation.recalibration): a clinic's own no-show
rate against hand-computed odds, recalibration by day that reads only earlier days' outcomes,
the window chosen on validation days, and the ECE with patient-bootstrap intervals.
Run with `.venv/bin/python -m pytest -q tests/test_recalibration.py`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from noshow.evaluation.calibration import Calibrator, _fit_params, _logit
from noshow.evaluation.metrics import expected_calibration_error
from noshow.evaluation.recalibration import (
    PRIOR_SHIFT_TEXT,
    RecalibrationError,
    _platt,
    check_rate,
    choose_window,
    ece_with_intervals,
    recalibration_report,
    rolling_recalibration,
    shift_prior,
)


def test_prior_shift_matches_hand_computed_odds():
    # from 20% to 10%: odds factor (0.1/0.9) / (0.2/0.8) = 4/9
    # P 0.2: odds 1/4 -> 1/9, P = 0.1; P 0.5: odds 1 -> 4/9, P = 4/13;
    # P 0.8: odds 4 -> 16/9, P = 16/25; 0 and 1 stay put.
    p = shift_prior([0.0, 0.2, 0.5, 0.8, 1.0], from_rate=0.2, to_rate=0.1)
    np.testing.assert_allclose(p, [0.0, 0.1, 4 / 13, 16 / 25, 1.0], rtol=1e-12)
    # from 21% to 18.5% (the validation and test days of the time split), P 0.3:
    # odds 3/7 * (0.185/0.815) / (0.21/0.79) = 3/7 * 0.853929 = 0.365970; P = 0.267919
    odds = 3 / 7 * (0.185 / 0.815) / (0.21 / 0.79)
    assert shift_prior(0.3, 0.21, 0.185) == pytest.approx(odds / (1 + odds), rel=1e-12)
    assert float(shift_prior(0.3, 0.21, 0.185)) == pytest.approx(0.267919, abs=1e-6)


def test_prior_shift_keeps_the_ranking_and_undoes_itself():
    p = np.random.default_rng(0).random(200)
    there = shift_prior(p, 0.21, 0.12)
    assert (np.argsort(there) == np.argsort(p)).all()
    np.testing.assert_allclose(shift_prior(there, 0.12, 0.21), p, atol=1e-12)
    np.testing.assert_allclose(shift_prior(p, 0.3, 0.3), p)


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (0, "strictly between 0 and 1"),
        (1.0, "strictly between"),
        (15, "for 15% write 0.15"),
        ("x", "must be a number"),
        (float("nan"), "strictly between"),
    ],
)
def test_a_rate_outside_0_1_is_refused_clearly(rate, message):
    with pytest.raises(RecalibrationError, match=message):
        check_rate(rate)
    with pytest.raises(RecalibrationError, match=message):
        shift_prior([0.5], 0.2, rate)


def test_the_one_sentence_says_what_the_rate_does():
    assert PRIOR_SHIFT_TEXT.count(".") == 1 and "ranks" in PRIOR_SHIFT_TEXT


def test_window_platt_agrees_with_the_calibration_fit():
    rng = np.random.default_rng(1)
    x = rng.normal(-1.4, 1.1, 6000)
    y = (rng.random(6000) < 1 / (1 + np.exp(-(0.7 * x - 0.4)))).astype(float)
    p = 1 / (1 + np.exp(-x))
    cal = _platt(p, y)
    slope, intercept = _fit_params(_logit(p), y, "platt")
    assert cal.slope == pytest.approx(slope, abs=1e-4)
    assert cal.intercept == pytest.approx(intercept, abs=1e-4)
    assert cal.base_rate == pytest.approx(y.mean())


def _days(n_days: int, per_day: int, rates, seed: int):
    """P calibrated for a 21% rate every day; each day's true rate from `rates` (the same
    scores shifted), so only a calibrator that follows the days gets the mean right."""
    rng = np.random.default_rng(seed)
    n = n_days * per_day
    days = np.repeat(np.datetime64("2016-05-01") + np.arange(n_days), per_day)
    z = rng.normal(-1.6, 0.9, n)
    p = 1 / (1 + np.exp(-z))
    shift = np.repeat(np.log(np.asarray(rates) / (1 - np.asarray(rates)) / (0.21 / 0.79)), per_day)
    y = (rng.random(n) < 1 / (1 + np.exp(-(z + shift)))).astype(int)
    return p, y, days


def test_rolling_recalibration_reads_only_earlier_days_outcomes():
    p, y, days = _days(6, 400, [0.21] * 6, seed=2)
    score = days >= days[0] + 3  # days 3, 4, 5 scored
    before, fits = rolling_recalibration(p, y, days, score, window=2)
    assert [f["window_days"] for f in fits] == [2, 2, 2]
    assert [f["window_rows"] for f in fits] == [800, 800, 800]
    day4 = days == days[0] + 4
    flipped = np.where(day4, 1 - y, y)  # day 4's own outcomes change ...
    after, _ = rolling_recalibration(p, flipped, days, score, window=2)
    np.testing.assert_array_equal(after[day4], before[day4])  # ... not its scores
    day5 = days == days[0] + 5
    assert not np.allclose(after[day5], before[day5])  # the next day's calibrator reads them
    assert np.isnan(before[~score]).all()


def test_rolling_recalibration_follows_a_falling_no_show_rate():
    rates = [0.21, 0.21, 0.21, 0.18, 0.17, 0.16, 0.15, 0.15, 0.15, 0.15]
    p, y, days = _days(10, 3000, rates, seed=3)
    val = days < days[0] + 3
    once = Calibrator(method="platt", slope=1.0, intercept=0.0, base_rate=0.21)
    section, rolling = recalibration_report(
        p[val], y[val], days[val], p[~val], y[~val], days[~val], once=once, resamples=200
    )
    test_y = y[~val]
    assert section["window_days"] in (1, 2, 3, 5, 10, 0)
    ece = section["ece"]
    assert ece["rolling"]["estimate"] < ece["once"]["estimate"] - 0.01
    assert ece["once"]["estimate"] == pytest.approx(expected_calibration_error(test_y, p[~val]))
    assert ece["rolling"]["estimate"] == pytest.approx(expected_calibration_error(test_y, rolling))
    assert abs(rolling.mean() - test_y.mean()) < 0.015 < abs(p[~val].mean() - test_y.mean())
    assert [d["day"] for d in section["by_day"]][0] == str(days[0] + 3)
    assert section["differences"][0]["high"] < 0  # rolling - once, interval below 0
    assert section["differences"][0]["text"].startswith(
        "Recalibrated as outcomes arrive, the test ECE is lower than calibrated once"
    )
    json.dumps(section)


def test_window_is_chosen_on_validation_days_and_prefers_the_short_one_for_a_drift():
    p, y, days = _days(6, 3000, [0.30, 0.26, 0.22, 0.18, 0.14, 0.10], seed=4)
    window, table = choose_window(p, y, days)
    assert window == 1
    assert {row["window"] for row in table} == {1, 2, 3, 5, 10, 0}
    assert all(row["rows"] == 5 * 3000 for row in table)  # every day after the first
    assert choose_window(p[:3000], y[:3000], days[:3000]) == (0, [])  # one day: no choice


def test_a_window_too_small_keeps_the_fallback():
    p, y, days = _days(3, 50, [0.21] * 3, seed=5)
    fallback = Calibrator(method="temperature", slope=2.0)
    out, fits = rolling_recalibration(p, y, days, days == days[-1], window=1, fallback=fallback)
    assert fits[0]["method"] == "fallback: temperature"
    np.testing.assert_allclose(out[days == days[-1]], fallback.apply(p[days == days[-1]]))


def test_ece_intervals_resample_patients_and_are_reproducible():
    rng = np.random.default_rng(6)
    good = rng.random(3000)
    y = (rng.random(3000) < good).astype(int)  # calibrated by construction
    off = np.clip(good + 0.1, 0, 1)
    patients = rng.integers(0, 800, 3000)
    kwargs = dict(pairs=[("off", "good")], groups=patients, resamples=300, seed=1)
    result = ece_with_intervals(y, {"good": good, "off": off}, **kwargs)
    assert result == ece_with_intervals(y, {"good": good, "off": off}, **kwargs)
    for name, q in (("good", good), ("off", off)):
        e = result["ece"][name]
        assert e["estimate"] == pytest.approx(expected_calibration_error(y, q))
        assert e["low"] <= e["estimate"] <= e["high"]
    diff = result["differences"][0]
    assert diff["low"] > 0 and result["unit"] == "group"
    by_row = ece_with_intervals(y, {"good": good}, resamples=300, seed=1)
    assert by_row["unit"] == "row"


def test_recalibration_report_without_a_calibrator_has_once_and_rolling_only():
    p, y, days = _days(5, 500, [0.21, 0.21, 0.2, 0.18, 0.17], seed=7)
    val = days < days[0] + 2
    section, rolling = recalibration_report(
        p[val], y[val], days[val], p[~val], y[~val], days[~val], resamples=50
    )
    assert set(section["ece"]) == {"once", "rolling"}
    assert [d["a"] + "-" + d["b"] for d in section["differences"]] == ["rolling-once"]
    assert len(rolling) == (~val).sum() and len(section["by_day"]) == 3
    assert set(section["test_ece_by_window"]) == {"1", "2", "3", "5", "10", "0"}
