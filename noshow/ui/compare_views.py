"""Pure functions behind the Compare tab: clean a statement, render one from a small form,
score it with a generative and a classifier adapter (plus the tabular baseline), and
evaluate all of them on a test split (metrics, curves, disagreements, a CSV of predictions).

Nothing here imports Gradio, so tests call these directly:

    from noshow.ui.compare_views import compare_statement, render_compare_html
    result = compare_statement("A 34-year-old woman ...", gen_path, clf_path)
    html = render_compare_html(result)

    from noshow.ui.compare_views import batch_compare, BaselineCache
    batch = batch_compare(entry.frame, gen_path, clf_path, BaselineCache().get(entry))

Loading an adapter goes through `noshow.predict.get_predictor` (one load per process); a
missing folder or an adapter of the wrong approach comes back as a message in its slot,
never as an exception.
"""

from __future__ import annotations

import csv
import html
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_STATEMENT_CHARS = 2000
DEFAULT_BATCH_ROWS = 1000
MAX_BATCH_ROWS = 20_000
DISAGREEMENT_ROWS = 20
# Rows scored per call in batch mode: small enough to report progress, large enough that
# padding and Python overhead stay small.
BATCH_CHUNK = 256

GENERATIVE, CLASSIFIER, BASELINE = "generative", "classifier", "baseline"
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

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
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
    from noshow.statements import render_statement

    row = form_row(**answers)
    return render_statement(row), row


# ----------------------------------------------------------------------------- adapters


def adapter_choices(
    runs_dir: str | Path, shipped_dir: str | Path
) -> dict[str, list[tuple[str, str]]]:
    """Dropdown choices per approach: (label, path), shipped adapters first, newest runs next."""
    from noshow.predict import list_adapters

    choices: dict[str, list[tuple[str, str]]] = {GENERATIVE: [], CLASSIFIER: []}
    for item in list_adapters(runs_dir, shipped_dir):
        threshold = item.get("threshold")
        extra = f", threshold {float(threshold):.2f}" if threshold is not None else ""
        label = f"{item['name']} ({item['source']}{extra})"
        choices.setdefault(item["approach"], []).append((label, str(item["path"])))
    return choices


def _default_loader(path: str, expected_approach: str) -> Any:
    from noshow.predict import get_predictor

    return get_predictor(path, expected_approach=expected_approach)


def listed_only_loader(list_paths: Callable[[], Collection[str]]) -> Loader:
    """A loader that refuses any folder not in `list_paths()` (public demo: visitors must not
    probe the server's file system through the adapter box)."""

    def load(path: str, expected_approach: str) -> Any:
        from noshow.predict import PredictError

        if str(path) not in set(list_paths()):
            raise PredictError(
                "In the public demo only the listed adapters can be used: pick one from the list."
            )
        return _default_loader(path, expected_approach=expected_approach)

    return load


def load_slot(path: Any, approach: str, loader: Loader | None = None) -> tuple[Any, str | None]:
    """(predictor, None) or (None, message) for the adapter chosen in one slot."""
    if not path or not str(path).strip():
        return None, (
            f"No {approach} adapter chosen: pick one from the list (press Refresh after a "
            "training run finishes) or train one in the Train tab."
        )
    try:
        return (loader or _default_loader)(str(path).strip(), expected_approach=approach), None
    except Exception as e:  # noqa: BLE001 - shown in the slot instead of a traceback
        from noshow.ui.common import user_message

        return None, user_message(e)


def score_slot(
    path: Any, approach: str, statement: str, loader: Loader | None = None
) -> dict[str, Any]:
    """P(no-show), label at the adapter's threshold, latency and (generative) the answer text.

    Keys: approach, name, p, threshold, label, latency_ms, generated, weights, error.
    """
    out: dict[str, Any] = {"approach": approach, "name": None, "p": None, "error": None}
    predictor, error = load_slot(path, approach, loader)
    if predictor is None:
        out["error"] = error
        return out
    try:
        start = time.perf_counter()
        if hasattr(predictor, "predict_with_answer"):  # P and the answer text in one pass
            p, generated = predictor.predict_with_answer(statement)
        else:
            p, generated = float(predictor.predict_proba([statement])[0]), None
        out["latency_ms"] = (time.perf_counter() - start) * 1000
    except Exception as e:  # noqa: BLE001 - a scoring failure stays inside its slot
        from noshow.ui.common import user_message

        out["error"] = f"Scoring failed: {user_message(e)}"
        return out
    threshold = float(getattr(predictor, "threshold", 0.5))
    out.update(
        name=getattr(predictor, "name", Path(str(path)).name),
        p=p,
        threshold=threshold,
        label=int(p >= threshold),
        generated=generated if approach == GENERATIVE else None,
        weights=getattr(predictor, "weights", None),
    )
    return out


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
        from noshow.evaluate import baseline_predict

        return baseline_predict(self.model, rows)


