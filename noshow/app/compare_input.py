"""What the Compare tab accepts, checked: a statement (cleaned, cut to a length), the small
form's answers (turned into a row and its statement), where a statement's facts come from
(the form, an example, a data set row, or read back from the text), and the what-if's one
changed fact. Bad input raises `CompareInputError`, whose message says what to change.

Nothing here imports Gradio or scores anything:

    from noshow.app.compare_input import change_fact, prepare_statement, render_form_statement
    statement, notice = prepare_statement(text)          # notice when it was cut
    statement, row = render_form_statement(age=34, gender="F", lead_days=3)
    changed = change_fact(row, "SMS reminder", "no")
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAX_STATEMENT_CHARS = 2000
# The tab's buttons, named once: the layout shows these labels and messages name them.
COMPARE_BUTTON = "Compare"
RECORD_BUTTON = "Score this record"
FORM_BUTTON = "Render and compare"
REFRESH_BUTTON = "Refresh adapter lists"
BATCH_BUTTON = "Run batch comparison"
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
NEIGHBOURHOODS = [  # the form's list: the 15 with most appointments in the Kaggle file
    "JARDIM CAMBURI",
    "MARIA ORTIZ",
    "RESISTÊNCIA",
    "JARDIM DA PENHA",
    "ITARARÉ",
    "CENTRO",
    "TABUAZEIRO",
    "SANTA MARTHA",
    "JESUS DE NAZARETH",
    "BONFIM",
    "SANTO ANTÔNIO",
    "SANTO ANDRÉ",
    "CARATOÍRA",
    "JABOUR",
    "SÃO PEDRO",
]
CONDITIONS = ["hypertension", "diabetes", "alcoholism", "disability"]
GENDERS = {"F": "F", "M": "M", "female": "F", "male": "M", "woman": "F", "man": "M"}
FORM_DEFAULTS: dict[str, Any] = {
    "age": 35,
    "gender": "F",
    "lead_days": 10,
    "sms_received": True,
    "scholarship": False,
    "conditions": [],
    "prior_appointments": 0,
    "prior_no_shows": 0,
    "weekday": "Tuesday",
    "neighbourhood": "JARDIM CAMBURI",
    "booking_hour": 9,
}

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class CompareInputError(ValueError):
    """Input the Compare tab cannot score; the message says what to change."""


def clean_text(text: str) -> str:
    """Text a tokenizer always accepts: control characters (other than tab and newline)
    become spaces and lone UTF-16 surrogates (JSON can carry them) become U+FFFD."""
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL.sub(" ", text)


def prepare_statement(text: Any) -> tuple[str, str | None]:
    """(statement, notice): cleaned (`clean_text`), whitespace trimmed, cut to
    MAX_STATEMENT_CHARS with a notice.

    Raises CompareInputError for an empty statement.
    """
    statement = "" if text is None else clean_text(str(text)).strip()
    if not statement:
        raise CompareInputError(
            f"The statement is empty: type one and press {COMPARE_BUTTON}, click an example, "
            f"enter a record id and press {RECORD_BUTTON}, or fill the form and press "
            f"{FORM_BUTTON}."
        )
    if len(statement) <= MAX_STATEMENT_CHARS:
        return statement, None
    notice = (
        f"The statement has {len(statement):,} characters; only the first "
        f"{MAX_STATEMENT_CHARS:,} were scored (real statements are about 300)."
    )
    return statement[:MAX_STATEMENT_CHARS].rstrip(), notice


def _whole(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CompareInputError(f"{name} must be a whole number, got {value!r}.") from None
    if not np.isfinite(number) or number != int(number):
        raise CompareInputError(f"{name} must be a whole number, got {value!r}.")
    if not low <= int(number) <= high:
        raise CompareInputError(f"{name} must be between {low} and {high}, got {int(number)}.")
    return int(number)


def form_row(
    age: Any = FORM_DEFAULTS["age"],
    gender: Any = FORM_DEFAULTS["gender"],
    lead_days: Any = FORM_DEFAULTS["lead_days"],
    sms_received: Any = FORM_DEFAULTS["sms_received"],
    scholarship: Any = FORM_DEFAULTS["scholarship"],
    conditions: Sequence[str] | None = None,
    prior_appointments: Any = FORM_DEFAULTS["prior_appointments"],
    prior_no_shows: Any = FORM_DEFAULTS["prior_no_shows"],
    weekday: Any = FORM_DEFAULTS["weekday"],
    neighbourhood: Any = FORM_DEFAULTS["neighbourhood"],
    booking_hour: Any = FORM_DEFAULTS["booking_hour"],
) -> dict[str, Any]:
    """The form's answers as a row with every field the statement and the baseline read.

    Raises CompareInputError naming the field that is out of range.
    """
    sex = GENDERS.get(str(gender).strip()) or GENDERS.get(str(gender).strip().lower())
    if sex is None:
        raise CompareInputError(f"Gender must be F or M, got {gender!r}.")
    day = str(weekday).strip().title()
    if day not in WEEKDAYS:
        raise CompareInputError(f"Weekday must be one of {', '.join(WEEKDAYS)}, got {weekday!r}.")
    place = str(neighbourhood or "").strip()
    if not place:
        raise CompareInputError("Neighbourhood is empty: pick one from the list.")
    if len(place) > 60:
        raise CompareInputError("Neighbourhood is too long: pick one from the list.")
    picked = [str(c).strip().lower() for c in (conditions or [])]
    unknown = [c for c in picked if c not in CONDITIONS]
    if unknown:
        raise CompareInputError(
            f"Unknown condition(s) {unknown}: choose from {', '.join(CONDITIONS)}."
        )
    prior = _whole(prior_appointments, "Earlier appointments", 0, 200)
    missed = _whole(prior_no_shows, "Earlier no-shows", 0, 200)
    if missed > prior:
        raise CompareInputError(
            f"Earlier no-shows ({missed}) cannot exceed earlier appointments ({prior})."
        )
    return {
        "age": _whole(age, "Age", 0, 115),
        "gender": sex,
        "neighbourhood": place.upper(),
        "scholarship": int(bool(scholarship)),
        "hypertension": int("hypertension" in picked),
        "diabetes": int("diabetes" in picked),
        "alcoholism": int("alcoholism" in picked),
        "handicap": int("disability" in picked),
        "sms_received": int(bool(sms_received)),
        "lead_days": _whole(lead_days, "Lead days", 0, 365),
        "weekday": day,
        "booking_hour": _whole(booking_hour, "Booking hour", 0, 23),
        "prior_appointments": prior,
        "prior_no_shows": missed,
    }


def render_form_statement(**answers: Any) -> tuple[str, dict[str, Any]]:
    """(statement, row) for the form's answers (see `form_row` for the names)."""
    from noshow.data.statements import render_statement

    row = form_row(**answers)
    return render_statement(row), row


