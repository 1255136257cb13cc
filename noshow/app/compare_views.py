"""Pure functions behind the Compare tab: clean a statement, render one from a small form,
score it with a generative and a classifier adapter plus the tabular baseline (whose facts
come from the form, a data set row, an example, or are read back from the statement),
explain each result (threshold and where it came from, base rate, why the generative word
can differ from the prediction, the data set's outcome), change one fact and see what the
models predict then (what-if), and evaluate all of them on a test split (metrics, curves,
disagreements, a CSV of predictions) with progress and an ETA.

Nothing here imports Gradio, so tests call these directly:

    from noshow.app.compare_views import compare_statement, render_compare_html
    result = compare_statement("A 34-year-old woman ...", gen_path, clf_path)
    html = render_compare_html(result)

    from noshow.app.compare_views import what_if
    change = what_if(row, "SMS reminder", "no", gen_path, clf_path, baseline=baseline)

    from noshow.app.compare_views import batch_compare, BaselineCache
    batch = batch_compare(rows, gen_path, clf_path, BaselineCache().get(entry))

Model calls go through `noshow.inference.serving` (an `AdapterService`, or a loader function wrapped
in one): concurrent Compares share forwards, a batch runs as background chunks behind
them. A missing folder or an adapter of the wrong approach comes back as a message in its
slot, never as an exception.
"""

from __future__ import annotations

import csv
import functools
import html
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.config import APPROACHES

MAX_STATEMENT_CHARS = 2000
# A batch on a 2-core CPU scores ~5 rows/s with both adapters: 200 rows is ~40 s; a GPU
# takes the 1,000-row default in seconds.
DEFAULT_BATCH_ROWS = 1000
DEFAULT_BATCH_ROWS_CPU = 200
MAX_BATCH_ROWS = 20_000
DISAGREEMENT_ROWS = 20
INTERACTIVE_TIMEOUT_S = 120.0
# Where an adapter's threshold comes from: training picks it on the validation split
# (noshow.evaluation.report.build_report -> choose_threshold, objective F1).
THRESHOLD_SOURCE = "chosen on the adapter's validation split, where F1 peaked"
BASELINE_THRESHOLD_SOURCE = "chosen on the loaded data's validation split, where F1 peaked"

GENERATIVE, CLASSIFIER = APPROACHES  # the two adapter slots, by approach
BASELINE = "baseline"
HYBRID = "hybrid"  # a result's {approach: slot} of the adapters that carry a hybrid.json
SLOT_TITLES = {
    GENERATIVE: "Generative adapter",
    CLASSIFIER: "Classifier adapter",
    BASELINE: "Tabular baseline",
}
MODEL_NAMES = {
    GENERATIVE: "generative",
    CLASSIFIER: "classifier",
    BASELINE: "tabular baseline",
}


def hybrid_key(approach: str) -> str:
    """A batch result's column key for the hybrid of the `approach` adapter."""
    return f"{HYBRID}_{approach}"


def model_name(key: str) -> str:
    """The display name of a batch result's model key (adapters, baseline, hybrids)."""
    if key.startswith(HYBRID + "_"):
        return f"hybrid ({key[len(HYBRID) + 1 :]} + tabular)"
    return MODEL_NAMES.get(key, key)


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

Loader = Callable[..., Any]
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class CompareInputError(ValueError):
    """Input the Compare tab cannot score; the message says what to change."""


# ----------------------------------------------------------------------------- input


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
            "The statement is empty: type one, pick an example, choose a record id or fill "
            "the form and press Render."
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


# ----------------------------------------------------------------------------- adapters


def as_service(source: Any = None) -> Any:
    """An `AdapterService` from `source`: a service (as is), a loader function (tests, the
    public demo's listed-only loader) or None (any folder, `get_predictor`)."""
    from noshow.inference.serving import AdapterService

    if isinstance(source, AdapterService):
        return source
    return AdapterService(loader=source)


def load_slot(
    path: Any, approach: str, source: Any = None, *, background: bool = False, owner: str = ""
) -> tuple[Any, str | None]:
    """(predictor, None) or (None, message) for the adapter chosen in one slot. `source` is an
    AdapterService or a loader (see `as_service`); the predictor's calls go through the
    scheduler, as background work (chunked, behind Compares) when `background`."""
    if not path or not str(path).strip():
        return None, (
            f"No {approach} adapter chosen: pick one from the list (press Refresh after a "
            "training run finishes) or train one in the Train tab."
        )
    service = as_service(source)
    try:
        predictor = service.load(str(path).strip(), approach)
    except Exception as e:  # noqa: BLE001 - shown in the slot instead of a traceback
        from noshow.app.common import user_message

        return None, user_message(e)
    return service.wrap(predictor, background=background, owner=owner), None


def adapter_meta(predictor: Any) -> dict[str, Any]:
    """The adapter's noshow.json (threshold, and calibration once training stores one);
    {} for predictors without a folder (tests' fakes)."""
    folder = getattr(predictor, "adapter_dir", None)
    if folder is None:
        return dict(getattr(predictor, "meta", None) or {})
    return _read_meta(str(folder))


@functools.lru_cache(maxsize=64)
def _read_meta(folder: str) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / "noshow.json").read_text())
    except (OSError, ValueError):
        return {}


def calibration_line(calibrator: Any, p: float) -> str:
    """What this card's P means, in a clinician's words: calibrated on validation rows
    (noshow.evaluation.calibration, applied by noshow.inference.predict before any P is shown), or not."""
    if calibrator is None or getattr(calibrator, "method", "identity") == "identity":
        return (
            "Not calibrated (no calibration.json with this adapter): read P as a score for "
            "ranking patients, not as a frequency."
        )
    return (
        f"Calibrated on {int(calibrator.rows):,} validation appointments "
        f"({calibrator.method} scaling): of 100 appointments scored like this one, about "
        f"{round(100 * p)} were missed."
    )


def _answers_in_words(approach: Any) -> bool:
    """Whether this card's model also answers in words (the baseline and hybrid do not)."""
    from noshow.modeling.approaches import REGISTRY

    spec = REGISTRY.get(str(approach))
    return bool(spec is not None and spec.answers_in_words)


def _slot_error(approach: str, error: str) -> dict[str, Any]:
    return {"approach": approach, "name": None, "p": None, "error": error}


