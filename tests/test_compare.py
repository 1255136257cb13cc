"""The Compare tab: its pure view functions, and the running app driven by gradio_client with
two real adapters (generative and classifier) trained here on the CPU from a tiny random
Llama (3 steps on synthetic data, once per session).

    .venv/bin/python -m pytest -q tests/test_compare.py
"""

from __future__ import annotations

import csv
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import free_port

from noshow.app import compare_baseline
from noshow.app.common import export_folder
from noshow.app.compare_baseline import (
    NO_FACTS_FOR_HYBRID,
    Baseline,
    BaselineCache,
    fit_baseline,
    score_baseline,
)
from noshow.app.compare_batch import (
    DISAGREEMENT_ROWS,
    BatchProgress,
    batch_compare,
    batch_figures,
    batch_summary,
    progress_html,
    select_eval_rows,
    write_predictions_csv,
)
from noshow.app.compare_cards import (
    answer_line,
    compare_summary,
    label_text,
    render_compare_html,
    render_what_if_html,
    statement_key,
    timing_line,
    what_if_summary,
)
from noshow.app.compare_input import (
    MAX_STATEMENT_CHARS,
    WHAT_IF_FACTS,
    CompareInputError,
    change_fact,
    fact_text,
    form_row,
    prepare_statement,
    render_form_statement,
    resolve_facts,
)
from noshow.app.compare_single import compare_statement, what_if
from noshow.data.examples import EXAMPLES

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app(tmp_path_factory, adapters):
    from gradio_client import Client

    from noshow.app.demo import build_demo
    from noshow.labels.store import LabelStore
    from noshow.training.jobs import JobManager

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
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, verbose=False)
    yield SimpleNamespace(demo=demo, client=client, store=store, ctx=demo.noshow_context, url=url)
    client.close()
    demo.close()
    store.close()


def table(value: dict) -> pd.DataFrame:
    """gradio_client returns a Dataframe output as {"headers": [...], "data": [[...]]}."""
    return pd.DataFrame(value["data"], columns=value["headers"])


# ----------------------------------------------------------------------------- input


def test_empty_or_whitespace_statement_is_refused_with_a_hint():
    for text in ("", "   \n\t ", None):
        with pytest.raises(CompareInputError, match="statement is empty"):
            prepare_statement(text)


def test_long_statement_is_cut_to_the_limit_with_a_notice():
    text, notice = prepare_statement("x" * 100_000)
    assert len(text) == MAX_STATEMENT_CHARS
    assert "100,000 characters" in notice and "first 2,000" in notice


def test_short_statement_is_trimmed_without_notice():
    assert prepare_statement("  A statement.  ") == ("A statement.", None)


