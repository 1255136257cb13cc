"""Agreement between annotators, and with the data set's own labels: Cohen's kappa for each
pair with the words people use for it (Landis & Koch), and the records to adjudicate.

    from noshow.labels.agreement import cohen_kappa_table, disagreements
    cohen_kappa_table(store, dataset_labels)     # kind, rater_a, rater_b, n, kappa, note
    disagreements(store, dataset_labels)         # records whose current labels disagree

Both read each annotator's current submitted labels (skips do not count) and show labels as
"No-show" / "Shows up".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from noshow.labels.events import LABEL_DISPLAY, NO_SHOW, SHOWS_UP, normalize_record_id
from noshow.labels.store import LabelStore

DATASET_RATER = "data set"
KAPPA_COLUMNS = ("kind", "rater_a", "rater_b", "n", "kappa", "note")
DISAGREEMENT_COLUMNS = (
    "record_id",
    "labels",
    "no_show_votes",
    "shows_up_votes",
    "dataset_label",
    "reason",
    "notes",
)


def _submitted_by_annotator(store: LabelStore) -> dict[str, dict[int, int]]:
    current = store.current_labels()
    current = current[current["status"] == "submitted"]
    by_annotator: dict[str, dict[int, int]] = {}
    for row in current.itertuples(index=False):
        by_annotator.setdefault(row.annotator, {})[int(row.record_id)] = int(row.label)
    return by_annotator


# Landis & Koch (1977), the usual words for a kappa: (kappa above this, word); 0 is slight.
KAPPA_BANDS = (
    (0.8, "almost perfect"),
    (0.6, "substantial"),
    (0.4, "moderate"),
    (0.2, "fair"),
)
FEW_RECORDS = 20  # below this many shared records a kappa swings with one label


def describe_kappa(kappa: float) -> str:
    """'moderate agreement' etc. (Landis & Koch); 'less agreement than chance' below 0."""
    if kappa < 0:
        return "less agreement than chance"
    word = next((w for bound, w in KAPPA_BANDS if kappa > bound), "slight")
    return f"{word} agreement"


def _kappa(
    a: dict[int, int], b: Mapping[int, int], name_a: str = "", name_b: str = ""
) -> tuple[int, float, str]:
    """(records in common, kappa, a sentence that says how to read it)."""
    from sklearn.metrics import cohen_kappa_score

    common = sorted(set(a) & set(b))
    if not common:
        return 0, math.nan, "no records in common"
    y1 = [a[r] for r in common]
    y2 = [int(b[r]) for r in common]
    n = len(common)
    agree = f"{sum(x == y for x, y in zip(y1, y2, strict=True))} of {n} records agree"
    if n < FEW_RECORDS:
        agree += f" (under {FEW_RECORDS} records: a rough figure)"
    if len(set(y1) | set(y2)) < 2:
        # Chance agreement is 1, so kappa is 0/0: report it as undefined, not as a crash.
        only = LABEL_DISPLAY[y1[0]]
        return n, math.nan, f"only one class ({only}) in the overlap, kappa is undefined; {agree}"
    kappa = float(cohen_kappa_score(y1, y2, labels=[0, 1]))
    for name, labels in ((name_a, y1), (name_b, y2)):
        if len(set(labels)) == 1:
            # Expected agreement then equals the observed one: kappa is 0 however many agree.
            same = LABEL_DISPLAY[labels[0]]
            note = f"{name or 'one rater'} gave every shared record the same label ({same}), "
            return n, kappa, f"{note}so kappa is 0 by definition; {agree}"
    return n, kappa, f"{describe_kappa(kappa)}; {agree}"


def cohen_kappa_table(
    store: LabelStore, dataset_labels: Mapping[int, int] | None = None
) -> pd.DataFrame:
    """Cohen's kappa for each pair of annotators with overlapping current labels, and for
    each annotator against the data set's labels (when given).

    Columns: kind ('pair' | 'vs_dataset'), rater_a, rater_b, n, kappa (NaN when undefined),
    note (how to read the kappa: Landis & Koch's word and how many records agree, or why it
    is 0 or undefined).
    """
    by_annotator = _submitted_by_annotator(store)
    names = sorted(by_annotator)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            n, kappa, note = _kappa(by_annotator[a], by_annotator[b], a, b)
            if n:
                rows.append(("pair", a, b, n, kappa, note))
    if dataset_labels is not None:
        truth = {normalize_record_id(k): int(v) for k, v in dataset_labels.items()}
        for a in names:
            n, kappa, note = _kappa(by_annotator[a], truth, a, "the data set")
            if not n:
                note = "none of these labels is on a record of the loaded data set"
            rows.append(("vs_dataset", a, DATASET_RATER, n, kappa, note))
    frame = pd.DataFrame(rows, columns=list(KAPPA_COLUMNS))
    return frame.astype({"n": "int64", "kappa": "float64"})


def disagreements(
    store: LabelStore, dataset_labels: Mapping[int, int] | None = None
) -> pd.DataFrame:
    """Records to adjudicate: annotators' current labels disagree with each other, or with
    the data set's label (when given).

    Columns: record_id, labels ('name: No-show; name: Shows up'), no_show_votes,
    shows_up_votes, dataset_label ('No-show' / 'Shows up', None if unknown), reason, notes
    (annotators' notes).
    """
    current = store.current_labels()
    current = current[current["status"] == "submitted"]
    truth = (
        {}
        if dataset_labels is None
        else {normalize_record_id(k): int(v) for k, v in dataset_labels.items()}
    )
    rows = []
    for rid, group in current.groupby("record_id", sort=True):
        labels = group["label"].astype(int)
        reasons = []
        if labels.nunique() > 1:
            reasons.append("annotators disagree")
        data_label = truth.get(int(rid))
        if data_label is not None and (labels != data_label).any():
            reasons.append("differs from data set")
        if not reasons:
            continue
        rows.append(
            {
                "record_id": int(rid),
                "labels": "; ".join(
                    f"{a}: {LABEL_DISPLAY[int(v)]}"
                    for a, v in zip(group["annotator"], group["label"], strict=True)
                ),
                "no_show_votes": int((labels == NO_SHOW).sum()),
                "shows_up_votes": int((labels == SHOWS_UP).sum()),
                "dataset_label": None if data_label is None else LABEL_DISPLAY[data_label],
                "reason": "; ".join(reasons),
                "notes": "; ".join(
                    f"{a}: {n}" for a, n in zip(group["annotator"], group["note"], strict=True) if n
                ),
            }
        )
    frame = pd.DataFrame(rows, columns=list(DISAGREEMENT_COLUMNS))
    return frame.astype({"record_id": "int64", "dataset_label": "object"})
