"""Turn one appointment row into a short English statement, and wrap statements in prompts.

The template is a pure function of the row, versioned by `TEMPLATE_VERSION`: change the
wording and you must bump the version, because trained adapters learned the old wording.

    from noshow.data.statements import render_statement, render_statements
    render_statement(loaded.frame.iloc[0])      # one row (any Mapping with the feature keys)
    render_statements(loaded.frame)             # a whole frame, same text, fast

Example output (65 tokens on average with the SmolLM2 tokenizer, 56-77 on the real file;
training time grows with length, so the wording is terse):

    A 34-year-old woman from Jardim da Penha has an appointment on a Friday, booked 12 days
    ahead at 8 a.m. She has hypertension and diabetes; no alcoholism and no disability. She
    receives the Bolsa Família welfare scholarship. She got an SMS reminder. She missed 1 of
    3 earlier appointments.

Decisions:
- Neighbourhoods are written in title case with Portuguese particles (da, de, do, das, dos,
  e) in lower case and accents kept ("JOANA D´ARC" -> "Joana D´Arc"): mixed case reads like
  ordinary text to a language model, while ALL CAPS splits into many more tokens.
- The booking hour is the hour the booking was made ("at 8 a.m." means 8:00-8:59).
- The classifier input is the plain statement: the head pools the last token, and a fixed
  question appended to every row would add tokens without adding information.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

TEMPLATE_VERSION = "v1"

SYSTEM_PROMPT = "You predict whether a patient will miss a medical appointment. Answer Yes or No."
QUESTION = "Will this patient miss the appointment? Answer Yes or No."
ANSWERS = ("No", "Yes")  # index = label (0 = shows up, 1 = no-show)

# The keys render_statement reads; everything else in the row is ignored.
STATEMENT_FIELDS = (
    "gender",
    "age",
    "neighbourhood",
    "weekday",
    "lead_days",
    "booking_hour",
    "hypertension",
    "diabetes",
    "alcoholism",
    "handicap",
    "scholarship",
    "sms_received",
    "prior_appointments",
    "prior_no_shows",
)

_PARTICLES = frozenset({"da", "de", "do", "das", "dos", "e"})
_PRONOUNS = {"F": ("She", "her"), "M": ("He", "his")}


@lru_cache(maxsize=1024)
def format_neighbourhood(name: str) -> str:
    """'JARDIM DA PENHA' -> 'Jardim da Penha' (accents kept; idempotent)."""
    words = str(name).split()
    out = []
    for i, word in enumerate(words):
        lower = word.lower()
        out.append(lower if i > 0 and lower in _PARTICLES else word.title())
    return " ".join(out)


def _format_hour(hour: int) -> str:
    if hour == 0:
        return "midnight"
    if hour == 12:
        return "noon"
    return f"{hour} a.m." if hour < 12 else f"{hour - 12} p.m."


def _describe_person(gender: str, age: int) -> str:
    adult = {"F": "woman", "M": "man"}[gender]
    child = {"F": "girl", "M": "boy"}[gender]
    if age == 0:
        return f"A baby {child} under 1 year old"
    # "an" where the spoken number starts with a vowel sound: eight, eleven, eighteen, eighty-.
    article = "An" if age in (8, 11, 18) or 80 <= age <= 89 else "A"
    return f"{article} {age}-year-old {child if age < 18 else adult}"


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _describe_conditions(
    subject: str, hypertension: int, diabetes: int, alcoholism: int, handicap: int
) -> str:
    disability = "a disability" if handicap == 1 else f"{handicap} disabilities"
    named = [
        ("hypertension", hypertension),
        ("diabetes", diabetes),
        ("alcoholism", alcoholism),
        (disability, handicap),
    ]
    has = [text for text, flag in named if flag]
    if not has:
        return f"{subject} has no hypertension, diabetes, alcoholism or disability."
    lacks = [f"no {text}" for text, flag in named[:3] if not flag]
    if not handicap:
        lacks.append("no disability")
    if not lacks:
        return f"{subject} has {_join(has)}."
    return f"{subject} has {_join(has)}; {_join(lacks)}."


def _describe_history(subject: str, possessive: str, prior: int, missed: int) -> str:
    if prior == 0:
        return f"This is {possessive} first appointment on record."
    if prior == 1:
        verb = "missed" if missed else "attended"
        return f"{subject} {verb} {possessive} one earlier appointment."
    everything = "both" if prior == 2 else f"all {prior}"
    if missed == 0:
        return f"{subject} attended {everything} earlier appointments."
    if missed == prior:
        return f"{subject} missed {everything} earlier appointments."
    return f"{subject} missed {missed} of {prior} earlier appointments."


def _booking_clause(lead_days: Any, booking_hour: Any) -> str:
    lead = int(lead_days)
    booked = "the same day" if lead == 0 else f"{lead} day{'s' if lead != 1 else ''} ahead"
    hour = _format_hour(int(booking_hour))
    # "8 a.m." already ends with a full stop; do not add a second one.
    return f"booked {booked} at {hour}{'' if hour.endswith('.') else '.'}"


def _place_phrase(neighbourhood: Any) -> str:
    if not isinstance(neighbourhood, str) or not neighbourhood.strip():
        return ""
    return f" from {format_neighbourhood(neighbourhood)}"


def _pronouns(gender: Any) -> tuple[str, str]:
    if gender not in _PRONOUNS:
        raise ValueError(f"gender must be 'F' or 'M', got {gender!r}.")
    return _PRONOUNS[gender]


# A statement is these pieces joined; each piece depends on a few fields only, which lets
# render_statements compute each piece once per distinct value combination.
def _piece_person(gender: Any, age: Any) -> str:
    _pronouns(gender)
    return _describe_person(gender, int(age))


def _piece_conditions(gender, hypertension, diabetes, alcoholism, handicap) -> str:
    subject = _pronouns(gender)[0]
    return _describe_conditions(
        subject, int(hypertension), int(diabetes), int(alcoholism), int(handicap)
    )


def _piece_scholarship(gender: Any, scholarship: Any) -> str:
    subject = _pronouns(gender)[0]
    if int(scholarship):
        return f"{subject} receives the Bolsa Família welfare scholarship."
    return f"{subject} receives no welfare scholarship."


def _piece_sms(gender: Any, sms_received: Any) -> str:
    subject = _pronouns(gender)[0]
    return f"{subject} got {'an' if int(sms_received) else 'no'} SMS reminder."


def _piece_history(gender: Any, prior_appointments: Any, prior_no_shows: Any) -> str:
    subject, possessive = _pronouns(gender)
    return _describe_history(subject, possessive, int(prior_appointments), int(prior_no_shows))


_PIECES = (
    (_piece_person, ("gender", "age")),
    (_place_phrase, ("neighbourhood",)),
    (str, ("weekday",)),
    (_booking_clause, ("lead_days", "booking_hour")),
    (_piece_conditions, ("gender", "hypertension", "diabetes", "alcoholism", "handicap")),
    (_piece_scholarship, ("gender", "scholarship")),
    (_piece_sms, ("gender", "sms_received")),
    (_piece_history, ("gender", "prior_appointments", "prior_no_shows")),
)


def _join_pieces(
    person: str,
    place: str,
    weekday: str,
    booking: str,
    conditions: str,
    scholarship: str,
    sms: str,
    history: str,
) -> str:
    return (
        f"{person}{place} has an appointment on a {weekday}, {booking} "
        f"{conditions} {scholarship} {sms} {history}"
    )


def render_statement(row: Mapping[str, Any]) -> str:
    """One cleaned appointment row (dict, Series, ...) -> its statement. Pure: same row, same
    text; the row is not modified. Raises ValueError naming any missing field."""
    missing = [key for key in STATEMENT_FIELDS if key not in row]
    if missing:
        raise ValueError(
            f"Cannot render a statement: the row lacks {', '.join(missing)}. "
            "Pass a row of the frame that noshow.data.load.load_data returns."
        )
    return _join_pieces(*(func(*(row[key] for key in keys)) for func, keys in _PIECES))


def _map_unique(func, columns: list[np.ndarray]) -> np.ndarray:
    """func(*values) for every row, calling func once per distinct combination of values."""
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        column_codes, uniques = pd.factorize(column, use_na_sentinel=False)
        codes = codes * len(uniques) + column_codes
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    results = np.array([func(*(column[i] for column in columns)) for i in first], dtype=object)
    return results[inverse.reshape(-1)]


def render_statements(frame: pd.DataFrame) -> pd.Series:
    """Render every row of `frame`; equals `render_statement` row by row, but builds each
    piece once per distinct value combination (about 1 s for the 110k-row file)."""
    missing = [key for key in STATEMENT_FIELDS if key not in frame.columns]
    if missing:
        raise ValueError(
            f"Cannot render statements: the frame lacks column(s) {', '.join(missing)}."
        )
    if frame.empty:
        return pd.Series([], index=frame.index, name="statement", dtype="str")
    arrays = {key: frame[key].to_numpy(dtype=object) for key in STATEMENT_FIELDS}
    pieces = [_map_unique(func, [arrays[key] for key in keys]) for func, keys in _PIECES]
    texts = [_join_pieces(*values) for values in zip(*pieces, strict=True)]
    return pd.Series(texts, index=frame.index, name="statement", dtype="str")


# ----------------------------------------------------------------------------- prompts


def generative_messages(statement: str, answer: str | None = None) -> list[dict[str, str]]:
    """Chat messages for the generative approach: system, user (statement + question) and,
    for training, the assistant's one-word answer ("Yes" = will miss)."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{statement}\n{QUESTION}"},
    ]
    if answer is not None:
        if answer not in ANSWERS:
            raise ValueError(f"answer must be 'Yes' or 'No', got {answer!r}.")
        messages.append({"role": "assistant", "content": answer})
    return messages


