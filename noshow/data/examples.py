"""A handful of example appointments, from low to high no-show risk, one click away in the
Compare tab. The rows are invented but realistic (real neighbourhoods, typical values); their
statements come from `render_statement`, so they read exactly like the training data.

The risk levels follow what the data shows: same-day bookings are rarely missed; long lead
times, earlier no-shows, youth and the welfare scholarship go with more no-shows. The order is
checked against the tabular baseline fitted on the real file's time split, which gives them
P(no-show) 0.01, 0.16, 0.30, 0.51 and 0.64 (tests/test_compare.py checks the order).

    from noshow.data.examples import EXAMPLES, example_statements
    for ex in EXAMPLES: print(ex.title, ex.statement)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Example:
    """One example appointment: a short title, the expected risk, and its row."""

    title: str
    risk: str
    """'low', 'medium' or 'high': what the data says about rows like this one."""
    row: dict[str, Any]

    @cached_property
    def statement(self) -> str:
        from noshow.data.statements import render_statement

        return render_statement(self.row)

    @property
    def label(self) -> str:
        """What the example is called in a list: risk and title."""
        return f"{self.risk.capitalize()} risk: {self.title}"


def _row(**values: Any) -> dict[str, Any]:
    base = {
        "gender": "F",
        "age": 40,
        "neighbourhood": "JARDIM CAMBURI",
        "weekday": "Tuesday",
        "lead_days": 0,
        "booking_hour": 9,
        "hypertension": 0,
        "diabetes": 0,
        "alcoholism": 0,
        "handicap": 0,
        "scholarship": 0,
        "sms_received": 0,
        "prior_appointments": 0,
        "prior_no_shows": 0,
    }
    unknown = set(values) - set(base)
    if unknown:  # a typo here would silently fall back to a default value
        raise KeyError(f"unknown example field(s): {sorted(unknown)}")
    return {**base, **values}


EXAMPLES: tuple[Example, ...] = (
    Example(
        "same-day visit, older woman with hypertension",
        "low",
        _row(
            gender="F",
            age=67,
            neighbourhood="JARDIM DA PENHA",
            weekday="Wednesday",
            lead_days=0,
            booking_hour=8,
            hypertension=1,
            diabetes=1,
        ),
    ),
    Example(
        "booked three days ahead, attended every earlier visit",
        "low",
        _row(
            gender="M",
            age=58,
            neighbourhood="SANTA MARTHA",
            weekday="Thursday",
            lead_days=3,
            booking_hour=10,
            hypertension=1,
            prior_appointments=3,
            prior_no_shows=0,
        ),
    ),
    Example(
        "two weeks ahead with an SMS reminder",
        "medium",
        _row(
            gender="F",
            age=52,
            neighbourhood="MARIA ORTIZ",
            weekday="Tuesday",
            lead_days=14,
            booking_hour=9,
            hypertension=1,
            sms_received=1,
        ),
    ),
    Example(
        "young man booked a month ahead, welfare scholarship, no reminder",
        "high",
        _row(
            gender="M",
            age=19,
            neighbourhood="ITARARÉ",
            weekday="Friday",
            lead_days=30,
            booking_hour=15,
            scholarship=1,
        ),
    ),
    Example(
        "young adult who missed earlier appointments",
        "high",
        _row(
            gender="F",
            age=24,
            neighbourhood="JESUS DE NAZARETH",
            weekday="Monday",
            lead_days=21,
            booking_hour=11,
            scholarship=1,
            sms_received=1,
            prior_appointments=3,
            prior_no_shows=2,
        ),
    ),
)


def example_statements() -> list[str]:
    """The examples' statements, in EXAMPLES order."""
    return [ex.statement for ex in EXAMPLES]
