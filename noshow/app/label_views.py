"""Pure functions behind the Label tab: build an annotator's queue (random, "adapters disagree
most", "model contradicts the data set's label"), move through it, and render the item card,
its fields, model suggestions and progress. The label store (`noshow.labels.store.LabelStore`)
keeps every action; this module only decides what to show next.

Nothing here imports Gradio, so tests call these directly:

    from noshow.app.label_views import build_queue, next_position, progress_html
    queue = build_queue(entry.frame, "random", "Dr Ana", store)
    pos = next_position(queue, store.status_for("Dr Ana", queue), after=-1)

A session is a plain dict (kept in a `gr.State`): annotator, order, queue (record ids), pos,
shown_at (when the current item appeared, for seconds_spent) and reasons (why each ranked
item is in the queue).
"""

from __future__ import annotations

import html
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ORDER_RANDOM = "random"
ORDER_DISAGREE = "adapters disagree most"
ORDER_CONTRADICT = "model contradicts the data set's label"
QUEUE_ORDERS = (ORDER_RANDOM, ORDER_DISAGREE, ORDER_CONTRADICT)
QUEUE_SIZE = 50
# Rows scored to rank a queue: enough to find strong cases, few enough to score in seconds
# on a CPU (the bundled model scores about 20 statements per second there).
POOL_ROWS = 400
# One shuffle for everyone: annotators then see the same records first, so their labels
# overlap and Cohen's kappa can be measured.
SHUFFLE_SEED = 20160429

STATUS_TEXT = {"pending": "Pending", "submitted": "Submitted", "skipped": "Skipped"}
LABEL_TEXT = {1: "No-show", 0: "Shows up"}
BUTTON_LABELS = {"No-show [1]": "no_show", "Shows up [2]": "shows_up"}

GUIDELINES = """\
**How to label**
- Read the statement and answer: *would you expect this patient to miss the appointment?*
  Use what a clinic would know at booking time. The data set's own label is hidden until
  you answer, so it cannot anchor your judgement; it may be wrong, which is what corrections
  are for. Turn on *Show the data set's label* for a review session.
- **No-show [1]** = will miss it; **Shows up [2]** = will attend. **Skip [s]** when the
  statement is unclear or you cannot judge; skipping is recorded, not counted as a label.
- **Back [←]** returns to the previous item to correct it (the latest label counts);
  **[→]** moves on without recording anything.
- Model suggestions can anchor you: decide from the statement first, then glance at them.
- Add a note for anything unusual (contradictions, implausible values).
"""

Scorer = Callable[[str, list[str]], np.ndarray]


class LabelViewError(ValueError):
    """Input the Label tab cannot act on; the message says what to do."""


# ----------------------------------------------------------------------------- queue


def pending_rows(frame: pd.DataFrame, annotator: str, store: Any) -> pd.DataFrame:
    """Rows of `frame` that `annotator` has neither labelled nor skipped yet."""
    mine = store.current_labels(annotator)
    done = set(mine["record_id"].tolist())
    return frame[~frame["record_id"].isin(done)]


def shuffled(frame: pd.DataFrame, seed: int = SHUFFLE_SEED) -> pd.DataFrame:
    """`frame` in a fixed random order (the same for every annotator)."""
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order]


def rank_disagreement(p_a: Sequence[float], p_b: Sequence[float]) -> np.ndarray:
    """Indices ordering rows by |p_a - p_b|, largest first (ties keep the input order)."""
    gap = np.abs(np.asarray(p_a, dtype=float) - np.asarray(p_b, dtype=float))
    return np.argsort(-gap, kind="stable")