def fit_baseline(frame: pd.DataFrame, seed: int = 0) -> Baseline:
    """Fit the baseline on the train split; its threshold is the max-F1 one on validation."""
    from noshow.evaluate import baseline_predict, choose_threshold, fit_tabular_baseline

    if "split" not in frame.columns:
        return Baseline(error="the data has no split column, so the baseline has no train rows.")
    train_rows = frame[frame["split"] == "train"]
    try:
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

    def get(self, entry: Any, timeout: float | None = None) -> Baseline:
        """The baseline for a `DataEntry` (key + frame), fitting it on first use.

        Waits at most `timeout` seconds (None = until fitted); if the fit is still running
        then, returns a Baseline whose `error` says so (the fit carries on).
        """
        key = str(entry.key)
        with self._lock:
            if key in self._items:
                return self._items[key]
            done = self._pending.get(key)
            if done is None:
                done = self._pending[key] = threading.Event()
                frame = entry.frame
                threading.Thread(
                    target=self._fit, args=(key, frame, done), name="noshow-baseline", daemon=True
                ).start()
        if not done.wait(timeout):
            return Baseline(
                error="the tabular baseline is still being fitted on this data set's train "
                "split; its score appears on a later Compare."
            )
        with self._lock:
            return self._items.get(key) or Baseline(error="the tabular baseline fit was lost.")

    def _fit(self, key: str, frame: pd.DataFrame, done: threading.Event) -> None:
        try:
            baseline = fit_baseline(frame)
        except Exception as e:  # noqa: BLE001 - reported in the baseline's slot
            baseline = Baseline(error=f"tabular baseline unavailable: {e}")
        with self._lock:
            self._items[key] = baseline
            while len(self._items) > self.max_entries:
                self._items.pop(next(iter(self._items)))
            self._pending.pop(key, None)
        done.set()


def score_baseline(baseline: Baseline | None, row: Mapping[str, Any] | None) -> dict[str, Any]:
    """The baseline's P for one row (form or data set row); an error when it cannot."""
    out: dict[str, Any] = {"approach": BASELINE, "name": "tabular baseline", "p": None}
    if row is None:
        out["error"] = "The baseline needs the tabular fields: use a record id or the form."
        return out
    if baseline is None or baseline.model is None:
        out["error"] = (baseline.error if baseline else None) or "No baseline for this data."
        return out
    start = time.perf_counter()
    try:
        p = float(baseline.predict(pd.DataFrame([dict(row)]))[0])
    except Exception as e:  # noqa: BLE001 - e.g. a Statement/NoShow row without features
        out["error"] = f"tabular baseline unavailable: {e}"
        return out
    out.update(
        p=p,
        threshold=baseline.threshold,
        label=int(p >= baseline.threshold),
        latency_ms=(time.perf_counter() - start) * 1000,
        error=None,
    )
    return out


# ----------------------------------------------------------------------------- one statement


