"""A clinic's own no-show rate wherever a user scores: `AdapterPredictor.predict_proba(...,
clinic_rate=)`, scripts/score.py --clinic-rate, and the Compare tab's number box (its cards,
by hand-computed odds, and the running app through gradio_client). The adapters are the tiny
ones trained here on the CPU (conftest's `adapters`).

    .venv/bin/python -m pytest -q tests/test_clinic_rate.py
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from noshow.app.compare_cards import compare_summary, render_compare_html
from noshow.app.compare_clinic import NO_RATE, adjust_to_clinic, parse_clinic_rate
from noshow.app.compare_input import CompareInputError
from noshow.app.compare_slots import BASELINE, BOTH, CLASSIFIER, GENERATIVE, HYBRID, STACKED
from noshow.data.examples import EXAMPLES
from noshow.evaluation.calibration import Calibrator
from noshow.evaluation.recalibration import shift_prior
from noshow.inference.predict import PredictError, load_predictor

STATEMENTS = [ex.statement for ex in EXAMPLES[:3]]


def _odds(p):
    p = np.asarray(p, dtype=float)
    return p / (1 - p)


@pytest.fixture(scope="module")
def predictor(adapters):
    return load_predictor(adapters.classifier, device="cpu")


# ----------------------------------------------------------------------------- the API


def test_predict_proba_at_a_clinic_rate_scales_the_odds(predictor):
    rate = predictor.calibrator.base_rate
    assert 0 < rate < 1  # the run recorded its validation rows' no-show rate
    p = predictor.predict_proba(STATEMENTS)
    q = predictor.predict_proba(STATEMENTS, clinic_rate=0.1)
    np.testing.assert_allclose(_odds(q) / _odds(p), (0.1 / 0.9) / (rate / (1 - rate)))
    np.testing.assert_allclose(q, shift_prior(p, rate, 0.1))
    assert predictor.predict_proba(STATEMENTS, clinic_rate=None) == p  # unchanged without it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clinic_rate": 15}, "for 15% write 0.15"),
        ({"clinic_rate": 0.0}, "strictly between 0 and 1"),
        ({"clinic_rate": 0.2, "calibrated": False}, "leave calibrated=True"),
    ],
)
def test_predict_proba_refuses_a_bad_clinic_rate_clearly(predictor, kwargs, message):
    with pytest.raises(PredictError, match=message):
        predictor.predict_proba(STATEMENTS, **kwargs)


def test_an_adapter_without_a_recorded_rate_says_so(adapters):
    old = load_predictor(adapters.generative, device="cpu")
    old.calibrator = replace(old.calibrator, base_rate=None)  # a calibration.json before it
    with pytest.raises(PredictError, match="does not record the no-show rate"):
        old.predict_proba(STATEMENTS, clinic_rate=0.1)
    assert len(old.predict_proba(STATEMENTS)) == 3


# ----------------------------------------------------------------------------- the CLI


def test_score_script_writes_p_at_the_clinic_rate_and_keeps_the_predictions(
    adapters, predictor, tmp_path, capsys
):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "score.py"
    spec = importlib.util.spec_from_file_location("noshow_score_cli", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    main = cli.main

    source = tmp_path / "statements.csv"
    pd.DataFrame({"id": [1, 2, 3], "Statement": STATEMENTS}).to_csv(source, index=False)
    plain, clinic = tmp_path / "plain.csv", tmp_path / "clinic.csv"
    assert main([adapters.classifier, str(source), "-o", str(plain), "--device", "cpu"]) == 0
    args = [adapters.classifier, str(source), "-o", str(clinic), "--clinic-rate", "0.1"]
    assert main([*args, "--device", "cpu"]) == 0
    a, b = pd.read_csv(plain), pd.read_csv(clinic)
    assert list(b.columns) == ["id", "Statement", "p_no_show", "predicted_no_show"]
    np.testing.assert_allclose(a["p_no_show"], predictor.predict_proba(STATEMENTS), atol=1e-6)
    rate = predictor.calibrator.base_rate
    np.testing.assert_allclose(b["p_no_show"], shift_prior(a["p_no_show"], rate, 0.1), atol=1e-6)
    assert (a["predicted_no_show"] == b["predicted_no_show"]).all()  # the threshold moved too
    assert main([adapters.classifier, str(source), "--clinic-rate", "15"]) == 2
    assert "for 15% write 0.15" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the cards


def _slot(p, threshold):
    return {"p": p, "threshold": threshold, "label": int(p >= threshold), "calibration": "x"}


def test_cards_move_p_and_threshold_by_hand_computed_odds():
    result = {
        "statement": "A statement.",
        GENERATIVE: _slot(0.2, 0.25),
        CLASSIFIER: _slot(0.5, 0.3),
        BASELINE: _slot(0.5, 0.4),
        HYBRID: {GENERATIVE: _slot(0.5, 0.3)},
        STACKED: {BOTH: _slot(0.8, 0.3)},
        "base_rate": 0.25,
    }
    predictors = {
        GENERATIVE: SimpleNamespace(calibrator=Calibrator(base_rate=0.2)),
        CLASSIFIER: SimpleNamespace(calibrator=Calibrator()),  # no rate recorded
    }
    adjust_to_clinic(result, 0.1, predictors)
    # generative, 20% -> 10%: odds x 4/9. P 0.2 (odds 1/4) -> 1/9 -> 0.1;
    # threshold 0.25 (odds 1/3) -> 4/27 -> 4/31; still below it: the label stays 0.
    gen = result[GENERATIVE]
    assert gen["p"] == pytest.approx(0.1) and gen["threshold"] == pytest.approx(4 / 31)
    assert gen["p_unadjusted"] == 0.2 and gen["label"] == 0 and "calibration" not in gen
    assert "Adjusted to your clinic's no-show rate of 10.0%" in gen["clinic"]
    assert "calibrated on appointments missed at 20.0%" in gen["clinic"]
    assert result[CLASSIFIER]["p"] == 0.5 and result[CLASSIFIER]["clinic"] == NO_RATE
    # baseline at the train split's 25%: odds x (1/9) / (1/3) = 1/3; P 0.5 -> 0.25
    assert result[BASELINE]["p"] == pytest.approx(0.25)
    assert result[HYBRID][GENERATIVE]["p"] == pytest.approx(4 / 13)  # odds 1 -> 4/9
    assert result[STACKED][BOTH]["p"] == pytest.approx(16 / 25)  # the generative's rate
    html = render_compare_html(result)
    assert html.count('class="noshow-clinic"') == 5
    summary = compare_summary(result)
    assert summary["clinic_rate"] == 0.1
    assert summary[GENERATIVE]["p_unadjusted"] == 0.2
    assert summary[STACKED][BOTH]["p"] == pytest.approx(16 / 25)


def test_no_clinic_rate_leaves_every_card_as_it_was():
    result = {GENERATIVE: _slot(0.2, 0.25), "base_rate": 0.25}
    before = json.dumps(result)
    adjust_to_clinic(result, None, {GENERATIVE: SimpleNamespace(calibrator=Calibrator())})
    assert result.pop("clinic_rate") is None and json.dumps(result) == before


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), (0.15, 0.15), ("0.2", 0.2), ("15%", 0.15), (" 12,5 % ", 0.125)],
)
def test_the_box_reads_a_share_or_nothing(value, expected):
    assert parse_clinic_rate(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (15, "for 15% write 0.15"),
        (1, "strictly"),
        ("0%", "strictly between 0% and 100%, got '0%'"),
        ("150%", "strictly between 0% and 100%, got '150%'"),
        ("abc%", "like 15%"),
    ],
)
def test_the_box_refuses_a_percentage_or_a_certainty_with_a_hint(value, message):
    with pytest.raises(CompareInputError, match=message):
        parse_clinic_rate(value)


# ----------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def app(tiny_adapters_client):
    return tiny_adapters_client


def test_app_cards_say_the_p_at_your_clinics_rate(app, adapters):
    statement = EXAMPLES[3].statement  # in the template's words: the baseline has its facts
    _, plain, _ = app.predict(
        statement, adapters.generative, adapters.classifier, api_name="/compare"
    )
    html, summary, message = app.predict(
        statement, adapters.generative, adapters.classifier, 0.1, api_name="/compare"
    )
    assert message == "" and summary["clinic_rate"] == 0.1
    for approach in (GENERATIVE, CLASSIFIER):
        rate = Calibrator.load(f"{getattr(adapters, approach)}/adapter").base_rate
        slot = summary[approach]
        assert slot["p_unadjusted"] == pytest.approx(plain[approach]["p"])
        assert slot["p"] == pytest.approx(float(shift_prior(plain[approach]["p"], rate, 0.1)))
        assert slot["label"] == plain[approach]["label"]
    base = summary[BASELINE]
    assert base["p"] == pytest.approx(
        float(shift_prior(base["p_unadjusted"], summary["base_rate"], 0.1))
    )
    assert html.count("Adjusted to your clinic&#x27;s no-show rate of 10.0%") >= 3


def test_app_refuses_a_clinic_rate_written_as_a_percentage_and_keeps_the_cards(app, adapters):
    html, summary, message = app.predict(
        EXAMPLES[0].statement, adapters.generative, adapters.classifier, 15, api_name="/compare"
    )
    assert "for 15% write 0.15" in message
    # the cards and summary are left as they were (an update with no value), not emptied
    assert html["__type__"] == "update" and "value" not in html.get("props", html)
    assert summary == {"__type__": "update"}


def test_app_what_if_shows_both_p_at_the_clinic_rate(app, adapters):
    statement = EXAMPLES[3].statement
    args = (statement, "SMS reminder", "yes", adapters.generative, adapters.classifier)
    _, plain, _ = app.predict(*args, api_name="/what_if")
    _, clinic, message = app.predict(*args, 0.1, api_name="/what_if")
    assert message == ""
    rate = Calibrator.load(f"{adapters.classifier}/adapter").base_rate
    for key in ("p_before", "p_after"):
        expected = float(shift_prior(plain["models"][CLASSIFIER][key], rate, 0.1))
        assert clinic["models"][CLASSIFIER][key] == pytest.approx(expected)
