"""Read an appointment's facts from a statement written in other words, and say what could
not be read.

`noshow.data.statements.parse_statement` reads the template's own words exactly. A person
typing into the Compare tab says the same facts in their own: "He receives a welfare
scholarship", "booked two weeks in advance at 14:30", "no SMS", "missed 2 of his 5 earlier
visits". `read_facts` looks for each fact on its own, anywhere in the text, in a small
vocabulary of phrasings, and keeps only what it reads with confidence: a fact that is not
found, or that the text states twice in ways that disagree, is named and left unread, never
guessed. A row comes back only when every fact the baseline needs was read.

`text_notes` says when a text is not one the models were trained for: not English, not about
an appointment, or contradicting itself (the score may mean little then).

    from noshow.data.facts import read_facts, text_notes
    reading = read_facts("A 40-year-old man has an appointment on a Monday, booked 3 days ...")
    reading.row         # the row render_statement reads (every fact read), else None
    reading.facts       # what was read: {"age": 40, "gender": "M", ...}
    reading.unread      # ["the SMS reminder", ...]: facts not found, in words
    reading.conflicts   # ["the weekday (Monday and Friday)"]: facts the text contradicts
    reading.why_not()   # "could not read the SMS reminder from the text"
    text_notes("Uma mulher de 34 anos tem uma consulta na sexta-feira.")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Each fact the baseline reads, as a message names it (the neighbourhood may be unknown:
# the template itself leaves it out when the data has none).
FACT_WORDS = {
    "age": "the age",
    "gender": "the gender",
    "weekday": "the weekday",
    "lead_days": "how many days ahead it was booked",
    "booking_hour": "the booking hour",
    "hypertension": "hypertension",
    "diabetes": "diabetes",
    "alcoholism": "alcoholism",
    "handicap": "disability",
    "scholarship": "the welfare scholarship",
    "sms_received": "the SMS reminder",
    "history": "the earlier appointments",
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBER_WORDS = {
    "no": 0, "none": 0, "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60,
}  # fmt: skip
_NUM = r"(\d{1,4}|" + "|".join(NUMBER_WORDS) + r")"
# Words that say the patient's gender (not "mother"/"father": "she came with her father").
_FEMALE = {"she", "her", "hers", "herself", "woman", "girl", "female", "lady"}
_MALE = {"he", "him", "his", "himself", "man", "boy", "male", "gentleman"}
# A negation before a term in its clause: "no diabetes", "does not have hypertension".
_NEGATION = re.compile(
    r"\b(?:no|not|without|neither|nor|never|free of|denies|negative for|non)\b|n't\b"
)
# A verb that starts what a negation may cover: in "has no hypertension and has diabetes"
# the second "has" starts afresh; "does not have diabetes" keeps the word before it.
_VERB = re.compile(
    r"\b(?:has|have|had|having|with|is|was|got|gets|get|receives?|received|receiving)\b"
)
# Clauses: a negation or a "has" reaches no further than these.
_CLAUSE_BREAK = re.compile(r"[.;:!?]|\bbut\b|\balthough\b|\bthough\b|\bwhereas\b|\bwhile\b")
CONDITIONS = {
    "hypertension": r"hypertension|hypertensive|high blood pressure",
    "diabetes": r"diabetes|diabetic",
    "alcoholism": r"alcoholism|alcoholic|alcohol (?:abuse|dependence|problems?|use disorder)",
    "handicap": r"disabilit(?:y|ies)|disabled|handicap(?:ped)?",
}
_NO_OTHER_CONDITIONS = re.compile(
    r"\bno (?:other |known |chronic |medical |health )*"
    r"(?:conditions|illness(?:es)?|diseases|health problems|medical problems|comorbidities)\b"
)
_SCHOLARSHIP = r"scholarship|bolsa fam[ií]lia|welfare (?:support|benefits?|payments?)|on welfare"
_SMS = r"\bsms\b|text messages?|text reminders?|reminder texts?|\btexted\b|\breminders?\b"
_APPOINTMENT_WORDS = re.compile(
    r"\b(?:appointments?|visits?|consultations?|clinic|doctor|booked|booking|scheduled|"
    r"patients?|no-show|show up|attend(?:ed|s)?|missed|reminders?|sms)\b"
)
# Common English words: a text with few of them (and some length) is likely not English.
_ENGLISH_WORDS = (
    "a an the and or but of on in at to for from with without has have had is are was were "
    "be been this that it its he she his her him they their no not yes one two days day "
    "ahead booked appointment appointments earlier missed attended got gets receives "
    "reminder who will would did does do year old years woman man girl boy baby patient "
    "same week weeks before after all both first on record"
)
_ENGLISH = frozenset(re.findall(r"[a-z]+", _ENGLISH_WORDS))


@dataclass
class FactReading:
    """What `read_facts` found in a text (see the module docstring)."""

    facts: dict[str, Any] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    row: dict[str, Any] | None = None

    def why_not(self) -> str:
        """Why there is no row, in words ("" when there is one)."""
        if self.row is not None:
            return ""
        parts = []
        if self.unread:
            parts.append(f"could not read {_join(self.unread)} from the text")
        if self.conflicts:
            parts.append(f"the text contradicts itself on {_join(self.conflicts)}")
        return "; ".join(parts) or "could not read the appointment's facts"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _number(word: str) -> int | None:
    word = word.lower()
    return int(word) if word.isdigit() else NUMBER_WORDS.get(word)


def normalise(text: str) -> str:
    """Lower case, one space between words, "a.m." as "am", typographic apostrophes plain."""
    text = str(text).replace("’", "'").replace("‘", "'").lower()
    text = re.sub(r"\b([ap])\.\s?m\.", r"\1m", text)
    return " ".join(text.split())


def clauses(text: str) -> list[str]:
    """The normalised text cut where a negation or a "has" stops reaching."""
    return [c.strip() for c in _CLAUSE_BREAK.split(text) if c.strip()]


class _Reader:
    """One text's facts, each found on its own; disagreeing finds become conflicts."""

    def __init__(self, text: str) -> None:
        self.text = normalise(text)
        self.reading = FactReading()
        self.found: dict[str, set[Any]] = {}
        self.impossible: list[str] = []  # facts stated in a way that cannot be true

    def saw(self, fact: str, value: Any) -> None:
        self.found.setdefault(fact, set()).add(value)

    def settle(self) -> FactReading:
        r = self.reading
        for fact, values in self.found.items():
            if len(values) == 1:
                r.facts[fact] = next(iter(values))
            else:
                shown = " and ".join(sorted(_show(fact, v) for v in values))
                r.conflicts.append(f"{FACT_WORDS[fact]} ({shown})")
        r.conflicts += self.impossible
        history = r.facts.pop("history", None)
        if history is not None:
            r.facts["prior_appointments"], r.facts["prior_no_shows"] = history
        r.unread = [
            words
            for fact, words in FACT_WORDS.items()
            if fact not in self.found
            and not any(text.startswith(words + " (") for text in self.impossible)
            and not (fact == "history" and history is not None)
        ]
        conditions = [FACT_WORDS[fact] for fact in CONDITIONS]
        if all(words in r.unread for words in conditions):  # none named: say it shortly
            at = r.unread.index(conditions[0])
            r.unread = [w for w in r.unread if w not in conditions]
            r.unread.insert(at, "the conditions (hypertension, diabetes, ...)")
        return r