def contradiction_score(p: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """How confidently the model says the opposite of the data set's label: P(no-show) for
    rows labelled "shows up", 1 - P for rows labelled "no-show"."""
    q = np.asarray(p, dtype=float)
    y = np.asarray(labels, dtype=int)
    return np.where(y == 1, 1.0 - q, q)


def rank_contradiction(p: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """Indices ordering rows by `contradiction_score`, strongest first."""
    return np.argsort(-contradiction_score(p, labels), kind="stable")


SCORE_CHUNK = 25  # statements per progress update while ranking a queue


def scorers_with_progress(
    predictors: Mapping[str, Any], report: Callable[[float, str], None]
) -> dict[str, Scorer]:
    """`predict_proba` of each adapter, scoring in chunks and calling `report(fraction,
    text)` after each, the fraction over all adapters: ranking a queue scores up to
    POOL_ROWS statements per adapter, which takes a minute or more on a CPU."""
    names = list(predictors)

    def make(k: int, name: str) -> Scorer:
        def score(statements: list[str]) -> list[float]:
            out: list[float] = []
            for start in range(0, len(statements), SCORE_CHUNK):
                out += predictors[name].predict_proba(statements[start : start + SCORE_CHUNK])
                done = k * len(statements) + len(out)
                report(
                    done / (len(names) * max(len(statements), 1)),
                    f"Scoring {len(statements)} statements with the {name} adapter "
                    f"({len(out)}/{len(statements)})",
                )
            return out

        return score

    return {name: make(k, name) for k, name in enumerate(names)}


def build_queue(
    frame: pd.DataFrame,
    order: str,
    annotator: str,
    store: Any,
    *,
    scores: Mapping[str, Scorer] | None = None,
    size: int = QUEUE_SIZE,
    pool_rows: int = POOL_ROWS,
    seed: int = SHUFFLE_SEED,
) -> tuple[list[int], dict[int, str]]:
    """(record ids, reasons) for `annotator`'s next `size` items, pending ones only.

    `scores` maps an approach ("generative", "classifier") to a function that returns
    P(no-show) for a list of statements; the ranked orders need them (both adapters for
    "adapters disagree most", at least one for "model contradicts ..."). Raises
    LabelViewError when the order cannot be built, saying what is missing.
    """
    if order not in QUEUE_ORDERS:
        raise LabelViewError(f"Unknown queue order {order!r}: choose one of {QUEUE_ORDERS}.")
    # Shuffle first, then drop done records: everyone keeps the same relative order.
    pool = pending_rows(shuffled(frame, seed), annotator, store)
    if pool.empty:
        return [], {}
    scores = dict(scores or {})
    if order == ORDER_RANDOM:
        return [int(r) for r in pool["record_id"].head(size)], {}
    pool = pool.head(pool_rows)
    statements = pool["statement"].astype(str).tolist()
    if order == ORDER_DISAGREE:
        if len(scores) < 2:
            raise LabelViewError(
                "The order 'adapters disagree most' needs both a generative and a classifier "
                "adapter: choose them in the Compare tab (or pick the random order)."
            )
        (name_a, fa), (name_b, fb) = list(scores.items())[:2]
        p_a, p_b = np.asarray(fa(statements)), np.asarray(fb(statements))
        idx = rank_disagreement(p_a, p_b)[:size]
        reasons = {
            int(pool["record_id"].iloc[i]): f"{name_a} P={p_a[i]:.2f} vs {name_b} P={p_b[i]:.2f}"
            for i in idx
        }
    else:
        if not scores:
            raise LabelViewError(
                "The order 'model contradicts the data set's label' needs at least one "
                "adapter: choose one in the Compare tab (or pick the random order)."
            )
        probs = np.mean([np.asarray(f(statements), dtype=float) for f in scores.values()], axis=0)
        labels = pool["no_show"].astype(int).to_numpy()
        idx = rank_contradiction(probs, labels)[:size]
        who = " + ".join(scores)
        reasons = {
            int(pool["record_id"].iloc[i]): (
                f"{who} P(no-show)={probs[i]:.2f}, against the data set's label"
            )
            for i in idx
        }
    return [int(pool["record_id"].iloc[i]) for i in idx], reasons


def next_position(queue: Sequence[int], statuses: Mapping[int, str], after: int) -> int | None:
    """The first pending item after position `after`, else the first pending one before it,
    else None (the queue is done)."""
    n = len(queue)
    for pos in [*range(after + 1, n), *range(0, min(after + 1, n))]:
        if statuses.get(int(queue[pos]), "pending") == "pending":
            return pos
    return None


def position_of(queue: Sequence[int], record_id: Any, default: int) -> int:
    """Where `record_id` sits in `queue` (the record a button press was about), or `default`."""
    try:
        return [int(r) for r in queue].index(int(float(record_id)))
    except (TypeError, ValueError):
        return default


def new_session(annotator: str, order: str, queue: list[int], reasons: dict[int, str]) -> dict:
    return {
        "annotator": annotator,
        "order": order,
        "queue": [int(r) for r in queue],
        "reasons": {str(k): v for k, v in reasons.items()},
        "pos": None,
        "shown_at": time.time(),
    }


def new_submission_id() -> str:
    """A fresh id for one showing of an item (the presses about it send it back)."""
    return uuid.uuid4().hex


SHOWINGS_KEPT = 8  # showings a late press may still be about (their times, for seconds_spent)


def remember_showing(state: Mapping[str, Any], showing: str, now: float | None = None) -> dict:
    """The session's {showing id: when it appeared}, with `showing` added (the last few)."""
    shown = dict(state.get("shown") or {})
    shown[showing] = time.time() if now is None else now
    return dict(list(shown.items())[-SHOWINGS_KEPT:])


def shown_at(state: Mapping[str, Any], showing: str | None) -> float | None:
    """When the showing a press was about appeared (None when unknown)."""
    return (state.get("shown") or {}).get(showing) if showing else None


def press_message(event: Any) -> str:
    """What a label or skip press did, as the message box shows it: saved, changed (two
    answers to one showing: the later counts, both are kept), or a repeat stored once."""
    from noshow.app.common import info_box, ok_box

    if event is None:
        return info_box("Already saved (a repeated press is stored once).")
    rid = int(event.record_id)
    if event.label is None:
        return ok_box(f"Skipped record {rid}.")
    now, before = LABEL_TEXT[int(event.label)], event.previous_label
    if before is not None and int(before) != int(event.label):
        return ok_box(f"Changed record {rid} to {now} (was {LABEL_TEXT[int(before)]}).")
    return ok_box(f"Saved {now} for record {rid}.")


def parse_label(value: Any) -> str:
    """A button caption ("No-show [1]") or a store label ("no_show", "shows_up", 1, 0)."""
    text = str(value).strip()
    return BUTTON_LABELS.get(text, text)


def seconds_since(shown_at: Any, now: float | None = None) -> float:
    """Seconds spent on the item; 0 when unknown, capped at an hour (a forgotten tab)."""
    try:
        spent = (now or time.time()) - float(shown_at)
    except (TypeError, ValueError):
        return 0.0
    return float(min(max(spent, 0.0), 3600.0))


# ----------------------------------------------------------------------------- views


FIELD_NAMES = (
    ("age", "Age"),
    ("gender", "Gender"),
    ("neighbourhood", "Neighbourhood"),
    ("weekday", "Weekday"),
    ("lead_days", "Lead days"),
    ("booking_hour", "Booking hour"),
    ("sms_received", "SMS reminder"),
    ("scholarship", "Scholarship"),
    ("hypertension", "Hypertension"),
    ("diabetes", "Diabetes"),
    ("alcoholism", "Alcoholism"),
    ("handicap", "Disabilities"),
    ("prior_appointments", "Earlier appointments"),
    ("prior_no_shows", "Earlier no-shows"),
    ("split", "Split"),
)
_YES_NO = {"sms_received", "scholarship", "hypertension", "diabetes", "alcoholism"}


def fields_table(row: Mapping[str, Any]) -> pd.DataFrame:
    """The record's structured fields as a two-column table (empty for text-only files)."""
    items = []
    for key, name in FIELD_NAMES:
        if key not in row or pd.isna(row[key]):
            continue
        value = row[key]
        if key in _YES_NO:
            value = "Yes" if int(value) else "No"
        items.append((name, str(value)))
    return pd.DataFrame(items, columns=["field", "value"])


def item_html(
    row: Mapping[str, Any],
    position: int,
    total: int,
    status: str,
    current_label: int | None = None,
    reason: str | None = None,
    show_dataset_label: bool = False,
) -> str:
    """The statement card: position, my status for it, why it is here, and the data set's
    label once this annotator has labelled the item (or always, with `show_dataset_label`,
    for review sessions): seen before the decision, it anchors the judgement."""
    esc = html.escape
    label = row.get("no_show")
    original = LABEL_TEXT.get(int(label), "?") if label is not None and not pd.isna(label) else "?"
    if show_dataset_label or status == "submitted":
        dataset_line = f"Data set's label: <b>{esc(original)}</b>"
    else:
        dataset_line = (
            '<span style="color:#57606a;">Data set\'s label: hidden until you answer '
            "(switch <i>Show the data set's label</i> on for a review session)</span>"
        )
    mine = STATUS_TEXT.get(status, status)
    if status == "submitted" and current_label is not None:
        mine += f" as {LABEL_TEXT[int(current_label)]} (label again to correct it)"
    parts = [
        f'<div class="noshow-label-meta" style="color:#57606a;">Item {position + 1} of {total} · '
        f"record {esc(str(row.get('record_id')))} · your status: <b>{esc(mine)}</b></div>",
        '<div class="noshow-label-statement" style="font-size:1.25em;line-height:1.5;'
        'padding:12px 16px;margin:8px 0;border-left:4px solid #2e86c1;background:#f5f8fb;">'
        f"{esc(str(row.get('statement', '')))}</div>",
        f'<div class="noshow-label-dataset">{dataset_line}</div>',
    ]
    if reason:
        parts.append(f'<div style="color:#57606a;">In the queue because: {esc(reason)}</div>')
    return "".join(parts)


def done_html(total: int) -> str:
    return (
        '<div class="noshow-msg-ok">Queue done: every one of its '
        f"{total} items is submitted or skipped. Press <b>New queue</b> for more.</div>"
    )


def suggestions_html(suggestions: Mapping[str, Mapping[str, Any]]) -> str:
    """Model suggestions: P(no-show) per adapter, or why there is none."""
    if not suggestions:
        return ""
    items = []
    for name, s in suggestions.items():
        if s.get("p") is None:
            items.append(f"<li>{html.escape(name)}: <i>{html.escape(str(s.get('error')))}</i></li>")
            continue
        verdict = LABEL_TEXT[int(s["p"] >= s.get("threshold", 0.5))]
        items.append(
            f"<li>{html.escape(name)}: P(no-show) = <b>{s['p']:.2f}</b> "
            f"→ {verdict} (threshold {s.get('threshold', 0.5):.2f})</li>"
        )
    return "<div><b>Model suggestions</b><ul>" + "".join(items) + "</ul></div>"


def progress_counts(store: Any, annotator: str, queue: Sequence[int]) -> dict[str, int]:
    """Counts for the progress line from one read of the store's current labels."""
    current = store.current_labels()
    mine = current[current["annotator"] == annotator]
    in_queue = mine[mine["record_id"].isin([int(r) for r in queue])]
    submitted = current[current["status"] == "submitted"]
    return {
        "queue_total": len(queue),
        "queue_submitted": int((in_queue["status"] == "submitted").sum()),
        "queue_skipped": int((in_queue["status"] == "skipped").sum()),
        "mine_submitted": int((mine["status"] == "submitted").sum()),
        "everyone_records": int(submitted["record_id"].nunique()),
        "everyone_labels": len(submitted),
        "annotators": int(current["annotator"].nunique()),
    }


def progress_html(counts: Mapping[str, int]) -> str:
    """'You: x of n in this queue ...' and 'Everyone: ...', with a bar for the queue."""
    total = max(counts["queue_total"], 1)
    done = counts["queue_submitted"] + counts["queue_skipped"]
    pct = 100 * done / total
    return (
        '<div class="noshow-label-progress">'
        f'<div><b>You:</b> <span class="noshow-progress-mine">{done} of '
        f"{counts['queue_total']}</span> done in this queue ({counts['queue_submitted']} "
        f"labelled, {counts['queue_skipped']} skipped); {counts['mine_submitted']} labels in "
        "total.</div>"
        '<div style="height:8px;background:#e8ecf1;border-radius:4px;margin:4px 0;">'
        f'<div style="width:{pct:.0f}%;height:100%;background:#2e86c1;border-radius:4px;">'
        "</div></div>"
        f'<div><b>Everyone:</b> <span class="noshow-progress-all">'
        f"{counts['everyone_records']}</span> records labelled by {counts['annotators']} "
        f"annotator(s) ({counts['everyone_labels']} current labels).</div></div>"
    )


def queue_table(
    queue: Sequence[int], statuses: Mapping[int, str], frame: pd.DataFrame, pos: int | None
) -> pd.DataFrame:
    """The queue at a glance: position, record id, my status, start of the statement."""
    rows = frame.set_index("record_id", drop=False).reindex([int(r) for r in queue])
    statements = rows["statement"].fillna("").astype(str)
    return pd.DataFrame(
        {
            "#": [("▶ " if i == pos else "") + str(i + 1) for i in range(len(queue))],
            "record_id": [int(r) for r in queue],
            "status": [STATUS_TEXT.get(statuses.get(int(r), "pending"), "?") for r in queue],
            "statement": [s[:90] + ("…" if len(s) > 90 else "") for s in statements],
        }
    )


def agreement_views(kappa: pd.DataFrame, disagreements: pd.DataFrame) -> tuple:
    """The agreement tables as shown: kappa to 3 decimals, or 'undefined' (the note says
    why); label names as people say them (see noshow.labels.agreement.cohen_kappa_table)."""
    shown = kappa.copy()
    shown["kappa"] = [
        "undefined" if pd.isna(k) else f"{k:.3f}".replace("-0.000", "0.000") for k in kappa["kappa"]
    ]
    shown["kind"] = shown["kind"].map({"pair": "two annotators", "vs_dataset": "vs data set"})
    table = disagreements.copy()
    table["dataset_label"] = table["dataset_label"].fillna("")
    return shown, table


def empty_agreement_views() -> tuple:
    """Both agreement tables with their real headers and no rows (before anything is read)."""
    from noshow.labels.agreement import DISAGREEMENT_COLUMNS, KAPPA_COLUMNS

    return pd.DataFrame(columns=list(KAPPA_COLUMNS)), pd.DataFrame(
        columns=list(DISAGREEMENT_COLUMNS)
    )


def export_message(rows: Sequence[Mapping[str, Any]], data_label: str) -> str:
    """What an export holds, and why some events have no statement text."""
    text = f"Exported {len(rows)} events (CSV and JSON lines)."
    missing = sum(1 for r in rows if r.get("statement") is None)
    if missing:
        text += (
            f" {missing} of them have no statement text: their record is not in {data_label}, "
            "or its statement has changed since it was labelled (the hash is kept)."
        )
    return text


def statements_for(frame: pd.DataFrame, record_ids: Sequence[int]) -> dict[int, str]:
    """{record_id: statement} for the given records that are in `frame` (for exports)."""
    rows = frame[frame["record_id"].isin([int(r) for r in record_ids])]
    return dict(
        zip(
            rows["record_id"].astype(int).tolist(),
            rows["statement"].astype(str).tolist(),
            strict=True,
        )
    )


def dataset_labels_for(frame: pd.DataFrame, record_ids: Sequence[int]) -> dict[int, int]:
    """{record_id: data set label} for the given records that are in `frame`."""
    rows = frame[frame["record_id"].isin([int(r) for r in record_ids])]
    return dict(
        zip(
            rows["record_id"].astype(int).tolist(),
            rows["no_show"].astype(int).tolist(),
            strict=True,
        )
    )
