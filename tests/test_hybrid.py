"""The hybrid blend: fitted on validation rows only, it recovers known weights, beats each
input when they carry different signal, gives hand-computed P for literal (extreme) inputs,
and round-trips as JSON. That it never sees test labels is checked end to end in
test_evaluate.py (test_evaluate_run_fits_nothing_on_test_labels).
Run with `.venv/bin/python -m pytest -q tests/test_hybrid.py`."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from noshow.evaluation.hybrid import HYBRID_FILE, Hybrid, HybridError, fit_hybrid


def _two_views(n: int, seed: int):
    """Labels from two independent signals; the "adapter" sees one, the "baseline" the other,
    each P exactly calibrated for its own signal's logit."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    z = -1.5 + 1.0 * a + 0.6 * b
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    return y, sig(-1.5 + a), sig(-1.5 + b), rng.integers(0, n // 2, n)


def test_blend_recovers_the_weights_and_beats_each_input():
    y, pa, pb, patients = _two_views(30000, seed=0)
    hybrid = fit_hybrid(pa, pb, y, groups=patients)
    # z = -1.5 + a + .6 b with logit(pa) = a - 1.5, logit(pb) = b - 1.5 (weights ~attenuated
    # by the missing other signal, not far off)
    assert hybrid.w_adapter == pytest.approx(1.0, abs=0.15)
    assert hybrid.w_baseline == pytest.approx(0.6, abs=0.12)
    assert hybrid.rows == 30000
    cv = hybrid.cv_auc
    assert cv["hybrid"] > cv["adapter"] + 0.02 and cv["hybrid"] > cv["baseline"] + 0.02
    y2, pa2, pb2, _ = _two_views(20000, seed=1)
    assert roc_auc_score(y2, hybrid.predict(pa2, pb2)) > roc_auc_score(y2, pa2) + 0.02


def test_predictions_match_hand_computed_values_for_extreme_inputs():
    hybrid = Hybrid(w_adapter=3.0, w_baseline=2.0, intercept=-1.0)
    p = hybrid.predict([0.0, 1.0, 0.5, 1e-12, 0.25], [0.0, 1.0, 0.5, 1 - 1e-12, 0.75])
    # Inputs are clipped to [EPS, 1 - EPS], EPS = 1e-7, so logit(0) = ln(1e-7 / (1 - 1e-7)).
    # 0 and 0: z = 5 logit(EPS) - 1 ~ -81.6, P ~ 4e-36, i.e. 0 (and 1 for 1 and 1).
    # .5 and .5: both logits 0, z = -1, P = 1 / (1 + e).
    # 1e-12 and 1 - 1e-12: z = -3 L + 2 L - 1 = logit(EPS) - 1, P ~ EPS / e (odds EPS / e).
    # .25 and .75: logits -ln 3 and ln 3, z = -ln 3 - 1, P = 1 / (1 + 3e).
    odds = 1e-7 / (1 - 1e-7) / math.e
    expected = [0.0, 1.0, 1 / (1 + math.e), odds / (1 + odds), 1 / (1 + 3 * math.e)]
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-15)


def test_cross_validation_keeps_a_patient_in_one_fold():
    from noshow.evaluation.hybrid import _folds

    y, _, _, patients = _two_views(2000, seed=2)
    fold = _folds(y, patients, 5, seed=0)
    for patient in np.unique(patients):
        assert len(set(fold[patients == patient])) == 1


def test_hybrid_round_trips_as_json(tmp_path):
    y, pa, pb, _ = _two_views(3000, seed=3)
    hybrid = fit_hybrid(pa, pb, y)
    path = hybrid.save(tmp_path)
    assert path == tmp_path / HYBRID_FILE
    assert json.loads(path.read_text())["fitted_on"] == "validation"
    loaded = Hybrid.load(tmp_path)
    assert loaded == hybrid
    np.testing.assert_array_equal(loaded.predict(pa, pb), hybrid.predict(pa, pb))
    assert Hybrid.load(tmp_path / "elsewhere") is None
    # the tuned baseline's settings travel with it, so a server can refit that baseline
    tuned = replace(hybrid, baseline_params={"max_leaf_nodes": 15, "n_iter": 80})
    tuned.save(tmp_path)
    assert Hybrid.load(tmp_path).baseline_params == {"max_leaf_nodes": 15, "n_iter": 80}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "cannot read"),
        ('"text"', "does not hold a hybrid"),
        ('{"w_adapter": 1.0}', "malformed"),
        ('{"w_adapter": 1.0, "w_baseline": "NaN", "intercept": 0}', "finite"),
        ('{"format_version": 2, "w_adapter": 1, "w_baseline": 1, "intercept": 0}', "format 2"),
    ],
)
def test_a_broken_hybrid_file_says_what_is_wrong(tmp_path, content, message):
    (tmp_path / HYBRID_FILE).write_text(content)
    with pytest.raises(HybridError, match=message):
        Hybrid.load(tmp_path)


@pytest.mark.parametrize(
    ("pa", "pb", "y", "message"),
    [
        ([0.2, 0.3], [0.1, 0.4], [1, 1], "both classes"),
        ([0.2, 0.3], [0.1], [0, 1], "differ in length"),
        ([0.2, 1.3], [0.1, 0.4], [0, 1], "between 0 and 1"),
        ([0.2, 0.3], [0.1, 0.4], [0, 3], "labels must be 0"),
    ],
)
def test_fit_refuses_bad_input_clearly(pa, pb, y, message):
    with pytest.raises(HybridError, match=message):
        fit_hybrid(pa, pb, y)


def test_predict_refuses_mismatched_scores():
    with pytest.raises(HybridError, match="differ in length"):
        Hybrid(1.0, 1.0, 0.0).predict([0.2, 0.3], [0.4])


def test_an_adapter_with_a_broken_hybrid_file_still_scores_without_its_hybrid(adapters, tmp_path):
    import shutil
    import warnings

    from noshow.inference.predict import load_predictor, resolve_adapter_dir

    folder = tmp_path / "adapter"
    shutil.copytree(resolve_adapter_dir(adapters.classifier), folder)
    assert Hybrid.load(folder) is not None  # the run stored one
    (folder / HYBRID_FILE).write_text("{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = load_predictor(folder)
    assert predictor.hybrid is None
    assert any("hybrid left out" in str(w.message) for w in caught)
    # The hybrid is a separate card: the adapter's own P is the one it gives with the file intact.
    (p,) = predictor.predict_proba(["A statement."])
    (intact,) = load_predictor(resolve_adapter_dir(adapters.classifier)).predict_proba(
        ["A statement."]
    )
    assert p == pytest.approx(intact, abs=1e-6)