def _show(fact: str, value: Any) -> str:
    if fact == "gender":
        return {"F": "she", "M": "he"}[value]
    if fact == "weekday":
        return value
    if fact == "history":
        return f"{value[1]} of {value[0]} missed"
    if fact in ("hypertension", "diabetes", "alcoholism", "handicap", "scholarship"):
        return "yes" if value else "no"
    if fact == "sms_received":
        return "sent" if value else "not sent"
    return str(value)


def _read_person(r: _Reader) -> None:
    t = r.text
    years_old = r"(?<!under )\b(\d{1,3})[- ]?(?:years?|yrs?)[- ]old\b"
    for m in re.finditer(rf"{years_old}|\baged? (\d{{1,3}})\b", t):
        r.saw("age", int(m.group(1) or m.group(2)))
    for m in re.finditer(r"\b(\d{1,3}) ?(?:yo|y/o)\b", t):
        r.saw("age", int(m.group(1)))
    if re.search(r"\b(?:baby|infant|newborn)\b", t):
        r.saw("age", 0)
    for age in sorted(v for v in r.found.get("age", set()) if v > 115):
        r.found["age"].discard(age)
        r.impossible.append(f"the age ({age})")
    if "age" in r.found and not r.found["age"]:
        del r.found["age"]
    words = set(re.findall(r"[a-z]+", t))
    if words & _FEMALE:
        r.saw("gender", "F")
    if words & _MALE:
        r.saw("gender", "M")