def _scored_slot(approach: str, predictor: Any, path: Any, scored: Any) -> dict[str, Any]:
    """A card's data from one `noshow.inference.scheduler.Scored`."""
    threshold = float(getattr(predictor, "threshold", 0.5))
    meta = adapter_meta(predictor)
    p = float(scored.p)
    out: dict[str, Any] = {
        "approach": approach,
        "name": getattr(predictor, "name", None) or Path(str(path)).name,
        "p": p,
        "threshold": threshold,
        "threshold_source": meta.get("threshold_source") or THRESHOLD_SOURCE,
        "label": int(p >= threshold),
        "calibration": calibration_line(getattr(predictor, "calibrator", None), p),
        # the forward that scored it (0 when answered from the cache)
        "latency_ms": 0.0 if scored.cached else scored.run_ms,
        "queue_ms": scored.queue_ms,
        "batch_size": 0 if scored.cached else scored.batch_size,
        "cached": scored.cached,
        "generated": scored.answer if _answers_in_words(approach) else None,
        "weights": getattr(predictor, "weights", None),
        "error": None,
    }
    return out


def score_statements(
    statements: Sequence[str],
    paths: Mapping[str, Any],
    source: Any = None,
    owner: str = "",
) -> dict[str, list[dict[str, Any]]]:
    """Score `statements` with the adapter chosen for each approach in `paths`
    ({approach: path}); every adapter's call is queued before any is waited for, so they
    share the scheduler's next round. Returns {approach: [slot per statement]}; a slot
    whose `error` says why it has no score (missing folder, wrong approach, scoring failed)."""
    out, pending = _submit_all(statements, paths, as_service(source), owner)
    return _collect(out, pending, paths, len(statements))


def score_slot(
    path: Any, approach: str, statement: str, source: Any = None, *, owner: str = ""
) -> dict[str, Any]:
    """P(no-show), label at the adapter's threshold, timing and (generative) the answer text
    for one statement (`source`: see `as_service`).

    Keys: approach, name, p, threshold, threshold_source, label, calibration, latency_ms,
    queue_ms, batch_size, cached, generated, weights, error.
    """
    return score_statements([statement], {approach: path}, source, owner)[approach][0]


# ----------------------------------------------------------------------------- baseline


@dataclass
class Baseline:
    """A tabular baseline fitted on one data set's train split, or why there is none."""

    model: Any = None
    threshold: float = 0.5
    error: str | None = None
    train_rows: int = 0

    def predict(self, rows: pd.DataFrame) -> np.ndarray | None:
        if self.model is None:
            return None
        from noshow.evaluation.report import baseline_predict

        return baseline_predict(self.model, rows)


def fit_baseline(
    frame: pd.DataFrame, seed: int = 0, params: Mapping[str, Any] | None = None
) -> Baseline:
    """Fit the baseline on the train split; its threshold is the max-F1 one on validation.
    With `params` (a hybrid's `baseline_params`): the tuned baseline a run reported, refitted
    with its stored settings (one fit, no grid)."""
    from noshow.evaluation.baseline import refit_tuned_baseline
    from noshow.evaluation.report import baseline_predict, choose_threshold, fit_tabular_baseline

    if "split" not in frame.columns:
        return Baseline(error="the data has no split column, so the baseline has no train rows.")
    train_rows = frame[frame["split"] == "train"]
    try:
        if params:
            model = refit_tuned_baseline(train_rows, dict(params), seed=seed)
        else:
            model = fit_tabular_baseline(train_rows, seed=seed)
    except ValueError as e:  # BaselineError: text-only files, one class, ...
        return Baseline(error=f"tabular baseline unavailable: {e}")
    val = frame[frame["split"] == "validation"]
    threshold = 0.5
    if len(val) and val["no_show"].nunique() == 2:
        threshold = choose_threshold(val["no_show"].to_numpy(), baseline_predict(model, val))
    return Baseline(model=model, threshold=float(threshold), train_rows=len(train_rows))


