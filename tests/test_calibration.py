"""The validation-fitted scaler: it recovers a known distortion, picks temperature or Platt by
cross-validated log-loss, maps literal points to hand-computed values (the ends included),
keeps the ranking intact, round-trips through the adapter folder, and draws the before/after
reliability diagram.
Run with `.venv/bin/python -m pytest -q tests/test_calibration.py`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from noshow.evaluation.calibration import (
    CALIBRATION_FILE,
    CalibrationError,
    Calibrator,
    calibration_error,
    fit_calibrator,
    plot_reliability,
    reliability_table,
)
from noshow.evaluation.metrics import expected_calibration_error

REPO = Path(__file__).resolve().parents[1]


def _distorted(n: int, seed: int, slope: float, shift: float = 0.0):
    """Labels drawn from a true P, and a reported P = sigmoid(logit(true) / slope - shift):
    the scaler that undoes it is slope `slope`, intercept `slope * shift`."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-1.4, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    reported = 1 / (1 + np.exp(-(true_logit / slope - shift)))
    return y, reported


def test_temperature_recovers_an_overconfident_model():
    y, p = _distorted(20000, seed=0, slope=0.5)  # logits doubled: overconfident
    cal = fit_calibrator(p, y)
    assert cal.method == "temperature"  # no shift: Platt's intercept does not earn its place
    assert cal.slope == pytest.approx(0.5, rel=0.05) and cal.intercept == 0.0
    assert cal.temperature == pytest.approx(2.0, rel=0.05)
    assert expected_calibration_error(y, cal.apply(p)) < expected_calibration_error(y, p) / 3
    assert cal.log_loss_after < cal.log_loss_before
    assert cal.cv_log_loss["temperature"] < cal.cv_log_loss["identity"]
    # on validation rows each fold's scaler did not see
    assert cal.cv_ece < expected_calibration_error(y, p) / 3


def test_platt_is_chosen_when_the_average_is_off():
    y, p = _distorted(20000, seed=1, slope=1.0, shift=0.8)  # P too low across the board
    cal = fit_calibrator(p, y)
    assert cal.method == "platt"
    assert cal.slope == pytest.approx(1.0, abs=0.06)
    assert cal.intercept == pytest.approx(0.8, abs=0.08)
    assert cal.apply(p).mean() == pytest.approx(y.mean(), abs=0.01)


def test_identity_is_kept_for_a_calibrated_model():
    y, p = _distorted(20000, seed=2, slope=1.0)
    assert fit_calibrator(p, y).method == "identity"


def test_calibration_gives_hand_computed_values():
    # logit(.25) = -ln 3, so slope 2 gives odds (1/3)^2 = 1/9: P = .1 (and .9 for .75).
    platt = Calibrator(method="platt", slope=2.0, intercept=0.0)
    np.testing.assert_allclose(platt.apply([0.25, 0.5, 0.75]), [0.1, 0.5, 0.9], atol=1e-12)
    # An intercept of ln 3 cancels logit(.25) = -ln 3: P = .5.
    assert Calibrator(method="platt", intercept=math.log(3)).apply(0.25) == pytest.approx(0.5)
    # Temperature 2 halves the logit: logit(.1) = -ln 9 -> -ln 3, P = .25 (and .75 for .9).
    temperature = Calibrator(method="temperature", slope=0.5)
    np.testing.assert_allclose(temperature.apply([0.1, 0.9]), [0.25, 0.75], atol=1e-12)
    # 0 and 1 are clipped to EPS = 1e-7 first: slope 2 squares the odds, P = 1e-14 (1 - 1e-14).
    np.testing.assert_allclose(platt.apply([0.0, 1.0]), [1e-14, 1 - 1e-14], rtol=0, atol=1e-15)


def test_calibrated_probabilities_stay_finite_and_keep_the_ranking():
    y, p = _distorted(3000, seed=3, slope=0.3, shift=-2.0)
    p[:4] = [0.0, 1.0, 1e-12, 1 - 1e-12]  # the ends, and values inside the clipping margin
    for method in ("temperature", "platt"):
        q = fit_calibrator(p, y, method=method).apply(p)
        assert q.dtype == np.float64 and np.isfinite(q).all()
        inner = slice(4, None)  # rows away from the clipping: strictly the same order
        np.testing.assert_array_equal(np.argsort(q[inner]), np.argsort(p[inner]))
        assert roc_auc_score(y, q) == pytest.approx(roc_auc_score(y, p))