def compare_statement(
    text: Any,
    generative_path: Any,
    classifier_path: Any,
    *,
    row: Mapping[str, Any] | None = None,
    baseline: Baseline | None = None,
    loader: Loader | None = None,
) -> dict[str, Any]:
    """Score one statement with both adapters (and the baseline when `row` is given).

    Returns {statement, notice, generative, classifier, baseline, agree, agree_text}; each slot
    is a `score_slot` dict whose `error` says why it has no score. Raises CompareInputError
    for an empty statement.
    """
    statement, notice = prepare_statement(text)
    gen = score_slot(generative_path, GENERATIVE, statement, loader)
    clf = score_slot(classifier_path, CLASSIFIER, statement, loader)
    base = score_baseline(baseline, row) if row is not None else None
    agree = None
    if gen.get("label") is not None and clf.get("label") is not None:
        agree = gen["label"] == clf["label"]
    return {
        "statement": statement,
        "notice": notice,
        GENERATIVE: gen,
        CLASSIFIER: clf,
        BASELINE: base,
        "agree": agree,
        "agree_text": agreement_text(agree, gen, clf),
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


def _card(slot: Mapping[str, Any] | None, title: str) -> str:
    esc = html.escape
    if slot is None:
        return ""
    head = f'<div style="font-weight:600;margin-bottom:4px;">{esc(title)}</div>'
    box = (
        'style="flex:1;min-width:220px;border:1px solid #d0d7de;border-radius:10px;'
        'padding:10px 14px;"'
    )
    if slot.get("p") is None:
        body = f'<div class="noshow-msg-error">{esc(str(slot.get("error") or "no score"))}</div>'
        return f'<div class="noshow-card" {box}>{head}{body}</div>'
    p, threshold = float(slot["p"]), float(slot["threshold"])
    lines = [
        f'<div style="font-size:1.6em;font-weight:700;">P(no-show) = '
        f'<span class="noshow-p">{p:.3f}</span></div>',
        _bar(p, threshold),
        f"<div>Prediction: <b>{esc(label_text(slot['label']))}</b> "
        f"(threshold {threshold:.2f})</div>",
    ]
    if slot.get("name"):
        lines.insert(
            0, f'<div style="color:#57606a;font-size:0.9em;">{esc(str(slot["name"]))}</div>'
        )
    if slot.get("latency_ms") is not None:
        # "bf16 linears (fp32 activations), merged" -> "bf16 linears": the kind, briefly
        short = str(slot.get("weights") or "").split(",")[0].split(" (")[0]
        weights = f" ({esc(short)} weights)" if short else ""
        lines.append(f"<div>Latency: {slot['latency_ms']:.0f} ms{weights}</div>")
    if slot.get("approach") == GENERATIVE:
        said = slot.get("generated")
        shown = esc(said) if said else "<i>(nothing)</i>"
        lines.append(f"<div>Generated answer: <code>{shown}</code></div>")
    return f'<div class="noshow-card" {box}>{head}{"".join(lines)}</div>'


def render_compare_html(result: Mapping[str, Any]) -> str:
    """Side-by-side cards (P with a gauge, label, latency, generated text) and agreement."""
    cards = [_card(result.get(GENERATIVE), SLOT_TITLES[GENERATIVE])]
    cards.append(_card(result.get(CLASSIFIER), SLOT_TITLES[CLASSIFIER]))
    if result.get(BASELINE) is not None:
        cards.append(_card(result[BASELINE], SLOT_TITLES[BASELINE]))
    parts = []
    if result.get("notice"):
        parts.append(f'<div class="noshow-msg-info">{html.escape(result["notice"])}</div>')
    parts.append(f'<div style="display:flex;gap:12px;flex-wrap:wrap;">{"".join(cards)}</div>')
    kind = "ok" if result.get("agree") else ("error" if result.get("agree") is False else "info")
    parts.append(
        f'<div class="noshow-msg-{kind}" style="margin-top:8px;">'
        f"{html.escape(result.get('agree_text') or '')}</div>"
    )
    return "".join(parts)


def compare_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """A flat JSON summary of a comparison (what the API returns next to the HTML)."""
    out: dict[str, Any] = {
        "statement": result["statement"],
        "notice": result.get("notice"),
        "agree": result.get("agree"),
    }
    for key in (GENERATIVE, CLASSIFIER, BASELINE):
        slot = result.get(key)
        if slot is None:
            continue
        out[key] = {
            k: slot.get(k)
            for k in (
                "name",
                "p",
                "threshold",
                "label",
                "latency_ms",
                "generated",
                "weights",
                "error",
            )
            if k in slot
        }
    return out


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


def _score_in_chunks(
    predictor: Any,
    statements: list[str],
    on_progress: Callable[[float, str], None] | None,
    what: str,
) -> np.ndarray:
    out: list[float] = []
    for start in range(0, len(statements), BATCH_CHUNK):
        if on_progress is not None:
            on_progress(start / max(len(statements), 1), f"Scoring with the {what} adapter")
        out.extend(predictor.predict_proba(statements[start : start + BATCH_CHUNK]))
    return np.asarray(out, dtype=float)


def batch_compare(
    rows: pd.DataFrame,
    generative_path: Any,
    classifier_path: Any,
    baseline: Baseline | None = None,
    *,
    loader: Loader | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> BatchResult:
    """Score `rows` (from `select_eval_rows`) with each available model and compare them.

    A model that cannot be loaded is left out with a note; raises CompareInputError when no
    model at all can score.
    """
    labels = rows["no_show"].astype(int).to_numpy()
    statements = rows["statement"].astype(str).tolist()
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    for approach, path in ((GENERATIVE, generative_path), (CLASSIFIER, classifier_path)):
        predictor, error = load_slot(path, approach, loader)
        if predictor is None:
            notes.append(f"{SLOT_TITLES[approach]} left out: {error}")
            continue
        scores[approach] = _score_in_chunks(predictor, statements, on_progress, approach)
        thresholds[approach] = float(getattr(predictor, "threshold", 0.5))
        names[approach] = str(getattr(predictor, "name", "") or "")
    if baseline is not None and baseline.model is not None:
        try:
            scores[BASELINE] = np.asarray(baseline.predict(rows), dtype=float)
            thresholds[BASELINE] = baseline.threshold
            names[BASELINE] = f"fitted on {baseline.train_rows:,} train rows"
        except Exception as e:  # noqa: BLE001 - text-only rows: report, keep the adapters
            notes.append(f"Tabular baseline left out: {e}")
    elif baseline is not None and baseline.error:
        notes.append(f"Tabular baseline left out: {baseline.error}")
    if not scores:
        raise CompareInputError("Nothing could score these rows. " + " ".join(notes))
    if on_progress is not None:
        on_progress(1.0, "Computing metrics")
    from noshow.evaluate import compute_metrics

    per_model = {key: compute_metrics(labels, p, thresholds[key]) for key, p in scores.items()}
    predictions = pd.DataFrame({"record_id": rows["record_id"].to_numpy()})
    if "split" in rows.columns:
        predictions["split"] = rows["split"].astype(str).to_numpy()
    predictions["label"] = labels
    for key, p in scores.items():
        predictions[f"p_{key}"] = p
        predictions[f"pred_{key}"] = (p >= thresholds[key]).astype(int)
    predictions["statement"] = statements
    return BatchResult(
        predictions=predictions,
        metrics=metrics_table(per_model, names),
        per_model=per_model,
        disagreements=disagreement_table(predictions),
        notes=notes,
    )


def _round(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


def metrics_table(
    per_model: Mapping[str, Mapping[str, Any]], names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per model: ROC-AUC, PR-AUC, F1, sensitivity, specificity, Brier, threshold."""
    rows = []
    for key, m in per_model.items():
        rows.append(
            {
                "model": MODEL_NAMES.get(key, key),
                "name": (names or {}).get(key, ""),
                "rows": int(m["n"]),
                "ROC-AUC": _round(m["roc_auc"]),
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
            f"P {MODEL_NAMES[a]}": top[f"p_{a}"].round(3).to_numpy(),
            f"P {MODEL_NAMES[b]}": top[f"p_{b}"].round(3).to_numpy(),
            "gap": top["gap"].round(3).to_numpy(),
            "statement": top["statement"].to_numpy(),
        }
    )
    return table


def batch_figures(result: BatchResult) -> dict[str, Any]:
    """ROC curves and a calibration plot (one figure each) and the confusion matrices."""
    from noshow.evaluate import plot_calibration, plot_confusion, plot_roc

    preds = result.predictions
    curves = {
        MODEL_NAMES[key]: (preds["label"].to_numpy(), preds[f"p_{key}"].to_numpy())
        for key in result.per_model
    }
    return {
        "roc": plot_roc(curves),
        "calibration": plot_calibration(curves),
        "confusion": plot_confusion({MODEL_NAMES[k]: m for k, m in result.per_model.items()}),
    }


def export_folder() -> Path:
    """Where downloads are written: a folder under the system temp dir (Gradio serves it)."""
    folder = Path(tempfile.gettempdir()) / "noshow-exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_predictions_csv(predictions: pd.DataFrame, folder: str | Path | None = None) -> Path:
    """Write the predictions to a new CSV for download, atomically; text cells that a
    spreadsheet would run as a formula get a leading apostrophe."""
    from noshow.labels import escape_spreadsheet_cell

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
    for key, m in result.per_model.items():
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        lines.append(f"- **{MODEL_NAMES[key]}**: ROC-AUC {auc} on {m['n']:,} rows.")
    return "\n".join(lines)