def _read_place(original: str) -> str:
    """The neighbourhood as written after "from" / "lives in" (capitals kept), or ""."""
    m = re.search(
        r"\b(?:from|lives in|living in|resident of) "
        r"((?:[A-ZÀ-Ý][\w´'-]*)(?: (?:das|dos|da|de|do|e|[A-ZÀ-Ý][\w´'-]*)\b)*)",
        original,
    )
    return m.group(1).upper() if m else ""


def _read_when(r: _Reader) -> None:
    t = r.text
    for day in WEEKDAYS:
        if re.search(rf"\b{day}s?\b", t):
            r.saw("weekday", day.title())
    if re.search(r"\bsame[- ]day\b|\bbooked (?:on the day|today|that day)\b", t):
        r.saw("lead_days", 0)
    ahead = r"(?:ahead|in advance|before(?:hand)?|earlier|prior|beforehand)"
    for m in re.finditer(rf"\b{_NUM} (days?|weeks?) {ahead}", t):
        n = _number(m.group(1))
        if n is not None:
            r.saw("lead_days", n * (7 if m.group(2).startswith("week") else 1))
    for m in re.finditer(rf"\ba (day|week) {ahead}", t):
        r.saw("lead_days", 7 if m.group(1) == "week" else 1)
    for m in re.finditer(rf"\blead time (?:of )?{_NUM} days?\b", t):
        n = _number(m.group(1))
        if n is not None:
            r.saw("lead_days", n)
    # The hour counts only in a sentence about the booking (an appointment's own hour is
    # not in the data).
    for sentence in re.split(r"[.;!?]", t):
        if not re.search(r"\b(?:book|booked|booking|made|scheduled|arranged)\b", sentence):
            continue
        for m in re.finditer(r"\bat (\d{1,2})(?::(\d{2}))? ?([ap]m)\b", sentence):
            hour = int(m.group(1))
            if 1 <= hour <= 12:
                r.saw("booking_hour", hour % 12 + (12 if m.group(3) == "pm" else 0))
        for m in re.finditer(r"\bat (\d{1,2}):(\d{2})\b(?! ?[ap]m)", sentence):
            if int(m.group(1)) <= 23:
                r.saw("booking_hour", int(m.group(1)))
        for m in re.finditer(r"\bat (noon|midday|midnight)\b", sentence):
            r.saw("booking_hour", 0 if m.group(1) == "midnight" else 12)


def negated(prefix: str) -> bool:
    """True when a term after `prefix` (its clause up to the term) is negated: a negation
    after the last verb, or just before it ("does not have")."""
    verbs = list(_VERB.finditer(prefix))
    if verbs:
        start = verbs[-1].start()
        before = prefix[:start].split()
        prefix = " ".join(before[-1:]) + " " + prefix[start:]
    return bool(_NEGATION.search(prefix))


def _flag(r: _Reader, fact: str, pattern: str) -> bool:
    """Each mention of `pattern`: 0 when negated in its clause, else 1. True when the text
    mentions it."""
    seen = False
    for clause in clauses(r.text):
        for m in re.finditer(pattern, clause):
            seen = True
            r.saw(fact, 0 if negated(clause[: m.start()]) else 1)
    return seen


def _read_conditions(r: _Reader) -> None:
    for fact, pattern in CONDITIONS.items():
        if fact == "handicap":
            counted = re.search(rf"\b{_NUM} disabilities\b", r.text)
            if counted and (n := _number(counted.group(1))) is not None:
                r.saw(fact, n)
                continue
        _flag(r, fact, rf"\b(?:{pattern})\b")
    if _NO_OTHER_CONDITIONS.search(r.text):  # "no other conditions": the rest are absent
        for fact in CONDITIONS:
            r.found.setdefault(fact, {0})


def _read_support(r: _Reader) -> None:
    _flag(r, "scholarship", rf"\b(?:{_SCHOLARSHIP})\b")
    _flag(r, "sms_received", _SMS)