def test_form_renders_the_same_statement_as_the_row_it_describes():
    example = EXAMPLES[1]  # a man with hypertension and 3 earlier appointments
    r = example.row
    text, row = render_form_statement(
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
    with pytest.raises(CompareInputError, match=message):
        form_row(**answers)


def test_examples_span_low_to_high_risk_and_render_distinct_statements():
    assert [ex.risk for ex in EXAMPLES][0] == "low" and EXAMPLES[-1].risk == "high"
    texts = [ex.statement for ex in EXAMPLES]
    assert len(set(texts)) == len(texts)
    assert all(50 < len(t) < MAX_STATEMENT_CHARS for t in texts)


@pytest.mark.slow
def test_examples_are_ordered_by_the_baseline_fitted_on_the_real_data(real_data_path):
    from noshow.data.load import load_data
    from noshow.data.splits import split_data
    from noshow.evaluation.baseline import baseline_predict, fit_tabular_baseline

    frame = split_data(load_data(real_data_path).frame, "time")
    train_rows = frame[frame["split"] == "train"].sample(25_000, random_state=0)
    model = fit_tabular_baseline(train_rows)
    p = baseline_predict(model, pd.DataFrame([ex.row for ex in EXAMPLES]))
    # Neighbouring examples may tie within noise of a 25k-row fit; the three tiers may not.
    assert p[0] < p[2] < p[3] and p[1] < p[4], p.round(3)
    assert max(p[:2]) < min(p[3:]), p.round(3)


# ----------------------------------------------------------------------------- scoring


class FakePredictor:
    """P fixed, or per statement from `by_text` (a function of the statement's text)."""

    def __init__(
        self, p, threshold: float, approach: str, answer=None, calibrator=None, hybrid=None
    ):
        self.p, self.threshold, self.approach, self.name = p, threshold, approach, "fake"
        self.answer = answer if answer is not None else "<b>Yes</b>"
        self.calibrator, self.hybrid = calibrator, hybrid

    def _p(self, statement: str) -> float:
        return self.p(statement) if callable(self.p) else self.p

    def predict_proba(self, statements):
        return [self._p(s) for s in statements]

    def predict_with_answer(self, statement):
        return self._p(statement), (self.answer if self.approach == "generative" else None)


def fake_loader(ps: dict, **kwargs):
    def load(path, expected_approach):
        p, t = ps[expected_approach]
        return FakePredictor(p, t, expected_approach, **kwargs)

    return load


def test_each_adapter_labels_at_its_own_threshold_and_disagreement_is_reported():
    loader = fake_loader({"generative": (0.6, 0.7), "classifier": (0.6, 0.5)})
    result = compare_statement("A statement.", "g", "c", loader=loader)
    assert result["generative"]["label"] == 0 and result["classifier"]["label"] == 1
    assert result["agree"] is False
    assert "disagree" in result["agree_text"]
    assert result["generative"]["generated"] == "<b>Yes</b>"
    assert result["classifier"]["generated"] is None


def test_compare_html_escapes_model_text_and_shows_both_probabilities():
    loader = fake_loader({"generative": (0.25, 0.5), "classifier": (0.75, 0.5)})
    html = render_compare_html(compare_statement("A statement.", "g", "c", loader=loader))
    assert "&lt;b&gt;Yes&lt;/b&gt;" in html and "<b>Yes</b>" not in html
    assert "0.250" in html and "0.750" in html


def test_card_says_briefly_which_weights_scored_and_how_long_it_took():
    loader = fake_loader({"generative": (0.25, 0.5), "classifier": (0.75, 0.5)})
    result = compare_statement("A statement.", "g", "c", loader=loader)
    result["generative"]["weights"] = "bf16 linears (fp32 activations), merged"
    result["classifier"]["weights"] = "4-bit NF4, adapter separate"
    html = render_compare_html(result)
    assert "(bf16 linears weights)" in html and "(4-bit NF4 weights)" in html
    assert html.count("Latency: ") == 2
    assert compare_summary(result)["generative"]["weights"].startswith("bf16 linears")


def test_timing_line_says_when_a_forward_was_shared_or_the_cache_answered():
    shared = {"latency_ms": 180.4, "queue_ms": 35.2, "batch_size": 4, "cached": False}
    assert timing_line(shared) == (
        "Latency: 180 ms, one forward for 4 statements; waited 35 ms for the model."
    )
    assert timing_line({"cached": True, "weights": "float32, merged"}) == (
        "Answered from the cache: this statement was scored before (float32 weights)."
    )


def test_each_card_says_where_its_threshold_came_from_and_the_base_rate():
    loader = fake_loader({"generative": (0.31, 0.27), "classifier": (0.2, 0.25)})
    result = compare_statement("A statement.", "g", "c", loader=loader, base_rate=0.2019)
    html = render_compare_html(result)
    assert html.count("where F1 peaked") == 2
    assert "Threshold 0.27: chosen on the adapter&#x27;s validation split, where F1 peaked." in html
    assert html.count("On average 20% of appointments are missed (train split).") == 2


@pytest.mark.parametrize(
    ("p", "word", "why"),
    [
        (
            0.31,
            "No",
            "so P = 0.31, between 0.27 and 0.50, gives the word No and the prediction No-show",
        ),
        (0.10, "No", "and here both say the same"),
        (0.80, "Yes", "and here both say the same"),
        (0.31, "Maybe", "here the model wrote neither Yes nor No"),
    ],
)
def test_generative_card_says_why_its_word_can_differ_from_the_prediction(p, word, why):
    slot = {"p": p, "threshold": 0.27, "label": int(p >= 0.27), "generated": word}
    assert why in answer_line(slot)
    assert 'The word is the model\'s most likely next word: "Yes" only when P > 0.50' in (
        answer_line(slot)
    )


def test_card_says_in_words_what_a_calibrated_probability_means():
    from noshow.evaluation.calibration import Calibrator

    scaler = Calibrator(method="temperature", slope=1.2, rows=1590)
    ps = {"generative": (0.25, 0.5), "classifier": (0.25, 0.5)}
    result = compare_statement("A statement.", "g", "c", loader=fake_loader(ps, calibrator=scaler))
    assert result["classifier"]["calibration"].startswith(
        "Calibrated on 1,590 validation appointments (temperature scaling)"
    )
    assert "of 100 appointments scored like this one, about 25 were missed" in (
        render_compare_html(result)
    )
    plain = compare_statement("A statement.", "g", "c", loader=fake_loader(ps))
    assert plain["classifier"]["calibration"].startswith("Not calibrated")
    assert compare_summary(plain)["classifier"]["calibration"].startswith("Not calibrated")


def _hybrid(params=None):
    from noshow.evaluation.hybrid import Hybrid

    params = {"max_leaf_nodes": 15} if params is None else params
    return Hybrid(1.0, 1.0, 0.0, rows=200, threshold=0.3, baseline_params=params)


def test_hybrid_card_blends_the_adapter_with_the_tuned_baseline_it_names():
    asked = []

    def tuned(params):
        asked.append(dict(params))
        return Baseline(model=AgeModel(), threshold=0.5, train_rows=100)

    loader = fake_loader({"generative": (0.5, 0.5), "classifier": (0.5, 0.5)}, hybrid=_hybrid())
    row = dict(_toy_frame().iloc[0], age=20)  # AgeModel: P 0.8 under 30
    result = compare_statement(
        "A statement.", "g", "c", loader=loader, row=row, tuned_baselines=tuned
    )
    slot = result["hybrid"]["classifier"]
    # sigmoid(1 * logit(0.5) + 1 * logit(0.8) + 0) = 0.8, labelled at the hybrid's threshold
    assert slot["p"] == pytest.approx(0.8) and slot["label"] == 1 and slot["threshold"] == 0.3
    assert asked == [{"max_leaf_nodes": 15}, {"max_leaf_nodes": 15}]  # one per adapter
    html = render_compare_html(result)
    assert "Hybrid: classifier + tabular" in html and "Hybrid: generative + tabular" in html
    assert "weights 1.00 (adapter) and 1.00 (tabular)" in html
    assert compare_summary(result)["hybrid"]["classifier"]["p"] == pytest.approx(0.8)

    # free text without facts: the card says so
    no_row = compare_statement(
        "A statement.",
        "g",
        "c",
        loader=loader,
        reason="No baseline: no facts.",
        tuned_baselines=tuned,
    )
    assert no_row["hybrid"]["classifier"]["error"] == (
        NO_FACTS_FOR_HYBRID.removesuffix(".") + " (no facts)."  # the baseline's reason, too
    )
    # a hybrid.json from before the settings were stored cannot be served: it says so
    old = fake_loader({"generative": (0.5, 0.5), "classifier": (0.5, 0.5)}, hybrid=_hybrid({}))
    stale = compare_statement("A statement.", "g", "c", loader=old, row=row, tuned_baselines=tuned)
    assert "does not name its tabular model's settings" in stale["hybrid"]["classifier"]["error"]
    # adapters without a hybrid.json get no hybrid card
    none = compare_statement(
        "A statement.",
        "g",
        "c",
        loader=fake_loader({"generative": (0.5, 0.5), "classifier": (0.5, 0.5)}),
        row=row,
        tuned_baselines=tuned,
    )
    assert none["hybrid"] == {} and "Hybrid:" not in render_compare_html(none)


def test_missing_adapter_folder_is_a_message_in_its_slot(tmp_path):
    result = compare_statement("A statement.", str(tmp_path / "nope"), "")
    assert "Adapter folder not found" in result["generative"]["error"]
    assert "No classifier adapter chosen" in result["classifier"]["error"]
    assert result["agree"] is None


def test_baseline_scores_rows_and_gives_the_reason_when_it_has_none():
    frame = _toy_frame()
    baseline = fit_baseline(frame)
    row = frame.iloc[0].to_dict()
    scored = score_baseline(baseline, row)
    expected = float(baseline.predict(pd.DataFrame([row]))[0])  # the model's own answer
    assert scored["p"] == pytest.approx(expected, abs=1e-12)
    assert scored["label"] == int(expected >= baseline.threshold)
    assert "where F1 peaked" in scored["threshold_source"]
    assert "needs the appointment's facts" in score_baseline(baseline, None)["error"]
    assert score_baseline(baseline, None, "No baseline: why.")["error"] == "No baseline: why."


def test_typed_statement_in_the_template_words_gets_its_facts_read_back():
    example = EXAMPLES[3]
    row, source, reason, truth = resolve_facts(example.statement, None)
    assert row == example.row and source == "read from the statement"
    assert reason is None and truth is None


def test_free_text_gets_a_reason_naming_the_facts_it_lacks_instead_of_a_baseline():
    row, source, reason, _ = resolve_facts("Patient seems unreliable.", None)
    assert row is None and source is None
    assert reason.startswith("No baseline: could not read the age, the gender, the weekday")
    assert reason.endswith("the SMS reminder and the earlier appointments from the text.")


def test_the_same_facts_in_other_words_are_read_for_the_baseline():
    # The statement: the template but for "He receives a welfare scholarship."
    example = next(ex for ex in EXAMPLES if ex.row["gender"] == "M" and ex.row["scholarship"])
    text = re.sub(
        r"He receives [^.]*scholarship\.", "He receives a welfare scholarship.", example.statement
    )
    assert text != example.statement
    row, source, reason, _ = resolve_facts(text, None)
    assert row == example.row and reason is None
    assert source == "read from the statement (in other words)"


def test_facts_from_the_form_or_a_row_count_while_the_text_is_unchanged():
    state = {"statement": "text", "row": {"age": 3}, "source": "record 7", "truth": 1}
    assert resolve_facts("text", state) == ({"age": 3}, "record 7", None, 1)
    assert resolve_facts("text edited", state)[0] is None


def test_data_set_row_shows_its_true_label_and_whether_each_model_matches_it():
    loader = fake_loader({"generative": (0.6, 0.5), "classifier": (0.1, 0.5)})
    result = compare_statement(
        "A statement.",
        "g",
        "c",
        loader=loader,
        truth=1,
        facts_source="record 5, test split",
        row=EXAMPLES[0].row,
    )
    html = render_compare_html(result)
    assert (
        "In the data set this patient <b>missed the appointment</b> (record 5, test split)" in html
    )
    assert "true label No-show" in html
    assert (
        html.count("✓ matches the data set") == 1 and html.count("✗ differs from the data set") >= 1
    )
    assert compare_summary(result)["truth"] == 1


def test_result_html_carries_the_statement_key_and_the_server_time():
    loader = fake_loader({"generative": (0.6, 0.5), "classifier": (0.1, 0.5)})
    result = compare_statement("A statement.", "g", "c", loader=loader)
    html = render_compare_html(result)
    assert f'data-key="{statement_key("A statement.")}"' in html
    assert "Answered in " in html and result["server_ms"] > 0


# ----------------------------------------------------------------------------- what-if


def sms_loader():
    """Fake adapters whose P depends on the reminder: 0.4 without, 0.3 with."""
    return fake_loader(
        {
            "generative": (lambda s: 0.3 if "an SMS" in s else 0.4, 0.35),
            "classifier": (lambda s: 0.25 if "an SMS" in s else 0.45, 0.35),
        }
    )


class SmsModel:
    """Stands in for the fitted pipeline: P(no-show) = 0.2 with a reminder, else 0.5."""

    classes_ = [0, 1]

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        p = np.where(features["sms_received"] == 1, 0.2, 0.5)
        return np.column_stack([1 - p, p])


def test_what_if_shows_each_models_prediction_before_and_after_one_change():
    row = EXAMPLES[2].row  # SMS reminder: yes
    baseline = Baseline(model=SmsModel(), threshold=0.3, train_rows=10)
    result = what_if(row, "SMS reminder", "no", "g", "c", baseline=baseline, source=sms_loader())
    assert (result["old"], result["new"]) == ("yes", "no")
    assert (
        "She got no SMS reminder." in result["after"] and result["before"] == EXAMPLES[2].statement
    )
    summary = what_if_summary(result)["models"]
    assert summary["generative"]["delta"] == pytest.approx(0.1)
    assert summary["classifier"]["delta"] == pytest.approx(0.2)
    assert summary["baseline"]["delta"] == pytest.approx(0.3)
    assert (summary["classifier"]["label_before"], summary["classifier"]["label_after"]) == (0, 1)
    html = render_what_if_html(result)
    assert "If <b>SMS reminder</b> were <b>no</b> instead of <b>yes</b>" in html
    assert "↑ +0.200" in html and "Shows up → No-show" in html
    assert "not the effect the change would have" in html


@pytest.mark.parametrize(
    ("fact", "value", "message"),
    [
        ("Days booked ahead", "-3", "Days booked ahead must be between 0 and 365"),
        ("Days booked ahead", "soon", "must be a whole number"),
        ("Weekday", "Funday", "Weekday must be one of"),
        ("SMS reminder", "maybe", "SMS reminder must be yes or no"),
        ("Earlier no-shows", "4", r"cannot exceed earlier appointments \(3\)"),
        ("SMS reminder", "yes", "SMS reminder is already yes"),
        ("Mood", "happy", "Pick a fact to change"),
        ("Age", "", "Type or pick the new value of Age"),
    ],
)
def test_what_if_refuses_a_bad_value_or_no_change_naming_the_fact(fact, value, message):
    row = {**EXAMPLES[2].row, "prior_appointments": 3}
    with pytest.raises(CompareInputError, match=message):
        what_if(row, fact, value, "g", "c", source=sms_loader())


def test_every_what_if_fact_changes_the_statement_it_names():
    from noshow.data.statements import parse_statement, render_statement

    row = {**EXAMPLES[4].row}
    for fact, (field_name, choices) in WHAT_IF_FACTS.items():
        value = next(c for c in choices if c.upper() != fact_text(row, fact).upper())
        if field_name == "prior_appointments":
            value = "5"  # at least the 2 missed ones
        changed = change_fact(row, fact, value)
        assert parse_statement(render_statement(changed))[field_name] == changed[field_name]
        assert {k for k in row if row[k] != changed[k]} == {field_name}, fact


def test_baseline_cache_fits_once_per_data_set_and_does_not_block_past_the_timeout(
    monkeypatch,
):
    calls = []
    release = threading.Event()

    def slow_fit(frame, params=None):
        calls.append((len(frame), params))
        release.wait(5)
        return Baseline(model=None, error="fitted" if params is None else "tuned")

    monkeypatch.setattr(compare_baseline, "fit_baseline", slow_fit)
    cache = BaselineCache()
    entry = SimpleNamespace(key="k", frame=_toy_frame())
    start = time.perf_counter()
    early = cache.get(entry, timeout=0.05)
    assert time.perf_counter() - start < 1
    assert "still being fitted" in early.error
    release.set()
    assert cache.get(entry).error == "fitted"
    assert cache.get(entry).error == "fitted"
    # a hybrid's tuned baseline is kept apart, one fit per settings
    assert cache.get(entry, params={"max_leaf_nodes": 15}).error == "tuned"
    assert cache.get(entry, params={"max_leaf_nodes": 15}).error == "tuned"
    n = len(entry.frame)
    assert calls == [(n, None), (n, {"max_leaf_nodes": 15})]


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
    rows, notes = select_eval_rows(_toy_frame(), max_rows=50)
    assert len(rows) == 50 and set(rows["split"]) == {"test"}
    assert rows["no_show"].nunique() == 2
    assert any("stratified sample of 50" in n for n in notes)


def test_gold_set_uses_clinician_labels_and_reports_count_and_changes():
    frame = _toy_frame()
    gold = {1000: 1 - int(frame.loc[0, "no_show"]), 1002: int(frame.loc[2, "no_show"]), 9: 1}
    rows, notes = select_eval_rows(frame, gold=gold)
    assert sorted(rows["record_id"]) == [1000, 1002]
    assert rows.set_index("record_id")["no_show"].to_dict() == {1000: gold[1000], 1002: gold[1002]}
    assert "2 clinician-labelled records" in notes[0] and "1 differ" in notes[0]
    assert "outside the test split" in notes[1]  # record 1000 is a training row


def test_gold_set_without_matching_records_is_refused_clearly():
    with pytest.raises(CompareInputError, match="None of the 1 clinician-labelled"):
        select_eval_rows(_toy_frame(), gold={5: 1})


def test_batch_without_any_model_is_refused_with_the_reasons():
    rows, _ = select_eval_rows(_toy_frame(), max_rows=20)
    with pytest.raises(CompareInputError, match="No generative adapter chosen"):
        batch_compare(rows, "", "", None)


class AgeModel:
    """Stands in for the fitted pipeline: P(no-show) = 0.8 under 30, else 0.2."""

    classes_ = [0, 1]

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        p = np.where(features["age"] < 30, 0.8, 0.2)
        return np.column_stack([1 - p, p])


def test_batch_metrics_and_disagreements_follow_the_scores():
    frame = _toy_frame()
    rows, _ = select_eval_rows(frame, max_rows=100)
    loader = fake_loader({"generative": (0.9, 0.5), "classifier": (0.1, 0.5)})
    baseline = Baseline(model=AgeModel(), threshold=0.5, train_rows=100)
    result = batch_compare(rows, "g", "c", baseline, loader=loader)
    metrics = result.metrics.set_index("model")
    assert list(metrics.index) == ["generative", "classifier", "tabular baseline"]
    assert metrics.loc["generative", "sensitivity"] == 1.0  # says no-show for everyone
    assert metrics.loc["classifier", "specificity"] == 1.0
    assert metrics.loc["tabular baseline", "ROC-AUC"] == 1.0  # the label is age < 30
    assert (result.disagreements["gap"] == 0.8).all()
    assert len(result.predictions) == len(rows)
    figures = batch_figures(result)
    assert set(figures) == {"roc", "calibration", "confusion"}
    assert metrics.loc["tabular baseline", "ROC-AUC 95% CI"] == "1.000-1.000"


def test_batch_stopped_during_its_last_chunk_fits_no_baseline():
    from noshow.inference.scheduler import Cancelled

    rows, _ = select_eval_rows(_toy_frame(), max_rows=20)
    loader = fake_loader({"generative": (0.9, 0.5), "classifier": (0.1, 0.5)})
    scored, fitted = [], []

    def stop_after_the_adapters():  # true once both adapters have scored every row
        return len(scored) and scored[-1].done == scored[-1].total

    def baseline():
        fitted.append(1)
        return Baseline(model=AgeModel(), threshold=0.5, train_rows=100)

    with pytest.raises(Cancelled):
        batch_compare(
            rows,
            "g",
            "c",
            baseline,
            loader=loader,
            on_progress=scored.append,
            should_stop=stop_after_the_adapters,
        )
    assert fitted == []


def test_batch_adds_each_hybrid_every_interval_and_the_calibration_before_and_after():
    from noshow.evaluation.calibration import Calibrator

    frame = _toy_frame()
    rows, _ = select_eval_rows(frame, max_rows=100)
    rng = np.random.default_rng(1)
    noisy = dict(zip(rows["statement"], rng.uniform(0.05, 0.95, len(rows)), strict=True))
    scaler = Calibrator(method="temperature", slope=2.0, rows=300)
    loader = fake_loader(
        {"generative": (noisy.get, 0.5), "classifier": (noisy.get, 0.5)},
        calibrator=scaler,
        hybrid=_hybrid(),
    )
    baseline = Baseline(model=AgeModel(), threshold=0.5, train_rows=100)
    result = batch_compare(
        rows, "g", "c", baseline, loader=loader, tuned_baselines=lambda params: baseline
    )
    metrics = result.metrics.set_index("model")
    assert list(metrics.index) == [
        "generative",
        "classifier",
        "tabular baseline",
        "hybrid (generative + tabular)",
        "hybrid (classifier + tabular)",
        "tuned tabular baseline",  # the tabular model the hybrids blend
    ]
    assert all(re.fullmatch(r"\d\.\d{3}-\d\.\d{3}", ci) for ci in metrics["ROC-AUC 95% CI"])
    # the hybrid leans on the baseline (the label is age < 30): it beats the noisy adapter
    assert (
        metrics.loc["hybrid (classifier + tabular)", "ROC-AUC"]
        > metrics.loc["classifier", "ROC-AUC"]
    )
    pairs = {(d["a"], d["b"]) for d in result.auc["differences"]}
    assert ("classifier", "baseline") in pairs and ("hybrid_classifier", "classifier") in pairs
    summary = batch_summary(result)
    assert "(95% CI " in summary and "ROC-AUC (" in summary  # the differences, in words
    preds = result.predictions
    np.testing.assert_allclose(
        scaler.apply(preds["p_classifier_uncalibrated"]), preds["p_classifier"], atol=1e-9
    )
    figure = batch_figures(result)["calibration"]
    assert [ax.get_title() for ax in figure.axes] == [
        "Before calibration (these rows)",
        "After calibration (these rows)",
    ]
    figure.canvas.draw()  # a half-width slot: before above after
    top, bottom = (ax.get_position().y0 for ax in figure.axes)
    assert top > bottom


def test_batch_reports_progress_and_an_eta_from_the_first_row():
    frame = _toy_frame()
    rows, _ = select_eval_rows(frame, max_rows=60)
    loader = fake_loader({"generative": (0.9, 0.5), "classifier": (0.1, 0.5)})
    seen: list[BatchProgress] = []
    fitted = []

    def baseline_when_needed():
        fitted.append(len(seen))
        return Baseline(model=AgeModel(), threshold=0.5, train_rows=100)

    result = batch_compare(
        rows, "g", "c", baseline_when_needed, loader=loader, on_progress=seen.append
    )
    scoring = [s for s in seen if s.phase.startswith("Scoring")]
    assert scoring[1].done == 1 and scoring[1].total == 120  # the first chunk is one row
    assert scoring[1].eta_s is not None and scoring[1].eta_s >= 0
    assert [s.done for s in scoring] == sorted(s.done for s in scoring)
    assert fitted and fitted[0] > len(scoring)  # the baseline was waited for last
    assert seen[-1].phase == "Computing metrics and intervals" and seen[-1].done == 120
    assert "tabular baseline" in list(result.metrics["model"])


def test_batch_stops_between_chunks_when_asked():
    from noshow.inference.scheduler import Cancelled

    rows, _ = select_eval_rows(_toy_frame(), max_rows=100)
    loader = fake_loader({"generative": (0.9, 0.5), "classifier": (0.1, 0.5)})
    seen: list[BatchProgress] = []
    with pytest.raises(Cancelled):
        batch_compare(
            rows,
            "g",
            "c",
            loader=loader,
            on_progress=seen.append,
            should_stop=lambda: any(s.done >= 3 for s in seen),
        )
    assert max(s.done for s in seen) < 200


def test_progress_panel_shows_rows_elapsed_time_and_time_left():
    html = progress_html(
        {"done": 30, "total": 400, "phase": "Scoring with the generative adapter"}
        | {"elapsed_s": 12.0, "eta_s": 150.0}
    )
    assert "30 of 400 scores (8%)" in html
    assert "12s so far, about 2m 30s left" in html
    assert "Closing the page or pressing Stop ends it" in html


def test_batch_speed_comes_from_this_machines_measurements_never_a_constant():
    from noshow.app.compare_batch import batch_speed_note

    unmeasured = batch_speed_note({"generative": None, "classifier": 0.2})
    assert "measured once both adapters have scored here" in unmeasured
    assert not re.search(r"\d", unmeasured)  # no figure it has not measured
    forwards = batch_speed_note({"generative": 0.5, "classifier": 1.0})
    assert "about 0.67 rows a second (their model time here; a batch also waits" in forwards
    batch = batch_speed_note({"generative": 0.5, "classifier": 1.0}, (200, 660.0))
    assert "about 0.3 rows a second (the last batch here: 200 rows in 11m 00s)" in batch


def test_predictions_csv_neutralises_spreadsheet_formulas_and_keeps_numbers(tmp_path):
    preds = pd.DataFrame(
        {
            "record_id": [1, 2],
            "label": [0, 1],
            "p_classifier": [0.25, 0.5],
            "statement": ['=HYPERLINK("http://x")', "-2+3 is plain text"],
        }
    )
    path = write_predictions_csv(preds, tmp_path)
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
    from noshow.inference.predict import load_predictor

    for approach in ("generative", "classifier"):
        slot = summary[approach]
        assert slot["error"] is None, slot["error"]
        # the adapter's own calibrated P for this statement, as a script gets it (another
        # process may pick another CPU form: bf16 and fp32 differ by up to 0.01)
        direct = load_predictor(getattr(adapters, approach)).predict_proba([EXAMPLES[0].statement])
        assert slot["p"] == pytest.approx(float(direct[0]), abs=0.02)
        assert slot["label"] == int(slot["p"] >= slot["threshold"])
        assert slot["cached"] or slot["latency_ms"] > 0
    assert isinstance(summary["generative"]["generated"], str)
    assert summary["agree"] == (summary["generative"]["label"] == summary["classifier"]["label"])
    assert f"{summary['classifier']['p']:.3f}" in html
    assert summary["server_ms"] > 0 and "Answered in " in html
    assert message == ""


def test_app_reads_a_typed_statements_facts_for_the_baseline(app, adapters):
    _, summary, _ = app.client.predict(
        EXAMPLES[3].statement, adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert summary["facts_source"] == "read from the statement"
    assert summary["row"] == EXAMPLES[3].row
    assert summary["baseline"]["error"] is None and 0 <= summary["baseline"]["p"] <= 1
    assert 0 < summary["base_rate"] < 1


def test_app_shows_each_adapters_hybrid_when_the_facts_are_known(app, adapters):
    from noshow.evaluation.hybrid import Hybrid
    from noshow.inference.predict import resolve_adapter_dir

    for approach in ("generative", "classifier"):  # the runs stored the tuned settings
        assert Hybrid.load(resolve_adapter_dir(getattr(adapters, approach))).baseline_params
    deadline = time.monotonic() + 120
    while True:  # the tuned baseline is refitted in the background on first use
        html, summary, _ = app.client.predict(
            EXAMPLES[3].statement, adapters.generative, adapters.classifier, api_name="/compare"
        )
        hybrids = summary["hybrid"]
        if all(h["p"] is not None for h in hybrids.values()) or time.monotonic() > deadline:
            break
        assert all("still being fitted" in h["error"] for h in hybrids.values() if h["p"] is None)
        time.sleep(1)
    assert set(hybrids) == {"generative", "classifier"}
    for approach, slot in hybrids.items():
        assert 0 <= slot["p"] <= 1, slot
        assert slot["label"] == int(slot["p"] >= slot["threshold"])
        assert f"Hybrid: {approach} + tabular" in html
    assert "Calibrated on " in html  # the adapters' P carry their calibration


def test_app_gives_free_text_a_reason_instead_of_a_baseline(app, adapters):
    html, summary, _ = app.client.predict(
        "Missed her last two visits; lives far away.",
        adapters.generative,
        adapters.classifier,
        api_name="/compare",
    )
    assert summary["baseline"]["p"] is None
    assert summary["baseline"]["error"].startswith("No baseline: could not read the age, the")
    assert summary["classifier"]["p"] is not None
    assert "No baseline: could not read the age" in html
    for slot in summary["hybrid"].values():  # the hybrids say which facts they lack too
        assert slot["p"] is None and "could not read the age" in slot["error"]


def test_app_scores_the_baseline_and_hybrids_of_a_statement_in_other_words(app, adapters):
    text = EXAMPLES[3].statement
    other = re.sub(r"(She|He) receives [^.]*\.", r"\1 receives a welfare scholarship.", text)
    other = other.replace(" got an SMS reminder", " was sent a text reminder")
    assert other != text
    deadline = time.monotonic() + 120
    while True:  # the tuned baseline behind the hybrids is fitted in the background
        _, summary, message = app.client.predict(
            other, adapters.generative, adapters.classifier, api_name="/compare"
        )
        if all(h["p"] is not None for h in summary["hybrid"].values()):
            break
        assert time.monotonic() < deadline, summary["hybrid"]
        time.sleep(1)
    assert summary["facts_source"] == "read from the statement (in other words)"
    assert summary["row"] == {**EXAMPLES[3].row, "scholarship": 1}
    assert summary["baseline"]["error"] is None and 0 <= summary["baseline"]["p"] <= 1
    assert message == ""  # an ordinary statement: no note


@pytest.mark.parametrize(
    ("text", "note"),
    [
        (
            "Uma mulher de 34 anos de Maria Ortiz tem uma consulta marcada na sexta-feira.",
            "The text does not look like English",
        ),
        (
            "The weather is lovely today and the cat sleeps on the warm windowsill.",
            "The text does not look like a statement about an appointment",
        ),
        (
            EXAMPLES[0].statement.replace("on a ", "on a Monday, not a ", 1),
            "The text contradicts itself on the weekday",
        ),
    ],
)
def test_app_notes_a_text_the_models_were_not_trained_for(app, adapters, text, note):
    html, summary, message = app.client.predict(
        text, adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert note in message and "the scores may mean little" in message.replace("their ", "the ")
    assert note not in html  # shown once, in the message box
    assert summary["classifier"]["p"] is not None  # still scored, with the note beside it


def test_app_scores_a_rendered_form_at_once_with_the_baseline(app, adapters):
    statement, html, summary, message = app.client.predict(
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
        adapters.generative,
        adapters.classifier,
        api_name="/compare_form",
    )
    assert statement == EXAMPLES[2].statement
    assert summary["statement"] == statement and summary["facts_source"] == "the form"
    assert summary["baseline"]["error"] is None, summary["baseline"]["error"]
    assert 0.0 <= summary["baseline"]["p"] <= 1.0
    # Edited, the text no longer follows the template; its facts are still read, in other
    # words, for the baseline.
    _, edited, _ = app.client.predict(
        statement + " Edited.", adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert edited["baseline"]["error"] is None
    assert edited["facts_source"] == "read from the statement (in other words)"


def test_app_scores_a_data_set_row_at_once_and_shows_its_true_label(app, adapters):
    entry = app.ctx.get_data(None)
    row = entry.frame[entry.frame["split"] == "test"].iloc[3]
    statement, html, summary, message = app.client.predict(
        int(row["record_id"]), adapters.generative, adapters.classifier, api_name="/compare_record"
    )
    assert statement == row["statement"]
    assert summary["truth"] == int(row["no_show"])
    assert summary["facts_source"] == f"record {int(row['record_id'])}, test split"
    assert summary["baseline"]["p"] is not None and summary["classifier"]["p"] is not None
    assert f"true label {label_text(int(row['no_show']))}" in html


def test_app_refuses_an_unknown_record_id_clearly(app, adapters):
    out = app.client.predict(
        123, adapters.generative, adapters.classifier, api_name="/compare_record"
    )
    assert "Record 123 is not in the loaded data" in out[-1]
    assert "Unexpected error" not in out[-1] and "LookupError" not in out[-1]
    assert "Pick a row from the Data tab&#x27;s table." in out[-1]  # this tab has no table


def test_app_what_if_scores_the_changed_statement_with_all_three_models(app, adapters):
    html, summary, message = app.client.predict(
        EXAMPLES[2].statement,
        "SMS reminder",
        "no",
        adapters.generative,
        adapters.classifier,
        api_name="/what_if",
    )
    assert message == "", message
    assert (summary["old"], summary["new"]) == ("yes", "no")
    assert "She got no SMS reminder." in summary["statement_after"]
    for model in ("generative", "classifier", "baseline"):
        slot = summary["models"][model]
        assert slot["error"] is None, slot["error"]
        assert slot["delta"] == pytest.approx(slot["p_after"] - slot["p_before"])
    assert "not the effect the change would have" in html


def test_app_what_if_on_free_text_says_it_needs_the_facts(app, adapters):
    _, summary, message = app.client.predict(
        "Some free text.",
        "Weekday",
        "Friday",
        adapters.generative,
        adapters.classifier,
        api_name="/what_if",
    )
    assert summary is None and "What-if needs the appointment" in message
    assert "could not read the age" in message  # which facts the text lacks


def test_app_answers_an_empty_statement_with_a_message(app, adapters):
    html, summary, message = app.client.predict(
        "   ", adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert summary is None and html == ""
    assert "statement is empty" in message
    # the buttons' own names: Compare, Score this record, Render and compare
    assert "press Compare" in message and "Render and compare" in message
    assert "Score this record" in message and "press Render." not in message


def test_compare_messages_name_the_buttons_on_the_page(app):
    # Messages once said "press Render" and "Press Run" for buttons called otherwise.
    import gradio as gr

    from noshow.app.compare_batch_panel import STOPPED_MESSAGE
    from noshow.app.compare_slots import load_slot, missing_adapters_text

    on_page = {b.value for b in app.demo.blocks.values() if isinstance(b, gr.Button)}
    with pytest.raises(CompareInputError) as empty:
        prepare_statement("  ")
    messages = [
        str(empty.value),
        STOPPED_MESSAGE,
        load_slot("", "generative")[1],
        missing_adapters_text({}),
    ]
    for message in messages:
        presses = [m.end() for m in re.finditer(r"\b[Pp]ress ", message)]
        assert presses, message
        for at in presses:
            named = [label for label in on_page if message[at:].startswith(label)]
            assert named, f"{message[at : at + 30]!r} names no button of {sorted(on_page)}"


def test_app_truncates_a_very_long_statement_with_a_notice(app, adapters):
    _, summary, message = app.client.predict(
        EXAMPLES[0].statement * 400, adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert "only the first 2,000" in message
    assert len(summary["statement"]) <= MAX_STATEMENT_CHARS
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


def test_app_batch_streams_progress_then_compares_on_a_small_test_split(app, adapters):
    job = app.client.submit(
        adapters.generative, adapters.classifier, 40, False, api_name="/compare_batch"
    )
    outputs = job.result(300)
    summary, metrics, roc, calibration, confusion, disagreements, csv_path = outputs[:7]
    net_plot, net_text, capacity, capacity_text, capacity_plot = outputs[7:12]
    subgroup_model, subgroups, subgroup_text, message = outputs[12:]
    *streamed, first, last = job.outputs()
    progress = [out[-1] for out in streamed]
    assert progress and all("noshow-batch-progress" in p for p in progress)
    # the clinic's parts come one update before the ROC, calibration and confusion figures
    assert 'class="noshow-batch-done"' in first[-1] and first[7] is not None  # net benefit
    assert last == outputs
    assert 'class="noshow-batch-done"' in message and "data-scores-ready-ms" in message
    # what a clinic acts on, from the same 40 rows (each figure: tests/test_clinical_eval.py)
    assert net_plot is not None and capacity_plot is not None
    assert "is the better policy" in net_text or "No model does better" in net_text
    capacity = table(capacity)
    assert list(capacity["model"])[-1] == "calling at random"
    assert [c for c in capacity.columns if c.startswith("top ")] == [
        "top 5% (2 calls)",
        "top 10% (4 calls)",
        "top 20% (8 calls)",
        "top 30% (12 calls)",
    ]
    assert capacity_text.startswith("**Capacity.** Calling the top 10% (4 of 40 appointments)")
    subgroups = table(subgroups)
    assert subgroup_model["value"] == "classifier"
    assert subgroups["group"].iloc[0] == "all appointments"
    assert {"women", "men", "first visits"} <= set(subgroups["group"])
    assert "ROC-AUC (95% CI)" in subgroups.columns and "**Subgroups of the" in subgroup_text
    share_table, share_text, _ = app.client.predict(25, api_name="/batch_capacity")
    assert "top 25% (10 calls)" in table(share_table).columns
    assert "Calling the top 25% (10 of 40 appointments)" in share_text
    other, _ = app.client.predict("generative", api_name="/batch_subgroups")
    assert len(table(other)) == len(subgroups)
    # the facts' average over 5 of the batch's rows (each fact: tests/test_compare_facts.py)
    facts_plot, facts_message = app.client.predict(
        adapters.generative, adapters.classifier, 5, api_name="/batch_facts"
    )
    assert facts_plot is not None and facts_message == "", facts_message
    metrics = table(metrics)
    assert list(metrics["model"]) == [
        "generative",
        "classifier",
        "tabular baseline",
        "hybrid (generative + tabular)",
        "hybrid (classifier + tabular)",
        "tuned tabular baseline",  # the tabular model the hybrids blend
        "stacked (generative + tabular)",
        "stacked (classifier + tabular)",
        "stacked (both adapters + tabular)",
    ]
    assert metrics["ROC-AUC 95% CI"].str.fullmatch(r"\d\.\d{3}-\d\.\d{3}").all()
    for column in ("ROC-AUC", "PR-AUC", "F1", "sensitivity", "specificity", "Brier"):
        assert column in metrics.columns
    assert (metrics["rows"] == 40).all()
    assert roc is not None and calibration is not None and confusion is not None
    assert len(table(disagreements)) == DISAGREEMENT_ROWS
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


def wait_for_batch_progress(job, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(re.search(r'data-done="[1-9]', str(out[-1])) for out in job.outputs()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no progress within {timeout} s: {job.outputs()[-1:]}")


def test_app_cancelled_batch_stops_its_job_and_a_session_runs_one_batch_at_a_time(
    app, adapters, monkeypatch
):
    from gradio_client import Client

    import noshow.app.compare_batch_panel as panel

    real_batch_compare = panel.batch_compare

    def held_after_first_progress(*args, on_progress, should_stop, **kwargs):
        """The real batch, slowed after its first scores (0.3 s a progress report, until it
        is cancelled): tiny adapters could otherwise finish the split before the second
        request arrives. Slowed, not held: a held batch would keep its queue slot forever
        if the refusal never came."""

        def report(progress):
            on_progress(progress)
            if progress.done and not should_stop():
                time.sleep(0.3)

        return real_batch_compare(*args, on_progress=report, should_stop=should_stop, **kwargs)

    monkeypatch.setattr(panel, "batch_compare", held_after_first_progress)
    service = app.ctx.adapters
    client = Client(app.url, verbose=False)
    try:
        job = client.submit(
            adapters.generative, adapters.classifier, 5000, False, api_name="/compare_batch"
        )
        wait_for_batch_progress(job)
        [running] = service.jobs.running()
        # the same session asks for a second batch: refused while the first runs
        out = client.predict(
            adapters.generative, adapters.classifier, 20, False, api_name="/compare_batch"
        )
        assert "already have a batch comparison running" in out[-1]
        job.cancel()
        stopped = time.time()
        assert running.wait(5), "the batch did not stop within 5 s of the cancel"
        assert running.state == "cancelled" and running.done < running.total
        assert time.time() - stopped < 5
    finally:
        client.close()


def test_app_compare_stays_fast_on_the_cpu(app, adapters):
    app.client.predict("warm up", adapters.generative, adapters.classifier, api_name="/compare")
    _, summary, _ = app.client.predict(
        "A statement never scored before.",
        adapters.generative,
        adapters.classifier,
        api_name="/compare",
    )
    # Tiny models: the scoring itself is milliseconds, so a slow path shows up clearly.
    assert summary["generative"]["latency_ms"] < 500
    assert summary["classifier"]["latency_ms"] < 500


def test_demo_app_scores_listed_adapters_and_refuses_pasted_paths(adapters, tmp_path):
    from gradio_client import Client

    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

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
    path = write_predictions_csv(pd.DataFrame({"record_id": [1], "statement": ["a"]}))
    try:
        assert Path(path).parent == export_folder()
    finally:
        Path(path).unlink()


def test_label_tab_alone_suggests_with_the_adapter_service(adapters, tmp_path):
    """The tabs stand on their own: a Blocks with only the Label tab reaches the adapters
    through `ctx.adapters` (no Compare tab components or loaders in `ctx.extras`)."""
    import gradio as gr
    from gradio_client import Client

    from noshow.app.common import UIContext
    from noshow.app.label_tab import build_label_tab
    from noshow.labels.store import LabelStore
    from noshow.training.jobs import JobManager

    store = LabelStore(tmp_path / "labels.sqlite")
    ctx = UIContext(
        jobs=JobManager(runs_dir=adapters.runs),
        store=store,
        runs_dir=adapters.runs,
        data_source="synthetic",
    )
    ctx.extras["shipped_dir"] = tmp_path / "no-shipped"
    with gr.Blocks() as demo:
        ctx.data_key = gr.State(None)
        build_label_tab(ctx)
    assert set(ctx.extras) == {"shipped_dir"}
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = client.predict(
            "Dr Alone",
            "random",
            True,
            adapters.generative,
            adapters.classifier,
            api_name="/label_next",
        )
        suggestions = out[2]  # item, fields, suggestions, ...
        assert "generative: P(no-show) = " in suggestions
        assert "classifier: P(no-show) = " in suggestions
        client.close()
    finally:
        demo.close()
        store.close()


def test_a_capacity_redraw_waits_for_its_batch_s_last_update():
    """The batch's second update carries capacity and subgroups too: a redraw asked for
    while it is on its way waits until it has gone, so it lands after it (not under it)."""
    import threading
    from types import SimpleNamespace

    from noshow.app.compare_clinical_panel import _after_report, report_sent, report_starting

    parts = SimpleNamespace(reporting={})
    sent = report_starting(parts, "session-1")
    redrawn = threading.Event()
    waiter = threading.Thread(target=lambda: (_after_report(parts, "session-1"), redrawn.set()))
    waiter.start()
    _after_report(parts, "session-2")  # another page's redraw does not wait
    assert not redrawn.wait(0.3), "the redraw went before the batch's last update"
    report_sent(parts, "session-1", sent)
    assert redrawn.wait(5) and parts.reporting == {}
    waiter.join(5)
