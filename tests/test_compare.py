"""The Compare tab: its pure view functions, and the running app driven by gradio_client with
two real adapters (generative and classifier) trained here on the CPU from a tiny random
Llama (3 steps on synthetic data, once per session).

    .venv/bin/python -m pytest -q tests/test_compare.py
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import free_port

from noshow.examples import EXAMPLES
from noshow.ui import compare_views as cv

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app(tmp_path_factory, adapters):
    from gradio_client import Client

    from noshow.jobs import JobManager
    from noshow.labels import LabelStore
    from noshow.ui.app import build_demo

    store = LabelStore(tmp_path_factory.mktemp("compare-labels") / "labels.sqlite")
    demo = build_demo(
        jobs=JobManager(runs_dir=adapters.runs),
        store=store,
        runs_dir=adapters.runs,
        shipped_dir=tmp_path_factory.mktemp("no-shipped"),  # only this test's adapters
        data_source="synthetic",
    )
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield SimpleNamespace(demo=demo, client=client, store=store, ctx=demo.noshow_context)
    client.close()
    demo.close()
    store.close()


def table(value: dict) -> pd.DataFrame:
    """gradio_client returns a Dataframe output as {"headers": [...], "data": [[...]]}."""
    return pd.DataFrame(value["data"], columns=value["headers"])


# ----------------------------------------------------------------------------- input


def test_empty_or_whitespace_statement_is_refused_with_a_hint():
    for text in ("", "   \n\t ", None):
        with pytest.raises(cv.CompareInputError, match="statement is empty"):
            cv.prepare_statement(text)


def test_long_statement_is_cut_to_the_limit_with_a_notice():
    text, notice = cv.prepare_statement("x" * 100_000)
    assert len(text) == cv.MAX_STATEMENT_CHARS
    assert "100,000 characters" in notice and "first 2,000" in notice


def test_short_statement_is_trimmed_without_notice():
    assert cv.prepare_statement("  A statement.  ") == ("A statement.", None)


def test_form_renders_the_same_statement_as_the_row_it_describes():
    example = EXAMPLES[1]  # a man with hypertension and 3 earlier appointments
    r = example.row
    text, row = cv.render_form_statement(
        age=r["age"],
        gender=r["gender"],
        lead_days=r["lead_days"],
        sms_received=bool(r["sms_received"]),
        scholarship=bool(r["scholarship"]),
        conditions=["hypertension"],
        prior_appointments=r["prior_appointments"],
        prior_no_shows=r["prior_no_shows"],
        weekday=r["weekday"],
        neighbourhood=r["neighbourhood"].lower(),
        booking_hour=r["booking_hour"],
    )
    assert text == example.statement
    assert row == r


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"prior_appointments": 1, "prior_no_shows": 2}, "cannot exceed"),
        ({"weekday": "Funday"}, "Weekday must be one of"),
        ({"age": -3}, "Age must be between 0 and 115"),
        ({"gender": "X"}, "Gender must be F or M"),
        ({"lead_days": 2.5}, "Lead days must be a whole number"),
        ({"conditions": ["flu"]}, "Unknown condition"),
    ],
)
def test_form_refuses_impossible_answers_naming_the_field(answers, message):
    with pytest.raises(cv.CompareInputError, match=message):
        cv.form_row(**answers)


def test_examples_span_low_to_high_risk_and_render_distinct_statements():
    assert [ex.risk for ex in EXAMPLES][0] == "low" and EXAMPLES[-1].risk == "high"
    texts = [ex.statement for ex in EXAMPLES]
    assert len(set(texts)) == len(texts)
    assert all(50 < len(t) < cv.MAX_STATEMENT_CHARS for t in texts)


@pytest.mark.slow
def test_examples_are_ordered_by_the_baseline_fitted_on_the_real_data(real_data_path):
    from noshow.data import load_data, split_data
    from noshow.evaluate import baseline_predict, fit_tabular_baseline

    frame = split_data(load_data(real_data_path).frame, "time")
    train_rows = frame[frame["split"] == "train"].sample(25_000, random_state=0)
    model = fit_tabular_baseline(train_rows)
    p = baseline_predict(model, pd.DataFrame([ex.row for ex in EXAMPLES]))
    # Neighbouring examples may tie within noise of a 25k-row fit; the three tiers may not.
    assert p[0] < p[2] < p[3] and p[1] < p[4], p.round(3)
    assert max(p[:2]) < min(p[3:]), p.round(3)


# ----------------------------------------------------------------------------- scoring


class FakePredictor:
    def __init__(self, p: float, threshold: float, approach: str):
        self.p, self.threshold, self.approach, self.name = p, threshold, approach, "fake"

    def predict_proba(self, statements):
        return [self.p] * len(statements)

    def predict_with_answer(self, statement):
        return self.p, ("<b>Yes</b>" if self.approach == "generative" else None)


def fake_loader(ps: dict[str, tuple[float, float]]):
    def load(path, expected_approach):
        p, t = ps[expected_approach]
        return FakePredictor(p, t, expected_approach)

    return load


def test_each_adapter_labels_at_its_own_threshold_and_disagreement_is_reported():
    loader = fake_loader({"generative": (0.6, 0.7), "classifier": (0.6, 0.5)})
    result = cv.compare_statement("A statement.", "g", "c", loader=loader)
    assert result["generative"]["label"] == 0 and result["classifier"]["label"] == 1
    assert result["agree"] is False
    assert "disagree" in result["agree_text"]
    assert result["generative"]["generated"] == "<b>Yes</b>"
    assert result["classifier"]["generated"] is None


def test_compare_html_escapes_model_text_and_shows_both_probabilities():
    loader = fake_loader({"generative": (0.25, 0.5), "classifier": (0.75, 0.5)})
    html = cv.render_compare_html(cv.compare_statement("A statement.", "g", "c", loader=loader))
    assert "&lt;b&gt;Yes&lt;/b&gt;" in html and "<b>Yes</b>" not in html
    assert "0.250" in html and "0.750" in html


def test_card_says_briefly_which_weights_scored_and_how_long_it_took():
    loader = fake_loader({"generative": (0.25, 0.5), "classifier": (0.75, 0.5)})
    result = cv.compare_statement("A statement.", "g", "c", loader=loader)
    result["generative"]["weights"] = "bf16 linears (fp32 activations), merged"
    result["classifier"]["weights"] = "4-bit NF4, adapter separate"
    html = cv.render_compare_html(result)
    assert "(bf16 linears weights)" in html and "(4-bit NF4 weights)" in html
    assert html.count("Latency: ") == 2
    assert cv.compare_summary(result)["generative"]["weights"].startswith("bf16 linears")


def test_missing_adapter_folder_is_a_message_in_its_slot(tmp_path):
    result = cv.compare_statement("A statement.", str(tmp_path / "nope"), "")
    assert "Adapter folder not found" in result["generative"]["error"]
    assert "No classifier adapter chosen" in result["classifier"]["error"]
    assert result["agree"] is None


def test_baseline_scores_rows_and_says_why_it_cannot_score_free_text():
    frame = _toy_frame()
    baseline = cv.fit_baseline(frame)
    row = frame.iloc[0].to_dict()
    scored = cv.score_baseline(baseline, row)
    assert 0 <= scored["p"] <= 1 and scored["label"] in (0, 1)
    assert "needs the tabular fields" in cv.score_baseline(baseline, None)["error"]


def test_baseline_cache_fits_once_per_data_set_and_does_not_block_past_the_timeout(
    monkeypatch,
):
    calls = []
    release = threading.Event()

    def slow_fit(frame):
        calls.append(len(frame))
        release.wait(5)
        return cv.Baseline(model=None, error="fitted")

    monkeypatch.setattr(cv, "fit_baseline", slow_fit)
    cache = cv.BaselineCache()
    entry = SimpleNamespace(key="k", frame=_toy_frame())
    start = time.perf_counter()
    early = cache.get(entry, timeout=0.05)
    assert time.perf_counter() - start < 1
    assert "still being fitted" in early.error
    release.set()
    assert cache.get(entry).error == "fitted"
    assert cache.get(entry).error == "fitted"
    assert calls == [len(entry.frame)]


# ----------------------------------------------------------------------------- batch


def _toy_frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ages = rng.integers(0, 90, n)
    frame = pd.DataFrame(
        {
            "record_id": np.arange(1000, 1000 + n),
            "age": ages,
            "gender": rng.choice(["F", "M"], n),
            "neighbourhood": rng.choice(["CENTRO", "BONFIM"], n),
            "scholarship": rng.integers(0, 2, n),
            "hypertension": 0,
            "diabetes": 0,
            "alcoholism": 0,
            "handicap": 0,
            "sms_received": rng.integers(0, 2, n),
            "lead_days": rng.integers(0, 40, n),
            "weekday": "Monday",
            "booking_hour": 9,
            "prior_appointments": 0,
            "prior_no_shows": 0,
            "no_show": (ages < 30).astype(int),
            "split": np.array(["train", "validation", "test", "test"] * (n // 4)),
        }
    )
    frame["statement"] = [f"Patient {i}" for i in range(n)]
    return frame


def test_eval_rows_are_the_test_split_capped_with_both_classes():
    rows, notes = cv.select_eval_rows(_toy_frame(), max_rows=50)
    assert len(rows) == 50 and set(rows["split"]) == {"test"}
    assert rows["no_show"].nunique() == 2
    assert any("stratified sample of 50" in n for n in notes)


def test_gold_set_uses_clinician_labels_and_reports_count_and_changes():
    frame = _toy_frame()
    gold = {1000: 1 - int(frame.loc[0, "no_show"]), 1002: int(frame.loc[2, "no_show"]), 9: 1}
    rows, notes = cv.select_eval_rows(frame, gold=gold)
    assert sorted(rows["record_id"]) == [1000, 1002]
    assert rows.set_index("record_id")["no_show"].to_dict() == {1000: gold[1000], 1002: gold[1002]}
    assert "2 clinician-labelled records" in notes[0] and "1 differ" in notes[0]
    assert "outside the test split" in notes[1]  # record 1000 is a training row


def test_gold_set_without_matching_records_is_refused_clearly():
    with pytest.raises(cv.CompareInputError, match="None of the 1 clinician-labelled"):
        cv.select_eval_rows(_toy_frame(), gold={5: 1})


def test_batch_without_any_model_is_refused_with_the_reasons():
    rows, _ = cv.select_eval_rows(_toy_frame(), max_rows=20)
    with pytest.raises(cv.CompareInputError, match="No generative adapter chosen"):
        cv.batch_compare(rows, "", "", None)


class AgeModel:
    """Stands in for the fitted pipeline: P(no-show) = 0.8 under 30, else 0.2."""

    classes_ = [0, 1]

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        p = np.where(features["age"] < 30, 0.8, 0.2)
        return np.column_stack([1 - p, p])


def test_batch_metrics_and_disagreements_follow_the_scores():
    frame = _toy_frame()
    rows, _ = cv.select_eval_rows(frame, max_rows=100)
    loader = fake_loader({"generative": (0.9, 0.5), "classifier": (0.1, 0.5)})
    baseline = cv.Baseline(model=AgeModel(), threshold=0.5, train_rows=100)
    result = cv.batch_compare(rows, "g", "c", baseline, loader=loader)
    metrics = result.metrics.set_index("model")
    assert list(metrics.index) == ["generative", "classifier", "tabular baseline"]
    assert metrics.loc["generative", "sensitivity"] == 1.0  # says no-show for everyone
    assert metrics.loc["classifier", "specificity"] == 1.0
    assert metrics.loc["tabular baseline", "ROC-AUC"] == 1.0  # the label is age < 30
    assert (result.disagreements["gap"] == 0.8).all()
    assert len(result.predictions) == len(rows)
    figures = cv.batch_figures(result)
    assert set(figures) == {"roc", "calibration", "confusion"}


def test_predictions_csv_neutralises_spreadsheet_formulas_and_keeps_numbers(tmp_path):
    preds = pd.DataFrame(
        {
            "record_id": [1, 2],
            "label": [0, 1],
            "p_classifier": [0.25, 0.5],
            "statement": ['=HYPERLINK("http://x")', "-2+3 is plain text"],
        }
    )
    path = cv.write_predictions_csv(preds, tmp_path)
    assert path.suffix == ".csv" and list(tmp_path.iterdir()) == [path]  # no temp file left
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["record_id", "label", "p_classifier", "statement"]
    assert rows[1] == ["1", "0", "0.25", '\'=HYPERLINK("http://x")']
    assert rows[2][3] == "'-2+3 is plain text"


# ----------------------------------------------------------------------------- the app


def test_app_compares_one_statement_with_both_adapters(app, adapters):
    html, summary, message = app.client.predict(
        EXAMPLES[0].statement, adapters.generative, adapters.classifier, api_name="/compare"
    )
    for approach in ("generative", "classifier"):
        slot = summary[approach]
        assert slot["error"] is None, slot["error"]
        assert 0.0 <= slot["p"] <= 1.0
        assert slot["label"] == int(slot["p"] >= slot["threshold"])
        assert slot["latency_ms"] > 0
    assert isinstance(summary["generative"]["generated"], str)
    assert summary["agree"] == (summary["generative"]["label"] == summary["classifier"]["label"])
    assert "baseline" not in summary  # free text has no tabular fields
    assert f"{summary['classifier']['p']:.3f}" in html
    assert message == ""


def test_app_adds_the_baseline_for_a_rendered_form(app, adapters):
    statement, _ = app.client.predict(
        52,
        "F",
        14,
        True,
        False,
        ["hypertension"],
        0,
        0,
        "Tuesday",
        "MARIA ORTIZ",
        9,
        api_name="/render_form_statement",
    )
    assert statement == EXAMPLES[2].statement
    _, summary, _ = app.client.predict(
        statement, adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert summary["baseline"]["error"] is None, summary["baseline"]["error"]
    assert 0.0 <= summary["baseline"]["p"] <= 1.0
    # Edit the text and the form's row no longer describes it: no baseline.
    _, edited, _ = app.client.predict(
        statement + " Edited.", adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert "baseline" not in edited


def test_app_scores_a_data_set_row_by_record_id(app, adapters):
    entry = app.ctx.get_data(None)
    row = entry.frame[entry.frame["split"] == "test"].iloc[3]
    statement, message = app.client.predict(int(row["record_id"]), api_name="/compare_record")
    assert statement == row["statement"] and "test split" in message
    _, summary, _ = app.client.predict(
        statement, adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert summary["baseline"]["p"] is not None


def test_app_refuses_an_unknown_record_id_clearly(app):
    statement, message = app.client.predict(123, api_name="/compare_record")
    assert "Record 123 is not in the loaded data" in message


def test_app_answers_an_empty_statement_with_a_message(app, adapters):
    html, summary, message = app.client.predict(
        "   ", adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert summary is None and html == ""
    assert "statement is empty" in message


def test_app_truncates_a_very_long_statement_with_a_notice(app, adapters):
    _, summary, message = app.client.predict(
        EXAMPLES[0].statement * 400, adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert "only the first 2,000" in message
    assert len(summary["statement"]) <= cv.MAX_STATEMENT_CHARS
    assert summary["classifier"]["p"] is not None


def test_app_refuses_an_adapter_in_the_wrong_slot_or_a_missing_folder(app, adapters, tmp_path):
    _, summary, _ = app.client.predict(
        "A statement.", adapters.classifier, str(tmp_path / "gone"), api_name="/compare"
    )
    assert "is a classifier adapter, not a generative one" in summary["generative"]["error"]
    assert "Adapter folder not found" in summary["classifier"]["error"]
    assert summary["generative"]["p"] is None and summary["agree"] is None


def test_app_lists_the_trained_adapters_in_their_slots(app, adapters):
    gen, clf, note = app.client.predict(None, None, api_name="/compare_adapters")
    assert gen["value"] == adapters.generative and clf["value"] == adapters.classifier
    assert [path for _, path in gen["choices"]] == [adapters.generative]
    assert note == ""


def test_app_batch_compares_on_a_small_test_split(app, adapters):
    out = app.client.predict(
        adapters.generative, adapters.classifier, 40, False, api_name="/compare_batch"
    )
    summary, metrics, roc, calibration, confusion, disagreements, csv_path, message = out
    assert message == "", message
    metrics = table(metrics)
    assert list(metrics["model"]) == ["generative", "classifier", "tabular baseline"]
    for column in ("ROC-AUC", "PR-AUC", "F1", "sensitivity", "specificity", "Brier"):
        assert column in metrics.columns
    assert (metrics["rows"] == 40).all()
    assert roc is not None and calibration is not None and confusion is not None
    assert len(table(disagreements)) == cv.DISAGREEMENT_ROWS
    preds = pd.read_csv(csv_path)
    assert len(preds) == 40
    assert {"p_generative", "p_classifier", "p_baseline", "statement"} <= set(preds.columns)
    assert "Test split" in summary


def test_app_batch_on_the_gold_set_counts_clinician_labels(app, adapters):
    entry = app.ctx.get_data(None)
    picked = entry.frame[entry.frame["split"] == "test"].head(6)
    for rid, text, label in zip(
        picked["record_id"], picked["statement"], picked["no_show"], strict=True
    ):
        app.store.submit(int(rid), 1 - int(label), "Dr Gold", statement=text)
    out = app.client.predict(
        adapters.generative, adapters.classifier, 1000, True, api_name="/compare_batch"
    )
    summary, metrics = out[0], table(out[1])
    assert "6 clinician-labelled records" in summary and "6 differ" in summary
    assert (metrics["rows"] == 6).all()


def test_app_compare_stays_fast_on_the_cpu(app, adapters):
    app.client.predict("warm up", adapters.generative, adapters.classifier, api_name="/compare")
    _, summary, _ = app.client.predict(
        EXAMPLES[3].statement, adapters.generative, adapters.classifier, api_name="/compare"
    )
    # Tiny models: the scoring itself is milliseconds, so a slow path shows up clearly.
    assert summary["generative"]["latency_ms"] < 500
    assert summary["classifier"]["latency_ms"] < 500


def test_listed_only_loader_refuses_folders_that_are_not_listed(tmp_path):
    from noshow.predict import PredictError

    load = cv.listed_only_loader(lambda: ["/srv/adapters/a"])
    with pytest.raises(PredictError, match="only the listed adapters"):
        load(str(tmp_path), expected_approach="classifier")


def test_demo_app_scores_listed_adapters_and_refuses_pasted_paths(adapters, tmp_path):
    from gradio_client import Client

    from noshow.jobs import JobManager
    from noshow.ui.app import build_demo

    demo = build_demo(
        jobs=JobManager(runs_dir=adapters.runs),
        store=None,
        runs_dir=adapters.runs,
        shipped_dir=tmp_path / "no-shipped",
        demo_mode=True,
        data_source="synthetic",
    )
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        _, summary, _ = client.predict(
            "A statement.", adapters.generative, str(tmp_path), api_name="/compare"
        )
        assert summary["generative"]["p"] is not None
        assert "only the listed adapters" in summary["classifier"]["error"]
        client.close()
    finally:
        demo.close()


def test_predictions_csv_is_written_under_the_temp_dir_gradio_serves():
    path = cv.write_predictions_csv(pd.DataFrame({"record_id": [1], "statement": ["a"]}))
    try:
        assert Path(path).parent == cv.export_folder()
    finally:
        Path(path).unlink()
