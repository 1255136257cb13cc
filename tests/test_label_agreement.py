"""Agreement between annotators and with the data set (noshow/labels/agreement.py): Cohen's
kappa against hand-computed values, the notes that say how to read it, and the records to
adjudicate.

Run: .venv/bin/python -m pytest -q tests/test_label_agreement.py
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from noshow.labels.agreement import cohen_kappa_table, describe_kappa, disagreements
from noshow.labels.store import LabelStore


@pytest.fixture
def store(tmp_path: Path):
    with LabelStore(tmp_path / "labels" / "labels.sqlite", valid_record_ids=range(1000)) as s:
        yield s


def _annotate(store: LabelStore, annotator: str, labels: list[int], start: int = 0) -> None:
    for offset, label in enumerate(labels):
        store.submit(start + offset, label, annotator, statement="s")


def test_cohen_kappa_for_pairs_and_against_data_set(store):
    # Records 0..9.  A = 1111000000, B = 1110000001, data set D = 1100000000.
    # A vs B: agree on 8 of 10 -> po = 0.8; each says 1 four times -> pe = .4*.4 + .6*.6 = .52;
    #         kappa = (.8 - .52) / (1 - .52) = .28 / .48 = 7/12.
    # A vs D: agree on 8 -> po = .8; pe = .4*.2 + .6*.8 = .56; kappa = .24 / .44 = 6/11.
    # B vs D: agree on 8 (differ on 2 and 9) -> same marginals as A vs D -> 6/11.
    # C labels only records 0 and 1 as no-show: every overlap has one class -> kappa NaN.
    _annotate(store, "A", [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    _annotate(store, "B", [1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    _annotate(store, "C", [1, 1])
    store.submit(500, 1, "E", statement="s")  # overlaps nobody
    data = dict(enumerate([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    table = cohen_kappa_table(store, data).set_index(["kind", "rater_a", "rater_b"])
    assert set(table.loc["pair"].index) == {("A", "B"), ("A", "C"), ("B", "C")}
    assert table.loc[("pair", "A", "B"), "kappa"] == pytest.approx(7 / 12)
    assert table.loc[("pair", "A", "B"), "n"] == 10
    assert table.loc[("vs_dataset", "A", "data set"), "kappa"] == pytest.approx(6 / 11)
    assert table.loc[("vs_dataset", "A", "data set"), "note"] == (
        "moderate agreement; 8 of 10 records agree (under 20 records: a rough figure)"
    )
    assert table.loc[("vs_dataset", "B", "data set"), "kappa"] == pytest.approx(6 / 11)
    single = table.loc[("pair", "A", "C")]
    assert single["n"] == 2 and math.isnan(single["kappa"]) and "one class" in single["note"]
    no_overlap = table.loc[("vs_dataset", "E", "data set")]
    assert no_overlap["n"] == 0 and math.isnan(no_overlap["kappa"])
    assert no_overlap["note"] == "none of these labels is on a record of the loaded data set"
    assert "vs_dataset" not in set(cohen_kappa_table(store, None)["kind"])


def test_kappa_of_a_one_label_annotator_is_zero_and_the_note_says_why(store):
    # D answers No-show for every record; the data set has both labels there. Expected and
    # observed agreement are then equal, so kappa is 0 however many records agree.
    _annotate(store, "D", [1, 1, 1, 1])
    table = cohen_kappa_table(store, dict(enumerate([1, 1, 1, 0])))
    row = table.set_index("rater_a").loc["D"]
    assert row["kappa"] == 0.0 and row["n"] == 4
    assert row["note"] == (
        "D gave every shared record the same label (No-show), so kappa is 0 by definition; "
        "3 of 4 records agree (under 20 records: a rough figure)"
    )


@pytest.mark.parametrize(
    ("kappa", "words"),
    [(-0.1, "less agreement than chance"), (0.0, "slight"), (0.2, "slight"), (0.21, "fair")]
    + [(0.5, "moderate"), (0.7, "substantial"), (0.81, "almost perfect"), (1.0, "almost")],
)
def test_describe_kappa_uses_landis_and_koch_words(kappa, words):
    assert describe_kappa(kappa).startswith(words)


def test_disagreements_lists_records_to_adjudicate(store):
    _annotate(store, "A", [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    _annotate(store, "B", [1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    store.submit(3, 1, "A", statement="s", note="looks like a no-show")  # same label, a note
    data = dict(enumerate([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    table = disagreements(store, data).set_index("record_id")
    assert table.index.tolist() == [2, 3, 9]
    assert table.loc[2, "reason"] == "differs from data set"
    assert table.loc[3, "reason"] == "annotators disagree; differs from data set"
    assert table.loc[9, "labels"] == "A: Shows up; B: No-show"
    assert (table.loc[9, "no_show_votes"], table.loc[9, "shows_up_votes"]) == (1, 1)
    assert table.loc[3, "notes"] == "A: looks like a no-show"
    assert table.loc[2, "dataset_label"] == "Shows up"
    among_annotators = disagreements(store, None)
    assert among_annotators["record_id"].tolist() == [3, 9]