class BaselineCache:
    """One fitted baseline per loaded data set (keyed by the data cache key), fitted once in
    a background thread so a slow fit (tens of seconds on the full Kaggle file) never blocks
    more than the caller's `timeout`."""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._items: dict[str, Baseline] = {}
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def get(
        self,
        entry: Any,
        timeout: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Baseline:
        """The baseline for a `DataEntry` (key + frame), fitting it on first use; with
        `params`, the tuned one with those settings (`fit_baseline`), kept apart.

        Waits at most `timeout` seconds (None = until fitted); if the fit is still running
        then, returns a Baseline whose `error` says so (the fit carries on).
        """
        key = str(entry.key)
        if params:
            key += "|tuned:" + json.dumps(dict(params), sort_keys=True, default=str)
        with self._lock:
            if key in self._items:
                return self._items[key]
            done = self._pending.get(key)
            if done is None:
                done = self._pending[key] = threading.Event()
                frame = entry.frame
                threading.Thread(
                    target=self._fit,
                    args=(key, frame, done, params),
                    name="noshow-baseline",
                    daemon=True,
                ).start()
        if not done.wait(timeout):
            return Baseline(
                error="the tabular baseline is still being fitted on this data set's train "
                "split (about half a minute on the full Kaggle file); its score appears on a "
                "later Compare."
            )
        with self._lock:
            return self._items.get(key) or Baseline(error="the tabular baseline fit was lost.")

    def _fit(
        self,
        key: str,
        frame: pd.DataFrame,
        done: threading.Event,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            baseline = fit_baseline(frame, params=params)
        except Exception as e:  # noqa: BLE001 - reported in the baseline's slot
            baseline = Baseline(error=f"tabular baseline unavailable: {e}")
        with self._lock:
            self._items[key] = baseline
            while len(self._items) > self.max_entries:
                self._items.pop(next(iter(self._items)))
            self._pending.pop(key, None)
        done.set()


def score_baseline(
    baseline: Baseline | None, row: Mapping[str, Any] | None, reason: str | None = None
) -> dict[str, Any]:
    """The baseline's P for one row (form, data set row or a parsed statement); without a
    row, `reason` (why the facts could not be read) becomes the slot's error."""
    return score_baseline_rows(baseline, [row], reason)[0]


def score_baseline_rows(
    baseline: Baseline | None,
    rows: Sequence[Mapping[str, Any] | None],
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """`score_baseline` for several rows in one call (a what-if scores two)."""
    slots: list[dict[str, Any]] = []
    for row in rows:
        out: dict[str, Any] = {"approach": BASELINE, "name": "tabular baseline", "p": None}
        if row is None:
            out["error"] = reason or (
                "The baseline needs the appointment's facts: use a record id, the form or a "
                "statement written like the examples."
            )
        elif baseline is None or baseline.model is None:
            out["error"] = (baseline.error if baseline else None) or "No baseline for this data."
        slots.append(out)
    todo = [i for i, slot in enumerate(slots) if "error" not in slot]
    if not todo:
        return slots
    start = time.perf_counter()
    try:
        ps = baseline.predict(pd.DataFrame([dict(rows[i]) for i in todo]))
    except Exception as e:  # noqa: BLE001 - e.g. a Statement/NoShow row without features
        for i in todo:
            slots[i]["error"] = f"tabular baseline unavailable: {e}"
        return slots
    ms = (time.perf_counter() - start) * 1000
    for i, p in zip(todo, ps, strict=True):
        slots[i].update(
            name=f"gradient boosting, {baseline.train_rows:,} train rows",
            p=float(p),
            threshold=baseline.threshold,
            threshold_source=BASELINE_THRESHOLD_SOURCE,
            label=int(p >= baseline.threshold),
            latency_ms=ms,
            error=None,
        )
    return slots


def score_baseline_rows_on_cpu_thread(
    baseline: Baseline | None,
    rows: Sequence[Mapping[str, Any] | None],
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """`score_baseline_rows` on the CPU inference thread, in turn with the adapters' forwards.

    Run beside a forward (in the caller's thread) it preempts one of the forward's two
    OpenMP threads, and the whole team waits: both get slower (BENCHMARKS.md, "The app under
    load and in the browser")."""
    if baseline is None or baseline.model is None or all(row is None for row in rows):
        return score_baseline_rows(baseline, rows, reason)  # nothing to compute
    from noshow.inference.cpu.thread import run_on_cpu_thread

    return run_on_cpu_thread(score_baseline_rows, baseline, rows, reason)


TunedBaselines = Callable[[Mapping[str, Any]], Baseline]  # params -> the tuned baseline
NO_FACTS_FOR_HYBRID = "No hybrid: it needs the appointment's facts, as the baseline does."


def blend_text(hybrid: Any) -> str:
    """How a hybrid mixes its two inputs, in words."""
    return (
        f"Blends the adapter's P with a tuned tabular model's P: weights "
        f"{hybrid.w_adapter:.2f} (adapter) and {hybrid.w_baseline:.2f} (tabular), fitted on "
        f"{int(hybrid.rows):,} validation appointments."
    )


def score_hybrids(
    predictors: Mapping[str, Any],
    adapter_p: Mapping[str, Sequence[float | None]],
    rows: Sequence[Mapping[str, Any] | None] | pd.DataFrame,
    tuned_baselines: TunedBaselines | None,
) -> dict[str, list[dict[str, Any]]]:
    """{approach: [hybrid slot per row]} for each adapter that carries a hybrid.json
    (`noshow.evaluation.hybrid`): its calibrated P blended with the tuned baseline's P for the row.

    The tuned baseline is the one the adapter's run reported, refitted from the hybrid's
    `baseline_params` by `tuned_baselines(params)`; without the row's facts (free text that
    could not be read back), the slot says so."""
    table = rows if isinstance(rows, pd.DataFrame) else None
    n = len(rows)
    out: dict[str, list[dict[str, Any]]] = {}
    # Adapters trained on one data set share the tuned baseline: predict its rows once.
    predicted: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    for approach, predictor in predictors.items():
        hybrid = getattr(predictor, "hybrid", None)
        if hybrid is None:
            continue
        slots = [
            {"approach": HYBRID, "name": f"{approach} adapter + tuned tabular", "p": None}
            for _ in range(n)
        ]
        out[approach] = slots
        todo = []
        for i in range(n):
            if adapter_p[approach][i] is None:
                slots[i]["error"] = "the hybrid needs the adapter's score."
            elif table is None and rows[i] is None:
                slots[i]["error"] = NO_FACTS_FOR_HYBRID
            else:
                todo.append(i)
        if not todo:
            continue
        baseline, error = None, None
        if not hybrid.baseline_params:
            error = (
                "this adapter's hybrid.json does not name its tabular model's settings (it "
                "was made before noshow stored them): evaluate or train the adapter again."
            )
        else:
            baseline = tuned_baselines(hybrid.baseline_params) if tuned_baselines else None
            if baseline is None or baseline.model is None:
                error = (baseline.error if baseline else None) or "no tuned baseline here."
        if error is not None:
            for i in todo:
                slots[i]["error"] = error
            continue
        frame = (
            table.iloc[todo] if table is not None else pd.DataFrame([dict(rows[i]) for i in todo])
        )
        try:
            key = (id(baseline), tuple(todo))
            if key not in predicted:
                predicted[key] = baseline.predict(frame)
            p_base = predicted[key]
            p = hybrid.predict([adapter_p[approach][i] for i in todo], p_base)
        except Exception as e:  # noqa: BLE001 - e.g. rows without tabular columns
            for i in todo:
                slots[i]["error"] = f"hybrid unavailable: {e}"
            continue
        threshold = float(hybrid.threshold if hybrid.threshold is not None else 0.5)
        for i, value in zip(todo, p, strict=True):
            slots[i].update(
                p=float(value),
                threshold=threshold,
                threshold_source="chosen on the adapter's validation split, where the "
                "hybrid's F1 peaked",
                label=int(value >= threshold),
                blend=blend_text(hybrid),
                error=None,
            )
    return out


def base_rate(frame: pd.DataFrame) -> float | None:
    """The share of no-shows in the data's train split (all rows without a split)."""
    if "no_show" not in frame.columns or frame.empty:
        return None
    rows = frame[frame["split"] == "train"] if "split" in frame.columns else frame
    if rows.empty:
        rows = frame
    return float(pd.to_numeric(rows["no_show"], errors="coerce").mean())


# ----------------------------------------------------------------------------- one statement


def resolve_facts(
    statement: str, state: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None, str | None, int | None]:
    """(row, where the facts came from, why there are none, true label) for `statement`.

    `state` is what produced the text in the box (form, example, data set row) and counts
    while the text is unchanged; otherwise the facts are read back from the statement
    (`noshow.data.statements.parse_statement`), and the reason says where that failed.
    """
    from noshow.data.statements import StatementParseError, parse_statement

    if isinstance(state, Mapping) and state.get("statement") == statement and state.get("row"):
        truth = state.get("truth")
        return dict(state["row"]), state.get("source"), None, None if truth is None else int(truth)
    try:
        return parse_statement(statement), "read from the statement", None, None
    except StatementParseError as e:
        where = str(e).split(":", 1)[0].rstrip(".")  # "The text does not follow ... at the booking"
        return None, None, f"No baseline: {where[:1].lower()}{where[1:]}.", None


def _submit_all(
    statements: Sequence[str], paths: Mapping[str, Any], service: Any, owner: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    out: dict[str, list[dict[str, Any]]] = {}
    pending: dict[str, Any] = {}
    for approach, path in paths.items():
        predictor, error = load_slot(path, approach, service)
        if predictor is None:
            out[approach] = [_slot_error(approach, error) for _ in statements]
            continue
        try:
            pending[approach] = (predictor, service.submit(predictor, statements, owner))
        except Exception as e:  # noqa: BLE001 - BusyError: too many waiting for this user
            from noshow.app.common import user_message

            out[approach] = [_slot_error(approach, user_message(e)) for _ in statements]
    return out, pending


def _collect(
    out: dict[str, list[dict[str, Any]]],
    pending: Mapping[str, Any],
    paths: Mapping[str, Any],
    n: int,
) -> dict[str, list[dict[str, Any]]]:
    for approach, (predictor, future) in pending.items():
        try:
            answers = future.result(INTERACTIVE_TIMEOUT_S)
        except TimeoutError:
            message = "no answer in time: the server is very busy; try again in a minute."
            out[approach] = [_slot_error(approach, f"Scoring failed: {message}")] * n
            continue
        except Exception as e:  # noqa: BLE001 - a scoring failure stays inside its slot
            from noshow.app.common import user_message

            message = f"Scoring failed: {user_message(e)}"
            out[approach] = [_slot_error(approach, message) for _ in range(n)]
            continue
        out[approach] = [_scored_slot(approach, predictor, paths[approach], a) for a in answers]
    return {a: out[a] for a in paths}


def compare_statement(
    text: Any,
    generative_path: Any,
    classifier_path: Any,
    *,
    row: Mapping[str, Any] | None = None,
    baseline: Baseline | None = None,
    loader: Loader | None = None,
    source: Any = None,
    owner: str = "",
    facts_source: str | None = None,
    reason: str | None = None,
    truth: int | None = None,
    base_rate: float | None = None,
    tuned_baselines: TunedBaselines | None = None,
) -> dict[str, Any]:
    """Score one statement with both adapters, the tabular baseline and each adapter's
    hybrid (`score_hybrids`; `tuned_baselines` gives the tuned baseline it blends).

    `row` holds the appointment's facts for the baseline (from the form, a data set row, an
    example, or read back from the statement: see `resolve_facts`); without it the baseline
    slot says why (`reason`). `truth` is the data set's label for a data set row;
    `base_rate` the train split's no-show rate. `source` (or `loader`): see `as_service`;
    `owner` is the caller's session for the scheduler's fair queue.

    Returns {statement, notice, generative, classifier, baseline, hybrid ({approach: slot}),
    agree, agree_text, row, facts_source, truth, base_rate, server_ms}; each slot is a `score_slot` dict whose
    `error` says why it has no score. Raises CompareInputError for an empty statement.
    """
    start = time.perf_counter()
    statement, notice = prepare_statement(text)
    paths = {GENERATIVE: generative_path, CLASSIFIER: classifier_path}
    service = as_service(source if source is not None else loader)
    out, pending = _submit_all([statement], paths, service, owner)
    base = score_baseline_rows_on_cpu_thread(baseline, [row], reason)[0]
    slots = _collect(out, pending, paths, 1)
    predictors = {approach: predictor for approach, (predictor, _) in pending.items()}
    hybrids = score_hybrids(
        predictors, {a: [slots[a][0].get("p")] for a in predictors}, [row], tuned_baselines
    )
    gen, clf = slots[GENERATIVE][0], slots[CLASSIFIER][0]
    agree = None
    if gen.get("label") is not None and clf.get("label") is not None:
        agree = gen["label"] == clf["label"]
    return {
        "statement": statement,
        "notice": notice,
        GENERATIVE: gen,
        CLASSIFIER: clf,
        BASELINE: base,
        HYBRID: {approach: hybrid_slots[0] for approach, hybrid_slots in hybrids.items()},
        "agree": agree,
        "agree_text": agreement_text(agree, gen, clf),
        "row": dict(row) if row is not None else None,
        "facts_source": facts_source if row is not None else None,
        "truth": truth,
        "base_rate": base_rate,
        "server_ms": (time.perf_counter() - start) * 1000,
    }


def label_text(label: int | None) -> str:
    return {1: "No-show", 0: "Shows up"}.get(label, "-") if label is not None else "-"


def agreement_text(agree: bool | None, gen: Mapping[str, Any], clf: Mapping[str, Any]) -> str:
    if agree is None:
        return "Agreement: needs a score from both adapters."
    gap = abs(gen["p"] - clf["p"])
    if agree:
        return f"The adapters agree: {label_text(gen['label'])} (P differ by {gap:.2f})."
    return (
        f"The adapters disagree: generative says {label_text(gen['label'])}, classifier says "
        f"{label_text(clf['label'])} (P differ by {gap:.2f})."
    )


def threshold_line(slot: Mapping[str, Any], base_rate: float | None) -> str:
    """One line: what the threshold is, where it came from, and the base rate."""
    where = slot.get("threshold_source") or THRESHOLD_SOURCE
    line = f"Threshold {float(slot['threshold']):.2f}: {where}."
    if base_rate is not None:
        line += f" On average {base_rate:.0%} of appointments are missed (train split)."
    return line


def answer_line(slot: Mapping[str, Any]) -> str:
    """Why the generative adapter's word can differ from its prediction."""
    said = slot.get("generated")
    p, threshold = float(slot["p"]), float(slot["threshold"])
    rule = (
        'The word is the model\'s most likely next word: "Yes" only when P > 0.50. The '
        f"prediction compares P with the threshold {threshold:.2f} instead"
    )
    word_label = {"yes": 1, "no": 0}.get(str(said or "").strip().strip(".").lower())
    if word_label is None:
        return rule + "; here the model wrote neither Yes nor No."
    if word_label == slot["label"]:
        return rule + ", and here both say the same."
    if word_label == 0:
        return (
            rule + f", so P = {p:.2f}, between {threshold:.2f} and 0.50, gives the word "
            "No and the prediction No-show."
        )
    return rule + f", so P = {p:.2f} above 0.50 but below the threshold gives Yes and Shows up."


def timing_line(slot: Mapping[str, Any]) -> str:
    """How this card's score was served: cached, or the forward's time, size and wait."""
    short = str(slot.get("weights") or "").split(",")[0].split(" (")[0]
    weights = f" ({short} weights)" if short else ""
    if slot.get("cached"):
        return f"Answered from the cache: this statement was scored before{weights}."
    if slot.get("latency_ms") is None:
        return ""
    size = int(slot.get("batch_size") or 1)
    shared = f", one forward for {size} statements" if size > 1 else ""
    wait = slot.get("queue_ms")
    waited = f"; waited {wait:.0f} ms for the model" if wait is not None else ""
    return f"Latency: {slot['latency_ms']:.0f} ms{weights}{shared}{waited}."


def _bar(p: float, threshold: float) -> str:
    pct = max(0.0, min(1.0, p)) * 100
    mark = max(0.0, min(1.0, threshold)) * 100
    color = "#c0392b" if p >= threshold else "#2e86c1"
    return (
        '<div class="noshow-gauge" style="position:relative;height:18px;border-radius:9px;'
        'background:#e8ecf1;overflow:hidden;margin:6px 0;">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{color};"></div>'
        f'<div title="threshold {threshold:.2f}" style="position:absolute;top:0;left:{mark:.1f}%;'
        'width:2px;height:100%;background:#222;"></div></div>'
    )


_NOTE = 'style="color:#57606a;font-size:0.88em;margin-top:3px;"'


def _card(
    slot: Mapping[str, Any] | None,
    title: str,
    base_rate: float | None = None,
    truth: int | None = None,
    facts_source: str | None = None,
) -> str:
    esc = html.escape
    if slot is None:
        return ""
    head = f'<div style="font-weight:600;margin-bottom:4px;">{esc(title)}</div>'
    box = (
        'style="flex:1;min-width:240px;border:1px solid #d0d7de;border-radius:10px;'
        'padding:10px 14px;"'
    )
    kind = esc(str(slot.get("approach") or ""))
    if slot.get("p") is None:
        # a baseline or hybrid without facts is expected for free text; an adapter without a
        # score is not
        style = "info" if slot.get("approach") in (BASELINE, HYBRID) else "error"
        body = f'<div class="noshow-msg-{style}">{esc(str(slot.get("error") or "no score"))}</div>'
        return f'<div class="noshow-card" data-approach="{kind}" {box}>{head}{body}</div>'
    p, threshold = float(slot["p"]), float(slot["threshold"])
    lines = []
    if slot.get("name"):
        lines.append(f'<div style="color:#57606a;font-size:0.9em;">{esc(str(slot["name"]))}</div>')
    lines += [
        f'<div style="font-size:1.6em;font-weight:700;">P(no-show) = '
        f'<span class="noshow-p">{p:.3f}</span></div>',
    ]
    lines += [
        _bar(p, threshold),
        f"<div>Prediction: <b>{esc(label_text(slot['label']))}</b> "
        f"(P {'≥' if slot['label'] else '<'} threshold {threshold:.2f})</div>",
        f'<div class="noshow-why" {_NOTE}>{esc(threshold_line(slot, base_rate))}</div>',
    ]
    if slot.get("calibration"):
        lines.append(f'<div class="noshow-calibrated" {_NOTE}>{esc(slot["calibration"])}</div>')
    if slot.get("blend"):
        lines.append(f'<div class="noshow-blend" {_NOTE}>{esc(slot["blend"])}</div>')
    if _answers_in_words(slot.get("approach")):
        said = slot.get("generated")
        shown = esc(said) if said else "<i>(nothing)</i>"
        lines.append(f"<div>Generated answer: <code>{shown}</code></div>")
        lines.append(f'<div class="noshow-why" {_NOTE}>{esc(answer_line(slot))}</div>')
    if slot.get("approach") == BASELINE and facts_source:
        lines.append(f"<div {_NOTE}>Facts: {esc(facts_source)}.</div>")
    if truth is not None:
        right = int(slot["label"]) == int(truth)
        mark = "✓ matches" if right else "✗ differs from"
        lines.append(
            f'<div class="noshow-truth-{"ok" if right else "miss"}">{mark} the data set\'s '
            "outcome</div>"
        )
    timing = timing_line(slot)
    if timing:
        lines.append(f'<div class="noshow-timing" {_NOTE}>{esc(timing)}</div>')
    return f'<div class="noshow-card" data-approach="{kind}" {box}>{head}{"".join(lines)}</div>'


def statement_key(statement: str) -> str:
    """A short stable id of a statement (the result's data-key: what a browser test or
    timing script waits for)."""
    import hashlib

    return hashlib.sha1(statement.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def render_compare_html(result: Mapping[str, Any]) -> str:
    """Side-by-side cards (P with a gauge, prediction, why, timing, generated text), the
    data set's outcome for a data set row, agreement and the server's time."""
    truth = result.get("truth")
    rate = result.get("base_rate")
    facts = result.get("facts_source")
    cards = [
        _card(result.get(GENERATIVE), SLOT_TITLES[GENERATIVE], rate, truth),
        _card(result.get(CLASSIFIER), SLOT_TITLES[CLASSIFIER], rate, truth),
    ]
    if result.get(BASELINE) is not None:
        cards.append(_card(result[BASELINE], SLOT_TITLES[BASELINE], rate, truth, facts))
    hybrids = [
        _card(slot, f"Hybrid: {approach} + tabular", rate, truth)
        for approach, slot in (result.get(HYBRID) or {}).items()
    ]
    parts = []
    if result.get("notice"):
        parts.append(f'<div class="noshow-msg-info">{html.escape(result["notice"])}</div>')
    if truth is not None:
        where = f" ({html.escape(str(facts))})" if facts else ""
        outcome = "missed the appointment" if int(truth) else "showed up"
        parts.append(
            f'<div class="noshow-msg-info noshow-truth">In the data set this patient '
            f"<b>{outcome}</b>{where}: true label {label_text(int(truth))}.</div>"
        )
    row = '<div style="display:flex;gap:12px;flex-wrap:wrap;margin-bottom:12px;">{}</div>'
    parts.append(row.format("".join(cards)))
    if hybrids:  # a row of their own: each blends a card above with the baseline
        parts.append(row.format("".join(hybrids)))
    kind = "ok" if result.get("agree") else ("error" if result.get("agree") is False else "info")
    parts.append(
        f'<div class="noshow-msg-{kind}" style="margin-top:8px;">'
        f"{html.escape(result.get('agree_text') or '')}</div>"
    )
    if result.get("server_ms") is not None:
        parts.append(
            f'<div class="noshow-server-time" {_NOTE}>Answered in '
            f"{float(result['server_ms']):.0f} ms on the server.</div>"
        )
    key = statement_key(str(result.get("statement", "")))
    return f'<div class="noshow-result" data-key="{key}">{"".join(parts)}</div>'


SUMMARY_SLOT_KEYS = (
    "name",
    "p",
    "calibration",
    "blend",
    "threshold",
    "threshold_source",
    "label",
    "latency_ms",
    "queue_ms",
    "batch_size",
    "cached",
    "generated",
    "weights",
    "error",
)


def compare_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """A flat JSON summary of a comparison (what the API returns next to the HTML)."""
    out: dict[str, Any] = {
        "statement": result["statement"],
        "notice": result.get("notice"),
        "agree": result.get("agree"),
        "facts_source": result.get("facts_source"),
        "row": result.get("row"),
        "truth": result.get("truth"),
        "base_rate": result.get("base_rate"),
        "server_ms": result.get("server_ms"),
    }
    for key in (GENERATIVE, CLASSIFIER, BASELINE):
        slot = result.get(key)
        if slot is None:
            continue
        out[key] = {k: slot.get(k) for k in SUMMARY_SLOT_KEYS if k in slot}
    out[HYBRID] = {
        approach: {k: slot.get(k) for k in SUMMARY_SLOT_KEYS if k in slot}
        for approach, slot in (result.get(HYBRID) or {}).items()
    }
    return out


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


def what_if(
    row: Mapping[str, Any],
    fact: str,
    value: Any,
    generative_path: Any,
    classifier_path: Any,
    *,
    baseline: Baseline | None = None,
    source: Any = None,
    owner: str = "",
) -> dict[str, Any]:
    """P(no-show) from both adapters and the baseline for `row` and for `row` with `fact`
    changed to `value`, side by side: what the models predict, not what the change causes.

    Returns {fact, old, new, before, after (statements), models: {approach: (slot before,
    slot after)}}. Raises CompareInputError for a value out of range or no change.
    """
    from noshow.data.statements import render_statement

    changed = change_fact(row, fact, value)
    old, new = fact_text(row, fact), fact_text(changed, fact)
    if changed == dict(row):
        raise CompareInputError(f"{fact} is already {old}: pick another value to compare.")
    before, after = render_statement(row), render_statement(changed)
    paths = {GENERATIVE: generative_path, CLASSIFIER: classifier_path}
    service = as_service(source)
    out, pending = _submit_all([before, after], paths, service, owner)
    base = score_baseline_rows_on_cpu_thread(baseline, [row, changed])
    slots = _collect(out, pending, paths, 2)
    slots[BASELINE] = base
    return {
        "fact": fact,
        "old": old,
        "new": new,
        "before": before,
        "after": after,
        "models": {key: (pair[0], pair[1]) for key, pair in slots.items()},
    }


WHAT_IF_NOTE = (
    "These are the models' predictions for the changed statement, not the effect the change "
    "would have: the models learned associations in past appointments (reminders, for "
    "example, went to appointments booked further ahead), which need not be causes."
)


def render_what_if_html(result: Mapping[str, Any]) -> str:
    """A table: per model, P(no-show) now, P with the fact changed, and the difference."""
    esc = html.escape
    rows = []
    for key, (before, after) in result["models"].items():
        name = MODEL_NAMES.get(key, key)
        if before.get("p") is None or after.get("p") is None:
            error = before.get("error") or after.get("error") or "no score"
            rows.append(
                f'<tr data-model="{esc(key)}"><td>{esc(name)}</td>'
                f'<td colspan="4" class="noshow-msg-error">{esc(str(error))}</td></tr>'
            )
            continue
        p0, p1 = float(before["p"]), float(after["p"])
        delta = p1 - p0
        arrow = "↑" if delta > 0.0005 else ("↓" if delta < -0.0005 else "→")
        color = "#c0392b" if delta > 0.0005 else ("#2e86c1" if delta < -0.0005 else "#57606a")
        rows.append(
            f'<tr data-model="{esc(key)}"><td>{esc(name)}</td>'
            f'<td class="noshow-p-before">{p0:.3f}</td>'
            f'<td class="noshow-p-after">{p1:.3f}</td>'
            f'<td style="color:{color};font-weight:600;">{arrow} {delta:+.3f}</td>'
            f"<td>{esc(label_text(before.get('label')))} → {esc(label_text(after.get('label')))}"
            "</td></tr>"
        )
    head = (
        f"<div>If <b>{esc(result['fact'])}</b> were <b>{esc(result['new'])}</b> instead of "
        f"<b>{esc(result['old'])}</b>, the models would predict:</div>"
    )
    table = (
        '<table class="noshow-what-if" style="border-collapse:collapse;margin:6px 0;">'
        "<thead><tr><th>model</th><th>P(no-show) now</th><th>P if changed</th>"
        "<th>change</th><th>prediction</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    note = f'<div class="noshow-why" {_NOTE}>{esc(WHAT_IF_NOTE)}</div>'
    changed = f"<details><summary>Changed statement</summary>{esc(result['after'])}</details>"
    return f'<div class="noshow-what-if-result">{head}{table}{note}{changed}</div>'


def what_if_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The what-if as flat JSON: per model P before and after and the difference."""
    models = {}
    for key, (before, after) in result["models"].items():
        p0, p1 = before.get("p"), after.get("p")
        models[key] = {
            "p_before": p0,
            "p_after": p1,
            "delta": None if p0 is None or p1 is None else p1 - p0,
            "label_before": before.get("label"),
            "label_after": after.get("label"),
            "error": before.get("error") or after.get("error"),
        }
    return {
        "fact": result["fact"],
        "old": result["old"],
        "new": result["new"],
        "statement_after": result["after"],
        "models": models,
    }


# ----------------------------------------------------------------------------- batch


@dataclass
class BatchResult:
    """What a batch comparison produced: per-row predictions, metrics and figures."""

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    per_model: dict[str, dict[str, Any]]
    disagreements: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    auc: dict[str, Any] | None = (
        None  # noshow.evaluation.report.compare_auc: intervals, differences
    )
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # adapters' P before calibration


def select_eval_rows(
    frame: pd.DataFrame,
    max_rows: int = DEFAULT_BATCH_ROWS,
    *,
    gold: Mapping[int, int] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """The rows to evaluate on and notes about them.

    Without `gold`: the test split, stratified down to `max_rows`. With `gold` ({record_id:
    label} from the label store): every clinician-labelled record in the loaded data, its label
    replaced by the clinicians' consensus.
    """
    notes: list[str] = []
    max_rows = int(max_rows)
    if max_rows < 1:
        raise CompareInputError("Rows to evaluate must be at least 1.")
    if gold is not None:
        ids = {int(k): int(v) for k, v in gold.items()}
        rows = frame[frame["record_id"].isin(list(ids))].copy()
        if rows.empty:
            raise CompareInputError(
                f"None of the {len(ids):,} clinician-labelled records are in the loaded data "
                "set: label some in the Label tab (or load the data set they came from)."
            )
        changed = int((rows["record_id"].map(ids) != rows["no_show"]).sum())
        rows["no_show"] = rows["record_id"].map(ids).astype(int)
        notes.append(
            f"Gold set: {len(rows):,} clinician-labelled records (consensus labels; {changed:,} "
            "differ from the data set's label)."
        )
        if "split" in rows.columns:
            seen = int((rows["split"] != "test").sum())
            if seen:
                notes.append(
                    f"{seen:,} of them are outside the test split: adapters trained on this data "
                    "(and the baseline) may have seen them, so scores can be optimistic."
                )
    else:
        if "split" not in frame.columns:
            raise CompareInputError("The loaded data has no split: reload it in the Data tab.")
        rows = frame[frame["split"] == "test"]
        if rows.empty:
            raise CompareInputError("The test split is empty: load more data or another split.")
        notes.append(f"Test split: {len(rows):,} rows.")
    if len(rows) > max_rows:
        if rows["no_show"].nunique() == 2:
            frac = max_rows / len(rows)
            rows = rows.groupby("no_show", group_keys=False).sample(frac=frac, random_state=seed)
        else:
            rows = rows.sample(n=max_rows, random_state=seed)
        rows = rows.sort_index().head(max_rows)  # rounding per class may add one row
        notes.append(f"Evaluated a stratified sample of {len(rows):,} rows (the row cap).")
    return rows.sort_index().reset_index(drop=True), notes


@dataclass
class BatchProgress:
    """Where a batch comparison is: rows scored over all adapters, and the time left."""

    done: int
    total: int
    phase: str
    eta_s: float | None = None


def batch_compare(
    rows: pd.DataFrame,
    generative_path: Any,
    classifier_path: Any,
    baseline: Baseline | Callable[[], Baseline] | None = None,
    *,
    tuned_baselines: TunedBaselines | None = None,
    loader: Loader | None = None,
    source: Any = None,
    owner: str = "",
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchResult:
    """Score `rows` (from `select_eval_rows`) with each available model and compare them.

    The adapters score as the scheduler's background work (chunks of about a quarter second,
    the first one row, so progress and an ETA show from the first row; Compares go
    first). `baseline` may be a function that returns it: it is called after the adapters,
    so a baseline still being fitted does not hold up their progress. `should_stop()` is
    checked between chunks (raises noshow.inference.scheduler.Cancelled). Each adapter with a
    hybrid.json adds its hybrid (`score_hybrids`, the tuned baseline from `tuned_baselines`);
    every ROC-AUC gets a 95% interval and each model's difference to the baseline
    (`compare_auc`). A model that cannot be loaded is left out with a note; raises CompareInputError when no model at
    all can score.
    """
    labels = rows["no_show"].astype(int).to_numpy()
    statements = rows["statement"].astype(str).tolist()
    n = len(statements)
    service = as_service(source if source is not None else loader)
    report = on_progress or (lambda progress: None)
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    loaded: dict[str, Any] = {}
    for approach, path in ((GENERATIVE, generative_path), (CLASSIFIER, classifier_path)):
        report(BatchProgress(0, n * 2, f"Loading the {approach} adapter"))
        predictor, error = load_slot(path, approach, service)
        if predictor is None:
            notes.append(f"{SLOT_TITLES[approach]} left out: {error}")
            continue
        loaded[approach] = predictor.predictor  # the scheduler takes the plain predictor
    total = n * len(loaded)
    sched = service.scheduler
    order = list(loaded)
    for k, approach in enumerate(order):
        predictor = loaded[approach]
        started = time.perf_counter()
        before = k * n
        report(
            BatchProgress(before, total, f"Scoring with the {approach} adapter (0 of {n:,} rows)")
        )

        def on_chunk(
            done: int, _n: int, approach=approach, predictor=predictor, k=k, started=started
        ) -> None:
            per_row = (time.perf_counter() - started) / max(done, 1)  # wall time, waits included
            eta = (n - done) * per_row
            for later in order[k + 1 :]:
                mine = sched.seconds_per_statement(predictor)
                theirs = sched.seconds_per_statement(loaded[later])
                eta += n * per_row * (theirs / mine if mine and theirs else 1.0)
            phase = f"Scoring with the {approach} adapter ({done:,} of {n:,} rows)"
            report(BatchProgress(k * n + done, total, phase, eta))

        p = sched.score_background(
            predictor, statements, owner, on_chunk=on_chunk, should_stop=should_stop
        )
        scores[approach] = np.asarray(p, dtype=float)
        thresholds[approach] = float(getattr(predictor, "threshold", 0.5))
        names[approach] = str(getattr(predictor, "name", "") or "")
    if should_stop is not None and should_stop():  # Stop during the last chunk: no fits
        from noshow.inference.scheduler import Cancelled

        raise Cancelled("the batch comparison was stopped")
    if callable(baseline) and not isinstance(baseline, Baseline):
        report(BatchProgress(total, total, "Waiting for the tabular baseline fit", None))
        baseline = baseline()
    if baseline is not None and baseline.model is not None:
        try:
            scores[BASELINE] = np.asarray(baseline.predict(rows), dtype=float)
            thresholds[BASELINE] = baseline.threshold
            names[BASELINE] = f"fitted on {baseline.train_rows:,} train rows"
        except Exception as e:  # noqa: BLE001 - text-only rows: report, keep the adapters
            notes.append(f"Tabular baseline left out: {e}")
    elif baseline is not None and baseline.error:
        notes.append(f"Tabular baseline left out: {baseline.error}")
    adapters = {a: loaded[a] for a in loaded if a in scores}
    if tuned_baselines is not None and any(getattr(p, "hybrid", None) for p in adapters.values()):
        report(BatchProgress(total, total, "Blending each adapter with the tuned baseline", None))
        adapter_p = {a: scores[a].tolist() for a in adapters}
        for approach, slots in score_hybrids(adapters, adapter_p, rows, tuned_baselines).items():
            if slots and slots[0]["p"] is not None:
                key = hybrid_key(approach)
                scores[key] = np.array([slot["p"] for slot in slots], dtype=float)
                thresholds[key] = float(slots[0]["threshold"])
                names[key] = "adapter and tuned tabular P, blended"
            elif slots:
                notes.append(f"Hybrid of the {approach} adapter left out: {slots[0]['error']}")
    raw = {}
    for approach, predictor in adapters.items():
        calibrator = getattr(predictor, "calibrator", None)
        if calibrator is not None and calibrator.method != "identity":
            raw[approach] = calibrator.invert(scores[approach])
    if not scores:
        raise CompareInputError("Nothing could score these rows. " + " ".join(notes))
    report(BatchProgress(total, total, "Computing metrics and intervals", 0.0))
    from noshow.evaluation.report import compare_auc, compute_metrics

    per_model = {key: compute_metrics(labels, p, thresholds[key]) for key, p in scores.items()}
    pairs = [(k, BASELINE) for k in scores if k != BASELINE and BASELINE in scores]
    pairs += [(hybrid_key(a), a) for a in adapters if hybrid_key(a) in scores]
    groups = rows["patient_id"].to_numpy() if "patient_id" in rows.columns else None
    try:
        auc = compare_auc(
            labels, scores, pairs, groups=groups, names={k: model_name(k) for k in scores}
        )
    except ValueError as e:  # e.g. too few rows for an interval
        auc = None
        notes.append(f"No intervals: {e}")
    predictions = pd.DataFrame({"record_id": rows["record_id"].to_numpy()})
    if "split" in rows.columns:
        predictions["split"] = rows["split"].astype(str).to_numpy()
    predictions["label"] = labels
    for key, p in scores.items():
        predictions[f"p_{key}"] = p
        predictions[f"pred_{key}"] = (p >= thresholds[key]).astype(int)
    predictions["statement"] = statements
    for approach, p in raw.items():
        predictions[f"p_{approach}_uncalibrated"] = p
    return BatchResult(
        predictions=predictions,
        metrics=metrics_table(per_model, names, auc),
        per_model=per_model,
        disagreements=disagreement_table(predictions),
        notes=notes,
        auc=auc,
        raw=raw,
    )


def progress_html(progress: Mapping[str, Any]) -> str:
    """A batch job's progress (a `BackgroundJob.snapshot()` or its fields): a bar, scores
    done (rows x adapters), time so far and the estimate of the time left."""
    from noshow.app.common import format_duration

    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    fraction = done / total if total else 0.0
    eta = progress.get("eta_s")
    left = f", about {format_duration(eta)} left" if eta is not None and done else ""
    rows = f"{done:,} of {total:,} scores" if total else "starting"
    elapsed = format_duration(progress.get("elapsed_s"))
    phase = html.escape(str(progress.get("phase") or ""))
    bar = (
        '<div style="height:10px;border-radius:5px;background:#e8ecf1;overflow:hidden;">'
        f'<div style="width:{fraction * 100:.1f}%;height:100%;background:#2e86c1;"></div></div>'
    )
    return (
        f'<div class="noshow-msg-info noshow-batch-progress" data-done="{done}" '
        f'data-total="{total}">{bar}<div>{phase}: {rows} ({fraction:.0%}), '
        f"{elapsed} so far{left}. Closing the page or pressing Stop ends it.</div></div>"
    )


def _round(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


def interval_text(estimate: Mapping[str, Any] | None) -> str:
    """ "0.702-0.741" from a compare_auc estimate; "" without bounds."""
    if not estimate or estimate.get("low") is None or estimate.get("high") is None:
        return ""
    return f"{float(estimate['low']):.3f}-{float(estimate['high']):.3f}"


def metrics_table(
    per_model: Mapping[str, Mapping[str, Any]],
    names: Mapping[str, str] | None = None,
    auc: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per model: ROC-AUC with its 95% interval (from `auc`, a compare_auc result),
    PR-AUC, F1, sensitivity, specificity, Brier, threshold."""
    intervals = (auc or {}).get("auc") or {}
    rows = []
    for key, m in per_model.items():
        rows.append(
            {
                "model": model_name(key),
                "name": (names or {}).get(key, ""),
                "rows": int(m["n"]),
                "ROC-AUC": _round(m["roc_auc"]),
                "ROC-AUC 95% CI": interval_text(intervals.get(key)),
                "PR-AUC": _round(m["pr_auc"]),
                "F1": _round(m["f1"]),
                "sensitivity": _round(m["sensitivity"]),
                "specificity": _round(m["specificity"]),
                "Brier": _round(m["brier"]),
                "threshold": _round(m["threshold"]),
            }
        )
    return pd.DataFrame(rows)


def disagreement_table(predictions: pd.DataFrame, limit: int = DISAGREEMENT_ROWS) -> pd.DataFrame:
    """The statements where two models' P differ most (the two adapters when both scored)."""
    keys = [k for k in (GENERATIVE, CLASSIFIER, BASELINE) if f"p_{k}" in predictions.columns]
    columns = ["record_id", "label", "p_a", "p_b", "gap", "statement"]
    if len(keys) < 2:
        return pd.DataFrame(columns=columns)
    a, b = keys[0], keys[1]
    gap = (predictions[f"p_{a}"] - predictions[f"p_{b}"]).abs()
    top = predictions.assign(gap=gap).sort_values("gap", ascending=False, kind="stable").head(limit)
    table = pd.DataFrame(
        {
            "record_id": top["record_id"].to_numpy(),
            "label": top["label"].map(label_text).to_numpy(),
            f"P {model_name(a)}": top[f"p_{a}"].round(3).to_numpy(),
            f"P {model_name(b)}": top[f"p_{b}"].round(3).to_numpy(),
            "gap": top["gap"].round(3).to_numpy(),
            "statement": top["statement"].to_numpy(),
        }
    )
    return table


def batch_figures(result: BatchResult) -> dict[str, Any]:
    """ROC curves (each AUC with its interval), the calibration plot (the adapters' P before
    and after their calibration when they carry one; else observed vs predicted for every
    model) and the confusion matrices."""
    from noshow.evaluation.calibration import plot_reliability
    from noshow.evaluation.report import plot_calibration, plot_confusion, plot_roc

    preds = result.predictions
    labels = preds["label"].to_numpy()
    curves = {model_name(key): (labels, preds[f"p_{key}"].to_numpy()) for key in result.per_model}
    intervals = {
        model_name(key): estimate for key, estimate in ((result.auc or {}).get("auc") or {}).items()
    }
    if result.raw:
        calibration = plot_reliability(
            {
                model_name(a): (labels, raw, preds[f"p_{a}"].to_numpy())
                for a, raw in result.raw.items()
            },
            split="these rows",
            stacked=True,  # a half-width slot beside the ROC curves
        )
    else:
        calibration = plot_calibration(curves)
    return {
        "roc": plot_roc(curves, intervals=intervals or None),
        "calibration": calibration,
        "confusion": plot_confusion({model_name(k): m for k, m in result.per_model.items()}),
    }


def export_folder() -> Path:
    """Where downloads are written: a folder under the system temp dir (Gradio serves it)."""
    folder = Path(tempfile.gettempdir()) / "noshow-exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_predictions_csv(predictions: pd.DataFrame, folder: str | Path | None = None) -> Path:
    """Write the predictions to a new CSV for download, atomically; text cells that a
    spreadsheet would run as a formula get a leading apostrophe."""
    from noshow.system.files import escape_spreadsheet_cell

    folder = Path(folder) if folder is not None else export_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"compare-predictions-{stamp}-", suffix=".csv.tmp", dir=folder
    )
    final = Path(tmp_name[: -len(".tmp")])
    text_columns = [
        c for c in predictions.columns if not pd.api.types.is_numeric_dtype(predictions[c])
    ]
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([escape_spreadsheet_cell(str(c)) for c in predictions.columns])
            for record in predictions.itertuples(index=False):
                cells = []
                for column, value in zip(predictions.columns, record, strict=True):
                    if column in text_columns:
                        cells.append(escape_spreadsheet_cell("" if pd.isna(value) else str(value)))
                    elif isinstance(value, float | np.floating):
                        cells.append(f"{float(value):.6g}")
                    else:
                        cells.append(str(value))
                writer.writerow(cells)
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return final


def batch_summary(result: BatchResult) -> str:
    """Markdown: the notes and a one-line verdict per model."""
    lines = [f"- {note}" for note in result.notes]
    intervals = (result.auc or {}).get("auc") or {}
    for key, m in result.per_model.items():
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        span = interval_text(intervals.get(key))
        span = f" (95% CI {span})" if span else ""
        lines.append(f"- **{model_name(key)}**: ROC-AUC {auc}{span} on {m['n']:,} rows.")
    for difference in (result.auc or {}).get("differences") or []:
        if difference.get("text"):
            lines.append(f"- {difference['text']}")
    if result.raw:
        lines.append(
            "- The adapters' P are calibrated (fitted on their validation split); the "
            "calibration plot shows them before and after."
        )
    return "\n".join(lines)