def test_invert_gives_back_the_raw_probability():
    y, p = _distorted(2000, seed=5, slope=1.6, shift=0.3)
    calibrator = fit_calibrator(p, y, method="platt")
    np.testing.assert_allclose(calibrator.invert(calibrator.apply(p)), p, atol=1e-9)
    assert Calibrator().invert([0.2]).tolist() == [0.2]  # identity


def test_scaler_round_trips_through_the_adapter_folder(tmp_path):
    y, p = _distorted(4000, seed=4, slope=0.7, shift=0.3)
    cal = fit_calibrator(p, y)
    path = cal.save(tmp_path)
    assert path == tmp_path / CALIBRATION_FILE
    stored = json.loads(path.read_text())
    assert stored["fitted_on"] == "validation" and stored["rows"] == 4000
    loaded = Calibrator.load(tmp_path)
    assert loaded == cal
    np.testing.assert_array_equal(loaded.apply(p), cal.apply(p))
    assert Calibrator.from_dict(cal.to_dict()) == cal
    assert not list(tmp_path.glob(".calibration-*"))  # no temporary file left behind


def test_loading_applies_without_scipy_or_sklearn(tmp_path):
    Calibrator(method="platt", slope=2.0, intercept=0.0).save(tmp_path)
    code = (
        "import sys; from noshow.evaluation.calibration import Calibrator; "
        f"p = Calibrator.load({str(tmp_path)!r}).apply([0.25, 0.5]); "
        "assert abs(p[0] - 0.1) < 1e-12 and abs(p[1] - 0.5) < 1e-12, p; "  # odds (1/3)^2
        "print(sorted(m for m in ('scipy', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_an_adapter_without_a_file_gets_identity(tmp_path):
    cal = Calibrator.load(tmp_path)
    assert cal.method == "identity"
    np.testing.assert_array_equal(cal.apply([0.1, 0.7]), [0.1, 0.7])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "does not hold a calibration"),
        ('{"method": "isotonic"}', "unknown calibration method"),
        ('{"method": "platt", "slope": -1.0}', "slope must be a positive number"),
        ('{"format_version": 9, "method": "platt"}', "format 9 is not known"),
    ],
)
def test_a_broken_calibration_file_says_what_is_wrong(tmp_path, content, message):
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(CalibrationError, match=message):
        Calibrator.load(tmp_path)


@pytest.mark.parametrize(
    ("p", "y", "message"),
    [
        ([0.2, 0.3], [0, 0], "both classes"),
        ([0.2, 0.3], [0, 1, 1], "differ in length"),
        ([0.2, 1.3], [0, 1], "between 0 and 1"),
        ([0.2, 0.3], [0, 2], "labels must be 0"),
    ],
)
def test_fit_refuses_bad_input_clearly(p, y, message):
    with pytest.raises(CalibrationError, match=message):
        fit_calibrator(p, y)


def test_fit_refuses_an_unknown_method():
    with pytest.raises(CalibrationError, match="method must be auto or one of"):
        fit_calibrator([0.2, 0.8], [0, 1], method="isotonic")


def test_reliability_table_on_crafted_bins():
    y, p = [0, 0, 1, 1, 1], [0.05, 0.15, 0.12, 0.95, 1.0]
    table = reliability_table(y, p)
    assert table["low"] == [0.0, 0.1, 0.9]
    assert table["rows"] == [1, 2, 2]
    assert table["mean_p"] == pytest.approx([0.05, 0.135, 0.975])
    assert table["observed"] == pytest.approx([0.0, 0.5, 1.0])
    # ECE = (1 x .05 + 2 x .365 + 2 x .025) / 5
    assert calibration_error(table) == pytest.approx((0.05 + 0.73 + 0.05) / 5)
    assert calibration_error(table) == pytest.approx(expected_calibration_error(y, p))


def test_reliability_plot_shows_before_and_after_with_ece(tmp_path):
    y, p = _distorted(2000, seed=5, slope=0.5)
    cal = fit_calibrator(p, y)
    fig = plot_reliability({"classifier": (y, p, cal.apply(p))})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    before, after = ([t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes)
    assert before[1] == f"classifier (ECE {expected_calibration_error(y, p):.3f})"
    assert after[1] == f"classifier (ECE {expected_calibration_error(y, cal.apply(p)):.3f})"
    assert fig.axes[0].get_title() == "Before calibration (test)"
    fig.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