def render_generative_prompt(statement: str, tokenizer: Any) -> str:
    """The prompt text up to where the model writes its answer (chat template with the
    generation prompt on). Needs a tokenizer with a chat template (an Instruct model)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "This tokenizer has no chat template, so the generative approach cannot build its "
            "prompt. Use an Instruct/chat model (e.g. smollm2-135m-instruct or "
            "llama-3.1-8b-instruct), or the classifier approach for base models."
        )
    return tokenizer.apply_chat_template(
        generative_messages(statement), tokenize=False, add_generation_prompt=True
    )


def render_classifier_input(statement: str) -> str:
    """The classifier's input: the statement itself, without surrounding whitespace (see
    the module docstring for why nothing is added)."""
    return str(statement).strip()


# ----------------------------------------------------------------------------- parsing back


class StatementParseError(ValueError):
    """Text that does not follow the statement template; the message names the first part
    that differs and what was expected there."""


_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CONDITION_NAMES = ("hypertension", "diabetes", "alcoholism")
_NO_CONDITIONS = "no hypertension, diabetes, alcoholism or disability"
# Each part of the template, in order: (what it is called in a message, an example, regex).
_PARSE_PARTS = (
    (
        "the person",
        "A 34-year-old woman",
        r"(?:A baby (?P<baby>girl|boy) under 1 year old"
        r"|An? (?P<age>\d{1,3})-year-old (?P<noun>girl|boy|woman|man))",
    ),
    (
        "the neighbourhood and weekday",
        "from Maria Ortiz has an appointment on a Friday,",
        r"(?: from (?P<place>.+?))? has an appointment on a (?P<weekday>"
        + "|".join(_WEEKDAY_NAMES)
        + "),",
    ),
    (
        "the booking",
        "booked 12 days ahead at 8 a.m.",
        r" booked (?:(?P<same>the same day)|(?P<lead>\d{1,4}) days? ahead) at "
        r"(?:(?P<hour>\d{1,2}) (?P<half>a\.m\.|p\.m\.)|(?P<word>noon|midnight)\.)",
    ),
    (
        "the conditions",
        "She has hypertension; no diabetes, ...",
        r" (?:She|He) has (?P<cond>[^.]+)\.",
    ),
    (
        "the scholarship",
        "She receives no welfare scholarship.",
        r" (?:She|He) receives (?P<scholar>the Bolsa Família welfare scholarship"
        r"|no welfare scholarship)\.",
    ),
    (
        "the SMS reminder",
        "She got an SMS reminder.",
        r" (?:She|He) got (?P<sms>an|no) SMS reminder\.",
    ),
    (
        "the earlier appointments",
        "She missed 1 of 3 earlier appointments.",
        r" (?:This is (?:her|his) (?P<first>first) appointment on record"
        r"|(?:She|He) (?P<one>missed|attended) (?:her|his) one earlier appointment"
        r"|(?:She|He) (?P<every>missed|attended) (?:both|all (?P<all>\d{1,4})) earlier appointments"
        r"|(?:She|He) missed (?P<some>\d{1,4}) of (?P<of>\d{1,4}) earlier appointments)\.",
    ),
)
_PARSE_REGEXES = tuple((name, example, re.compile(rx)) for name, example, rx in _PARSE_PARTS)


def _parse_conditions(text: str) -> dict[str, int]:
    flags = {"hypertension": 0, "diabetes": 0, "alcoholism": 0, "handicap": 0}
    if text == _NO_CONDITIONS:
        return flags
    has, _, lacks = text.partition("; ")
    named = [x for part in has.split(", ") for x in part.split(" and ")]
    for item in named:
        count = re.fullmatch(r"(\d+) disabilities", item)
        if item in _CONDITION_NAMES:
            flags[item] = 1
        elif item == "a disability":
            flags["handicap"] = 1
        elif count:
            flags["handicap"] = int(count.group(1))
        else:
            raise StatementParseError(f"Could not read the condition {item!r}.")
    absent = [x for part in lacks.split(", ") for x in part.split(" and ")] if lacks else []
    for item in absent:
        name = item.removeprefix("no ")
        if name not in (*_CONDITION_NAMES, "disability") or item == name:
            raise StatementParseError(f"Could not read the condition {item!r}.")
    return flags


def parse_statement(text: str) -> dict[str, Any]:
    """The row a statement was rendered from: the inverse of `render_statement` (whitespace
    may differ; the neighbourhood comes back in capitals, as the data writes it).

        parse_statement(render_statement(row)) == row   # for the STATEMENT_FIELDS

    Raises StatementParseError naming the first part that does not follow the template.
    """
    statement = " ".join(str(text).split())
    m: dict[str, Any] = {}
    pos = 0
    for name, example, regex in _PARSE_REGEXES:
        match = regex.match(statement, pos)
        if match is None:
            seen = statement[pos : pos + 40]
            raise StatementParseError(
                f"The text does not follow the statement template at {name}: expected "
                f"something like {example!r}, found {seen!r}."
            )
        m.update({k: v for k, v in match.groupdict().items() if v is not None})
        pos = match.end()
    if statement[pos:].strip():
        raise StatementParseError(
            f"The text goes on after the statement: {statement[pos : pos + 40]!r}."
        )
    if "baby" in m:
        gender, age = ("F" if m["baby"] == "girl" else "M"), 0
    else:
        gender, age = ("F" if m["noun"] in ("girl", "woman") else "M"), int(m["age"])
        if age < 1 or (age < 18) != (m["noun"] in ("girl", "boy")):
            raise StatementParseError(f"A {age}-year-old is not called a {m['noun']}.")
    if "word" in m:
        hour = 12 if m["word"] == "noon" else 0
    else:
        hour = int(m["hour"])
        if not 1 <= hour <= 11:
            raise StatementParseError(f"{hour} {m['half']} is not an hour of the clock.")
        hour += 12 if m["half"] == "p.m." else 0
    if "first" in m:
        prior, missed = 0, 0
    elif "one" in m:
        prior, missed = 1, int(m["one"] == "missed")
    elif "every" in m:
        prior = int(m.get("all", 2))
        missed = prior if m["every"] == "missed" else 0
    else:
        prior, missed = int(m["of"]), int(m["some"])
        if not 0 < missed < prior:
            raise StatementParseError(f"Missed {missed} of {prior} earlier appointments?")
    return {
        "gender": gender,
        "age": age,
        "neighbourhood": m["place"].upper() if "place" in m else "",
        "weekday": m["weekday"],
        "lead_days": 0 if "same" in m else int(m["lead"]),
        "booking_hour": hour,
        **_parse_conditions(m["cond"]),
        "scholarship": int(m["scholar"].startswith("the ")),
        "sms_received": int(m["sms"] == "an"),
        "prior_appointments": prior,
        "prior_no_shows": missed,
    }
