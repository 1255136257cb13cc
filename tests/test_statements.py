"""Row -> statement text (golden strings) and the prompt helpers."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from noshow.data.statements import (
    QUESTION,
    STATEMENT_FIELDS,
    SYSTEM_PROMPT,
    TEMPLATE_VERSION,
    StatementParseError,
    format_neighbourhood,
    generative_messages,
    parse_statement,
    render_classifier_input,
    render_generative_prompt,
    render_statement,
    render_statements,
)

BASE = {
    "gender": "F",
    "age": 34,
    "neighbourhood": "JARDIM DA PENHA",
    "weekday": "Friday",
    "lead_days": 12,
    "booking_hour": 8,
    "hypertension": 1,
    "diabetes": 1,
    "alcoholism": 0,
    "handicap": 0,
    "scholarship": 1,
    "sms_received": 1,
    "prior_appointments": 3,
    "prior_no_shows": 1,
}


def row(**changes) -> dict:
    return {**BASE, **changes}


GOLDEN = {
    "woman_with_history": (
        row(),
        "A 34-year-old woman from Jardim da Penha has an appointment on a Friday, booked 12 "
        "days ahead at 8 a.m. She has hypertension and diabetes; no alcoholism and no "
        "disability. She receives the Bolsa Família welfare scholarship. She got an SMS "
        "reminder. She missed 1 of 3 earlier appointments.",
    ),
    "man_same_day_no_sms_first_visit": (
        row(
            gender="M",
            age=56,
            neighbourhood="SÃO PEDRO",
            weekday="Monday",
            lead_days=0,
            booking_hour=14,
            hypertension=0,
            diabetes=0,
            scholarship=0,
            sms_received=0,
            prior_appointments=0,
            prior_no_shows=0,
        ),
        "A 56-year-old man from São Pedro has an appointment on a Monday, booked the same "
        "day at 2 p.m. He has no hypertension, diabetes, alcoholism or disability. He "
        "receives no welfare scholarship. He got no SMS reminder. This is his first "
        "appointment on record.",
    ),
    "baby_one_day_ahead_at_noon": (
        row(
            gender="M",
            age=0,
            neighbourhood="JOANA D´ARC",
            weekday="Tuesday",
            lead_days=1,
            booking_hour=12,
            hypertension=0,
            diabetes=0,
            scholarship=0,
            sms_received=0,
            prior_appointments=1,
            prior_no_shows=0,
        ),
        "A baby boy under 1 year old from Joana D´Arc has an appointment on a Tuesday, "
        "booked 1 day ahead at noon. He has no hypertension, diabetes, alcoholism or "
        "disability. He receives no welfare scholarship. He got no SMS reminder. He attended "
        "his one earlier appointment.",
    ),
    "handicap_2_midnight_missed_all": (
        row(
            age=80,
            neighbourhood="ILHAS OCEÂNICAS DE TRINDADE",
            weekday="Wednesday",
            lead_days=30,
            booking_hour=0,
            diabetes=0,
            handicap=2,
            scholarship=0,
            prior_appointments=4,
            prior_no_shows=4,
        ),
        "An 80-year-old woman from Ilhas Oceânicas de Trindade has an appointment on a "
        "Wednesday, booked 30 days ahead at midnight. She has hypertension and 2 "
        "disabilities; no diabetes and no alcoholism. She receives no welfare scholarship. "
        "She got an SMS reminder. She missed all 4 earlier appointments.",
    ),
    "girl_every_condition_attended_both": (
        row(
            age=8,
            neighbourhood="",
            weekday="Thursday",
            booking_hour=11,
            alcoholism=1,
            handicap=1,
            prior_appointments=2,
            prior_no_shows=0,
        ),
        "An 8-year-old girl has an appointment on a Thursday, booked 12 days ahead at 11 "
        "a.m. She has hypertension, diabetes, alcoholism and a disability. She receives the "
        "Bolsa Família welfare scholarship. She got an SMS reminder. She attended both "
        "earlier appointments.",
    ),
    "man_missed_earlier_single_visit_evening": (
        row(
            gender="M",
            age=18,
            neighbourhood="CENTRO",
            booking_hour=19,
            hypertension=0,
            handicap=4,
            prior_appointments=1,
            prior_no_shows=1,
        ),
        "An 18-year-old man from Centro has an appointment on a Friday, booked 12 days ahead "
        "at 7 p.m. He has diabetes and 4 disabilities; no hypertension and no alcoholism. He "
        "receives the Bolsa Família welfare scholarship. He got an SMS reminder. He missed "
        "his one earlier appointment.",
    ),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_render_statement_matches_golden_string(case):
    values, expected = GOLDEN[case]
    assert render_statement(values) == expected


@pytest.mark.parametrize(
    ("age", "gender", "opening"),
    [
        (11, "F", "An 11-year-old girl"),
        (17, "M", "A 17-year-old boy"),
        (1, "F", "A 1-year-old girl"),
        (89, "M", "An 89-year-old man"),
        (90, "F", "A 90-year-old woman"),
    ],
)
def test_render_statement_picks_article_and_noun_by_age(age, gender, opening):
    assert render_statement(row(age=age, gender=gender)).startswith(opening + " from ")


def test_render_statement_does_not_modify_the_row():
    values = row()
    before = dict(values)
    first = render_statement(values)
    assert render_statement(values) == first
    assert values == before


def test_render_statement_accepts_a_series():
    assert render_statement(pd.Series(row())) == GOLDEN["woman_with_history"][1]


def test_render_statement_names_missing_fields():
    values = row()
    del values["lead_days"], values["weekday"]
    with pytest.raises(ValueError, match="weekday, lead_days"):
        render_statement(values)


def test_render_statement_rejects_unknown_gender():
    with pytest.raises(ValueError, match="gender must be 'F' or 'M'"):
        render_statement(row(gender="X"))


def test_format_neighbourhood_keeps_accents_and_lowercases_particles():
    assert format_neighbourhood("SANTO ANTÔNIO") == "Santo Antônio"
    assert format_neighbourhood("ILHA DO PRÍNCIPE") == "Ilha do Príncipe"
    assert format_neighbourhood("Ilha do Príncipe") == "Ilha do Príncipe"


def test_render_statements_equals_render_statement_on_synthetic_rows():
    from noshow.data.load import load_data

    frame = load_data("synthetic").frame
    fresh = render_statements(frame)
    assert fresh.index.equals(frame.index)
    for i, values in enumerate(frame.drop(columns="statement").to_dict("records")):
        assert fresh.iloc[i] == render_statement(values)


def test_render_statements_equals_render_statement_on_real_sample(real_data_path):
    from noshow.data.load import load_data

    frame = load_data(real_data_path).frame.sample(3000, random_state=0)
    fresh = render_statements(frame)
    for i, values in enumerate(frame.to_dict("records")):
        assert fresh.iloc[i] == render_statement(values)


def test_render_statements_handles_an_empty_frame():
    empty = pd.DataFrame([row()]).iloc[:0]
    assert render_statements(empty).empty


def test_statements_stay_short_on_the_real_file(real_data_path):
    from noshow.data.load import load_data

    statements = load_data(real_data_path).frame["statement"].tolist()
    longest = max(len(text.split()) for text in statements)
    assert longest <= 60  # about 80 tokens; training time grows with length


# What each template version renders for the GOLDEN rows: the SHA-256 of their statements,
# one per line. Adapters record the version they learned, so a version must never change its
# text: new wording gets a new TEMPLATE_VERSION and a new line here, the old lines stay.
RENDERED_BY_VERSION = {
    "v1": "880cb4af5422a908be60ccadd3da73f2d45f46971bff148b1bbfb2c6ee550d89",
}


def test_a_template_version_always_renders_the_same_text():
    rendered = "\n".join(render_statement(values) for values, _ in GOLDEN.values())
    digest = hashlib.sha256(rendered.encode("utf-8")).hexdigest()
    assert RENDERED_BY_VERSION.get(TEMPLATE_VERSION) == digest, (
        f"The statements' wording differs from what {TEMPLATE_VERSION} rendered: bump "
        "TEMPLATE_VERSION and add the new version's hash to RENDERED_BY_VERSION."
    )


def test_generative_messages_without_answer_end_with_the_question():
    assert generative_messages("A statement.") == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "A statement.\n" + QUESTION},
    ]


def test_generative_messages_with_answer_add_the_assistant_turn():
    messages = generative_messages("A statement.", answer="Yes")
    assert messages[-1] == {"role": "assistant", "content": "Yes"}
    assert len(messages) == 3


def test_generative_messages_reject_other_answers():
    with pytest.raises(ValueError, match="'Yes' or 'No'"):
        generative_messages("A statement.", answer="yes")


def _chatml_tokenizer(with_template: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    if with_template:
        tokenizer.chat_template = (
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
    return tokenizer


def test_render_generative_prompt_applies_chat_template_with_generation_prompt():
    assert render_generative_prompt("A statement.", _chatml_tokenizer()) == (
        "<|im_start|>system\nYou predict whether a patient will miss a medical appointment. "
        "Answer Yes or No.<|im_end|>\n<|im_start|>user\nA statement.\nWill this patient miss "
        "the appointment? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_render_generative_prompt_explains_a_missing_chat_template():
    with pytest.raises(ValueError, match="no chat template"):
        render_generative_prompt("A statement.", _chatml_tokenizer(with_template=False))


def test_render_classifier_input_is_the_stripped_statement():
    assert render_classifier_input("  A statement.\n") == "A statement."


# ----------------------------------------------------------------------------- parsing back


@pytest.mark.parametrize("case", list(GOLDEN))
def test_parse_statement_reads_back_the_golden_rows(case):
    values, text = GOLDEN[case]
    assert parse_statement(text) == {k: values[k] for k in STATEMENT_FIELDS}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "A baby boy under 1 year old has an appointment on a Saturday, booked 1 day ahead "
            "at midnight. He has 2 disabilities; no hypertension, no diabetes and no "
            "alcoholism. He receives no welfare scholarship. He got no SMS reminder. He "
            "attended all 4 earlier appointments.",
            {"gender": "M", "age": 0, "neighbourhood": "", "lead_days": 1, "booking_hour": 0}
            | {"handicap": 2, "hypertension": 0, "prior_appointments": 4, "prior_no_shows": 0},
        ),
        (
            "An 80-year-old man from Joana D´Arc has an appointment on a Monday, booked the "
            "same day at noon. He has hypertension, diabetes, alcoholism and a disability. "
            "He receives the Bolsa Família welfare scholarship. He got an SMS reminder. He "
            "missed his one earlier appointment.",
            {"age": 80, "neighbourhood": "JOANA D´ARC", "lead_days": 0, "booking_hour": 12}
            | {"alcoholism": 1, "handicap": 1, "scholarship": 1, "sms_received": 1}
            | {"prior_appointments": 1, "prior_no_shows": 1},
        ),
        (
            # pasted with line breaks and double spaces: whitespace does not matter
            "A 17-year-old girl from Centro has an appointment on a Friday,\n booked 30 days "
            "ahead at 3 p.m.  She has no hypertension, diabetes, alcoholism or disability. "
            "She receives no welfare scholarship. She got an SMS reminder. She missed both "
            "earlier appointments.",
            {"gender": "F", "age": 17, "booking_hour": 15, "prior_appointments": 2}
            | {"prior_no_shows": 2, "hypertension": 0, "handicap": 0},
        ),
    ],
)
def test_parse_statement_reads_every_form_of_each_part(text, expected):
    parsed = parse_statement(text)
    assert {k: parsed[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("Will this patient come?", "at the person"),
        (GOLDEN["woman_with_history"][1].replace("Friday", "Funday"), "at the neighbourhood"),
        (GOLDEN["woman_with_history"][1].replace("12 days", "twelve days"), "at the booking"),
        (GOLDEN["woman_with_history"][1].replace("an SMS", "a text"), "at the SMS reminder"),
        (GOLDEN["woman_with_history"][1] + " She is nice.", "goes on after the statement"),
        (GOLDEN["woman_with_history"][1].replace("hypertension and", "flu and"), "condition"),
        (GOLDEN["woman_with_history"][1].replace("34-year-old woman", "4-year-old woman"), "4-"),
    ],
)
def test_parse_statement_names_the_part_that_does_not_follow_the_template(text, part):
    with pytest.raises(StatementParseError, match=part):
        parse_statement(text)


def test_parse_statement_inverts_render_statement_on_real_rows(real_data_path):
    from noshow.data.load import load_data

    frame = load_data(real_data_path).frame.sample(5000, random_state=1)
    for values, text in zip(frame.to_dict("records"), render_statements(frame), strict=True):
        assert parse_statement(text) == {k: values[k] for k in STATEMENT_FIELDS}, text