# ----------------------------------------------------------------------------- facts


def facts_state(statement: str, row: Any, source: str, truth: int | None = None) -> dict[str, Any]:
    """What produced the statement in the box, so Compare and what-if use its facts while
    the text is unchanged (an edited statement is read back from its text instead): the
    `state` that `resolve_facts` reads."""
    from noshow.data.statements import STATEMENT_FIELDS

    plain = {}
    for key in STATEMENT_FIELDS:  # the same fields the baseline reads
        if key in row:
            value = row[key]
            plain[key] = value.item() if hasattr(value, "item") else value
    return {"statement": statement, "row": plain, "source": source, "truth": truth}


def resolve_facts(
    statement: str, state: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None, str | None, int | None]:
    """(row, where the facts came from, why there are none, true label) for `statement`.

    `state` is what produced the text in the box (form, example, data set row) and counts
    while the text is unchanged; otherwise the facts are read back from the statement: in the
    template's words (`noshow.data.statements.parse_statement`), else in other words where
    each fact can be read with confidence (`noshow.data.facts.read_facts`), and the reason
    names the facts it could not read.
    """
    from noshow.data.facts import read_facts
    from noshow.data.statements import StatementParseError, parse_statement

    if isinstance(state, Mapping) and state.get("statement") == statement and state.get("row"):
        truth = state.get("truth")
        return dict(state["row"]), state.get("source"), None, None if truth is None else int(truth)
    try:
        return parse_statement(statement), "read from the statement", None, None
    except StatementParseError:
        reading = read_facts(statement)
    if reading.row is not None:
        return reading.row, "read from the statement (in other words)", None, None
    return None, None, f"No baseline: {reading.why_not()}.", None