def _read_history(r: _Reader) -> None:
    t = r.text
    kind = r"(?:earlier|previous|prior|past|last|former)"
    visits = r"(?:appointments?|visits?|consultations?)"
    owner = r"(?:(?:her|his|their|the) )?"
    if re.search(rf"\bfirst {visits}\b|\bno {kind} {visits}\b|\bnew patient\b", t):
        r.saw("history", (0, 0))
    for m in re.finditer(
        rf"\b(?:missed|skipped|did not attend|didn't attend) {_NUM} (?:of|out of) {owner}"
        rf"(?:{kind} )?{_NUM} (?:{kind} )?{visits}",
        t,
    ):
        missed, prior = _number(m.group(1)), _number(m.group(2))
        if missed is not None and prior is not None:
            r.saw("history", (prior, missed))
    for m in re.finditer(
        rf"\b(attended|kept|missed|skipped) (?:all|every one of|both|each of)? ?{owner}"
        rf"{_NUM}? ?{kind} {visits}",
        t,
    ):
        said = re.search(rf"{_NUM} ?{kind}", m.group(0).split(" ", 1)[1])
        prior = _number(said.group(1)) if said else (2 if " both " in m.group(0) else None)
        if prior is None and re.search(rf"\b(?:one|only) {kind} {visits[:-1]}", m.group(0)):
            prior = 1
        if prior is not None:
            r.saw("history", (prior, prior if m.group(1) in ("missed", "skipped") else 0))
    for m in re.finditer(rf"\b(attended|missed) {owner}(?:one|only) {kind} appointment\b", t):
        r.saw("history", (1, 1 if m.group(1) == "missed" else 0))
    impossible = {(p, m) for p, m in r.found.get("history", set()) if m > p}
    for prior, missed in sorted(impossible):
        r.found["history"].discard((prior, missed))
        r.impossible.append(f"the earlier appointments ({missed} missed of {prior})")
    if impossible and not r.found["history"]:
        del r.found["history"]


def read_facts(text: str) -> FactReading:
    """The facts of `text`, each read on its own (see the module docstring)."""
    r = _Reader(text)
    _read_person(r)
    _read_when(r)
    _read_conditions(r)
    _read_support(r)
    _read_history(r)
    reading = r.settle()
    if not reading.unread and not reading.conflicts:
        reading.row = {
            "gender": reading.facts["gender"],
            "age": int(reading.facts["age"]),
            "neighbourhood": _read_place(str(text)),
            "weekday": reading.facts["weekday"],
            "lead_days": int(reading.facts["lead_days"]),
            "booking_hour": int(reading.facts["booking_hour"]),
            **{fact: int(reading.facts[fact]) for fact in CONDITIONS},
            "scholarship": int(reading.facts["scholarship"]),
            "sms_received": int(reading.facts["sms_received"]),
            "prior_appointments": int(reading.facts["prior_appointments"]),
            "prior_no_shows": int(reading.facts["prior_no_shows"]),
        }
    return reading


def looks_english(text: str) -> bool:
    """False for a text of some length mostly in another script or with hardly any common
    English words (the adapters were trained on English statements)."""
    letters = [c for c in str(text) if c.isalpha()]
    if len(letters) >= 12 and sum(c > "\u024f" for c in letters) > len(letters) / 3:
        return False  # mostly outside the Latin script
    words = re.findall(r"[^\W\d_]+", str(text).lower())
    if len(words) < 5:
        return True  # too short to say
    return sum(w in _ENGLISH for w in words) >= 0.2 * len(words)


def about_an_appointment(text: str, reading: FactReading | None = None) -> bool:
    """True when the text talks about an appointment or states some of its facts."""
    reading = reading or read_facts(text)
    return bool(_APPOINTMENT_WORDS.search(normalise(text))) or len(reading.facts) >= 3


def text_notes(text: str, reading: FactReading | None = None) -> list[str]:
    """Short notes for a text the models were not trained on (empty for a plain statement):
    not English, not about an appointment, or contradicting itself."""
    reading = reading or read_facts(text)
    notes = []
    if not looks_english(text):
        notes.append(
            "The text does not look like English; the adapters learned from English "
            "statements, so their scores may mean little."
        )
    elif not about_an_appointment(text, reading):
        notes.append(
            "The text does not look like a statement about an appointment; the scores may "
            "mean little."
        )
    if reading.conflicts:
        notes.append(
            f"The text contradicts itself on {_join(reading.conflicts)}; the scores may mean "
            "little."
        )
    return notes
