"""Facts read from a statement in other words (`noshow.data.facts`), tested against literal
strings: every fact read where it can be read with confidence, the ones it cannot named,
contradictions found, and notes for a text that is not English or not about an appointment.

    .venv/bin/python -m pytest -q tests/test_facts.py
"""

from __future__ import annotations

import pytest

from noshow.data.facts import read_facts, text_notes
from noshow.data.load import load_data
from noshow.data.statements import STATEMENT_FIELDS, render_statement

TEMPLATE = (
    "A 67-year-old man from Maria Ortiz has an appointment on a Thursday, booked 9 days ahead "
    "at 3 p.m. He has hypertension; no diabetes, no alcoholism and no disability. He receives "
    "the Bolsa Família welfare scholarship. He got an SMS reminder. He missed 1 of 4 earlier "
    "appointments."
)
ROW = {
    "gender": "M",
    "age": 67,
    "neighbourhood": "MARIA ORTIZ",
    "weekday": "Thursday",
    "lead_days": 9,
    "booking_hour": 15,
    "hypertension": 1,
    "diabetes": 0,
    "alcoholism": 0,
    "handicap": 0,
    "scholarship": 1,
    "sms_received": 1,
    "prior_appointments": 4,
    "prior_no_shows": 1,
}


def test_the_template_in_other_words_reads_the_same_row():
    # The sentence: "He receives a welfare scholarship." for the template's words.
    text = TEMPLATE.replace(
        "He receives the Bolsa Família welfare scholarship.", "He receives a welfare scholarship."
    )
    assert read_facts(TEMPLATE).row == ROW
    assert read_facts(text).row == ROW


def test_a_paraphrase_with_its_own_phrasing_reads_every_fact():
    text = (
        "A 62-year-old man has a Monday appointment that was booked two weeks in advance at "
        "14:30. He is diabetic but has no high blood pressure, no alcoholism and no "
        "disability. He gets welfare support. He was not sent an SMS. He missed 2 of his 5 "
        "previous visits."
    )
    reading = read_facts(text)
    assert reading.unread == [] and reading.conflicts == []
    assert reading.row == {
        "gender": "M",
        "age": 62,
        "neighbourhood": "",
        "weekday": "Monday",
        "lead_days": 14,
        "booking_hour": 14,
        "hypertension": 0,
        "diabetes": 1,
        "alcoholism": 0,
        "handicap": 0,
        "scholarship": 1,
        "sms_received": 0,
        "prior_appointments": 5,
        "prior_no_shows": 2,
    }


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("She has no hypertension and has diabetes.", {"hypertension": 0, "diabetes": 1}),
        ("He does not have diabetes, with a disability.", {"diabetes": 0, "handicap": 1}),
        ("She is non-diabetic.", {"diabetes": 0}),
        ("He has 2 disabilities and no other conditions.", {"handicap": 2, "alcoholism": 0}),
        ("No reminder was sent.", {"sms_received": 0}),
        ("She was texted a reminder.", {"sms_received": 1}),
        ("Booked the same day at noon.", {"lead_days": 0, "booking_hour": 12}),
        ("Booked a week ahead at 7:05 am.", {"lead_days": 7, "booking_hour": 7}),
        ("Her appointment is at 9 a.m.", {}),  # the appointment's hour: not the booking's
        ("A baby girl under 1 year old.", {"age": 0, "gender": "F"}),
        ("This is his first visit.", {"prior_appointments": 0, "prior_no_shows": 0}),
        ("She attended both earlier appointments.", {"prior_appointments": 2}),
        ("She kept all three previous appointments.", {"prior_appointments": 3}),
    ],
)
def test_each_phrasing_reads_its_fact(text, facts):
    read = read_facts(text).facts
    assert {key: read.get(key) for key in facts} == facts
    if not facts:
        assert "booking_hour" not in read


def test_facts_it_cannot_read_are_named_and_no_row_is_guessed():
    reading = read_facts("She often forgets; lives far away.")
    assert reading.row is None and reading.facts == {"gender": "F"}
    assert reading.why_not() == (
        "could not read the age, the weekday, how many days ahead it was booked, the booking "
        "hour, the conditions (hypertension, diabetes, ...), the welfare scholarship, the SMS "
        "reminder and the earlier appointments from the text"
    )
    one_short = read_facts(TEMPLATE.replace(" He got an SMS reminder.", ""))
    assert one_short.row is None and one_short.unread == ["the SMS reminder"]


def test_a_text_that_contradicts_itself_reads_neither_value():
    text = TEMPLATE.replace("on a Thursday", "on a Thursday (or Monday)").replace(
        "He missed 1 of 4", "She missed 5 of 4"
    )
    reading = read_facts(text)
    assert reading.row is None and "weekday" not in reading.facts
    assert reading.conflicts == [
        "the gender (he and she)",
        "the weekday (Monday and Thursday)",
        "the earlier appointments (5 missed of 4)",
    ]
    assert "the earlier appointments" not in reading.unread
    assert read_facts("A 130-year-old woman.").conflicts == ["the age (130)"]
    assert reading.why_not().startswith("the text contradicts itself on the gender (he and she)")


def test_notes_say_when_a_text_is_not_english_not_an_appointment_or_contradictory():
    assert text_notes(TEMPLATE) == []
    assert text_notes("Booked 3 days ahead.") == []  # short: nothing to say
    pt = "Uma mulher de 34 anos de Maria Ortiz tem uma consulta marcada na sexta-feira."
    assert text_notes(pt) == [
        "The text does not look like English; the adapters learned from English statements, "
        "so their scores may mean little."
    ]
    assert "does not look like English" in text_notes("Пациентка пропустила прием у врача.")[0]
    weather = "The weather is lovely today and the cat sleeps on the warm windowsill."
    assert text_notes(weather) == [
        "The text does not look like a statement about an appointment; the scores may mean little."
    ]
    both = text_notes(TEMPLATE.replace("He got an SMS", "She got an SMS"))
    assert both == [
        "The text contradicts itself on the gender (he and she); the scores may mean little."
    ]


def test_every_rendered_statement_reads_back_through_other_words_alone():
    # The tolerant reader alone, without parse_statement: 20,000 distinct rows of the real
    # file read back exactly when this was written; synthetic rows here.
    frame = load_data("synthetic").frame.head(400)
    for _, row in frame.iterrows():
        want = {key: row[key] for key in STATEMENT_FIELDS}
        want["neighbourhood"] = str(want["neighbourhood"]).upper()
        got = read_facts(render_statement(row)).row
        assert got is not None and got == {
            k: v if isinstance(v, str) else int(v) for k, v in want.items()
        }