# ----------------------------------------------------------------------------- what-if

YES_NO = ["yes", "no"]
# What the what-if box offers: label -> (row field, suggested values). Values are checked
# like the form's (`change_fact`), so any in range may be typed.
WHAT_IF_FACTS: dict[str, tuple[str, list[str]]] = {
    "SMS reminder": ("sms_received", YES_NO),
    "Days booked ahead": ("lead_days", ["0", "1", "3", "7", "14", "30", "60"]),
    "Weekday": ("weekday", WEEKDAYS),
    "Age": ("age", ["5", "18", "25", "40", "60", "80"]),
    "Gender": ("gender", ["F", "M"]),
    "Welfare scholarship": ("scholarship", YES_NO),
    "Hypertension": ("hypertension", YES_NO),
    "Diabetes": ("diabetes", YES_NO),
    "Earlier appointments": ("prior_appointments", ["0", "1", "2", "5", "10"]),
    "Earlier no-shows": ("prior_no_shows", ["0", "1", "2", "5"]),
    "Booking hour": ("booking_hour", ["7", "9", "12", "15", "18"]),
    "Neighbourhood": ("neighbourhood", NEIGHBOURHOODS),
}
_FLAGS = {"sms_received", "scholarship", "hypertension", "diabetes", "alcoholism"}
_RANGES = {
    "lead_days": ("Days booked ahead", 0, 365),
    "age": ("Age", 0, 115),
    "prior_appointments": ("Earlier appointments", 0, 200),
    "prior_no_shows": ("Earlier no-shows", 0, 200),
    "booking_hour": ("Booking hour", 0, 23),
}


def fact_text(row: Mapping[str, Any], fact: str) -> str:
    """How the what-if box shows `fact`'s value in `row` ("yes", "14", "Tuesday", ...)."""
    field_name = WHAT_IF_FACTS[fact][0]
    value = row.get(field_name)
    if field_name in _FLAGS:
        return "yes" if int(value or 0) else "no"
    return str(value)


def change_fact(row: Mapping[str, Any], fact: str, value: Any) -> dict[str, Any]:
    """`row` with one fact changed; CompareInputError names what is wrong with `value`."""
    if fact not in WHAT_IF_FACTS:
        raise CompareInputError(f"Pick a fact to change: one of {', '.join(WHAT_IF_FACTS)}.")
    field_name = WHAT_IF_FACTS[fact][0]
    text = "" if value is None else str(value).strip()
    if not text:
        raise CompareInputError(f"Type or pick the new value of {fact}.")
    new = dict(row)
    if field_name in _FLAGS:
        if text.lower() not in ("yes", "no", "1", "0", "true", "false"):
            raise CompareInputError(f"{fact} must be yes or no, got {text!r}.")
        new[field_name] = int(text.lower() in ("yes", "1", "true"))
    elif field_name in _RANGES:
        name, low, high = _RANGES[field_name]
        new[field_name] = _whole(text, name, low, high)
    elif field_name == "weekday":
        day = text.title()
        if day not in WEEKDAYS:
            raise CompareInputError(f"Weekday must be one of {', '.join(WEEKDAYS)}, got {text!r}.")
        new[field_name] = day
    elif field_name == "gender":
        sex = GENDERS.get(text) or GENDERS.get(text.lower())
        if sex is None:
            raise CompareInputError(f"Gender must be F or M, got {text!r}.")
        new[field_name] = sex
    else:  # neighbourhood
        if len(text) > 60:
            raise CompareInputError("Neighbourhood is too long: pick one from the list.")
        new[field_name] = text.upper()
    if int(new.get("prior_no_shows", 0)) > int(new.get("prior_appointments", 0)):
        raise CompareInputError(
            f"Earlier no-shows ({new['prior_no_shows']}) cannot exceed earlier appointments "
            f"({new['prior_appointments']}): change that first."
        )
    return new
