"""The Label tab: its pure queue and view functions, and the running app driven by
gradio_client against a real SQLite label store: the name is required, submit / skip / back
/ forward, progress, a double press stored once, the data set's label hidden until the
annotator answers, exports with label names and statement text that re-import exactly,
agreement tables with a note on every kappa, model suggestions and ranked queues from two
real tiny adapters, and many annotators at once.

    .venv/bin/python -m pytest -q tests/test_label_ui.py
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import launch_on_free_port

from noshow.app import label_views as lv
from noshow.labels.export import import_events
from noshow.labels.store import LabelStore

# Outputs of every item view, in order (the session state stays on the server).
ITEM, FIELDS, SUGGESTIONS, PROGRESS, QUEUE, RECORD, SUBMISSION, NOTE, MESSAGE = range(9)


def frame_of(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": np.arange(100, 100 + n),
            "statement": [f"Statement {i}" for i in range(n)],
            "no_show": [i % 2 for i in range(n)],
            "age": 40,
            "sms_received": 1,
        }
    )


@pytest.fixture()
def store(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as s:
        yield s


# ----------------------------------------------------------------------------- queue logic


def test_random_queue_is_the_same_shuffle_for_everyone_and_leaves_out_done_records(store):
    frame = frame_of()
    first, _ = lv.build_queue(frame, lv.ORDER_RANDOM, "Ana", store, size=10)
    assert lv.build_queue(frame, lv.ORDER_RANDOM, "Bea", store, size=10)[0] == first
    assert first != sorted(first)  # shuffled, not the file order
    store.submit(first[0], "no_show", "Ana", statement="Statement")
    store.skip(first[1], "Ana", statement="Statement")
    again, _ = lv.build_queue(frame, lv.ORDER_RANDOM, "Ana", store, size=10)
    assert again[:8] == first[2:] and first[0] not in again and first[1] not in again


def test_disagreement_order_puts_the_largest_gap_first_with_its_reason(store):
    frame = frame_of(6)
    gen = dict(zip(frame["statement"], [0.1, 0.9, 0.5, 0.5, 0.2, 0.6], strict=True))
    clf = dict(zip(frame["statement"], [0.1, 0.1, 0.4, 0.5, 0.9, 0.6], strict=True))
    scores = {
        "generative": lambda texts: [gen[t] for t in texts],
        "classifier": lambda texts: [clf[t] for t in texts],
    }
    queue, reasons = lv.build_queue(frame, lv.ORDER_DISAGREE, "Ana", store, scores=scores, size=3)
    assert queue == [101, 104, 102]
    assert reasons[101] == "generative P=0.90 vs classifier P=0.10"


def test_ranking_scores_in_chunks_and_reports_progress_over_both_adapters(store):
    frame = frame_of(60)
    calls: list[int] = []

    class Fake:
        def __init__(self, p):
            self.p = p

        def predict_proba(self, texts):
            calls.append(len(texts))
            return [self.p] * len(texts)

    reports: list[tuple[float, str]] = []
    scores = lv.scorers_with_progress(
        {"generative": Fake(0.2), "classifier": Fake(0.7)}, lambda f, t: reports.append((f, t))
    )
    queue, _ = lv.build_queue(frame, lv.ORDER_DISAGREE, "Ana", store, scores=scores, size=5)
    assert len(queue) == 5
    assert calls == [25, 25, 10] * 2  # chunks of SCORE_CHUNK per adapter
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0] < 0.5
    assert reports[0][1] == "Scoring 60 statements with the generative adapter (25/60)"
    assert reports[-1][1].startswith("Scoring 60 statements with the classifier adapter (60/60)")


def test_contradiction_order_ranks_confident_models_against_the_label(store):
    frame = frame_of(4)  # labels 0, 1, 0, 1
    p = dict(zip(frame["statement"], [0.95, 0.9, 0.2, 0.05], strict=True))
    scores = {"classifier": lambda texts: [p[t] for t in texts]}
    queue, reasons = lv.build_queue(frame, lv.ORDER_CONTRADICT, "Ana", store, scores=scores)
    # 100: says no-show at 0.95 but labelled shows up; 103: says 0.05 but labelled no-show.
    assert queue[:2] == [100, 103] and queue[-1] == 101
    assert reasons[100] == "classifier P(no-show)=0.95, against the data set's label"


@pytest.mark.parametrize(
    ("order", "scores", "message"),
    [
        (lv.ORDER_DISAGREE, {"classifier": None}, "needs both a generative and a classifier"),
        (lv.ORDER_CONTRADICT, {}, "needs at least one adapter"),
        ("alphabetical", {}, "Unknown queue order"),
    ],
)
def test_ranked_orders_without_their_adapters_are_refused_clearly(store, order, scores, message):
    with pytest.raises(lv.LabelViewError, match=message):
        lv.build_queue(frame_of(), order, "Ana", store, scores=scores)


def test_next_position_skips_done_items_and_wraps_around():
    queue = [1, 2, 3, 4]
    statuses = {1: "submitted", 2: "pending", 3: "skipped", 4: "pending"}
    assert lv.next_position(queue, statuses, after=-1) == 1
    assert lv.next_position(queue, statuses, after=1) == 3
    assert lv.next_position(queue, statuses, after=3) == 1
    assert lv.next_position(queue, dict.fromkeys(queue, "submitted"), after=0) is None


def test_button_captions_and_store_names_map_to_labels():
    assert lv.parse_label("No-show [1]") == "no_show"
    assert lv.parse_label("Shows up [2]") == "shows_up"
    assert lv.parse_label(" shows_up ") == "shows_up"


def test_fields_table_reads_yes_no_flags_and_skips_missing_columns():
    table = lv.fields_table({"age": 40, "sms_received": 1, "scholarship": 0})
    assert table.values.tolist() == [["Age", "40"], ["SMS reminder", "Yes"], ["Scholarship", "No"]]


def test_progress_counts_mine_in_the_queue_and_everyone(store):
    store.submit(100, 1, "Ana", statement="s")
    store.skip(101, "Ana", statement="s")
    store.submit(100, 0, "Bea", statement="s")
    store.submit(105, 0, "Bea", statement="s")
    counts = lv.progress_counts(store, "Ana", [100, 101, 102])
    assert counts == {
        "queue_total": 3,
        "queue_submitted": 1,
        "queue_skipped": 1,
        "mine_submitted": 1,
        "everyone_records": 2,
        "everyone_labels": 3,
        "annotators": 2,
    }
    assert "2 of 3" in lv.progress_html(counts)


def test_item_card_escapes_the_statement_and_shows_my_current_label():
    row = {"record_id": 7, "statement": "<img src=x>", "no_show": 0}
    card = lv.item_html(row, 0, 5, "submitted", current_label=1, reason="why")
    assert "&lt;img src=x&gt;" in card and "<img" not in card
    assert "Submitted as No-show" in card and "Data set's label: <b>Shows up</b>" in card


@pytest.mark.parametrize(
    ("status", "switch", "shown"),
    [("pending", False, False), ("skipped", False, False), ("submitted", False, True)]
    + [("pending", True, True)],
)
def test_item_card_shows_the_dataset_label_only_after_an_answer_or_with_the_switch(
    status, switch, shown
):
    row = {"record_id": 7, "statement": "A 30-year-old woman ...", "no_show": 1}
    card = lv.item_html(row, 0, 5, status, show_dataset_label=switch)
    assert ("Data set's label: <b>No-show</b>" in card) is shown
    assert ("hidden until you answer" in card) is not shown


def test_agreement_views_spell_out_an_undefined_kappa(store):
    from noshow.labels.agreement import cohen_kappa_table, disagreements

    store.submit(1, 1, "Ana", statement="s")
    store.submit(1, 1, "Bea", statement="s")
    kappa, table = lv.agreement_views(
        cohen_kappa_table(store, {1: 1}), disagreements(store, {1: 0})
    )
    assert kappa[["kind", "kappa"]].values.tolist() == [
        ["two annotators", "undefined"],
        ["vs data set", "undefined"],
        ["vs data set", "undefined"],
    ]
    assert table["dataset_label"].tolist() == ["Shows up"]


def test_empty_agreement_tables_have_their_real_headers():
    kappa, table = lv.empty_agreement_views()
    assert list(kappa.columns) == ["kind", "rater_a", "rater_b", "n", "kappa", "note"]
    assert "dataset_label" in table.columns and kappa.empty and table.empty


def test_press_line_runs_a_pages_presses_in_their_order_with_the_newest_session():
    from noshow.app.label_presses import PressLine, split_press

    assert split_press("abc#7") == ("abc", 7) and split_press("abc") == ("abc", None)
    assert split_press("") == (None, None) and split_press("abc#x") == ("abc", None)
    line, order = PressLine(wait_s=10), []

    def press(number: int, delay: float) -> None:
        threading.Event().wait(delay)  # press 2 reaches the server before press 1
        with line.turn("page", number, {"seen": "stale"}) as turn:
            order.append((number, turn.state["seen"]))
            turn.leave({"seen": number})

    threads = [threading.Thread(target=press, args=(n, d)) for n, d in ((2, 0.0), (1, 0.3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert order == [(1, "stale"), (2, 1)]  # 2 waited for 1 and saw the session 1 left
    with line.turn("other page", 1, {"seen": "own"}) as turn:
        assert turn.state == {"seen": "own"}  # pages do not share sessions
    lost = PressLine(wait_s=0.2)
    with lost.turn("page", 5, {"seen": "x"}) as turn:  # presses 1-4 never came: it goes on
        assert turn.state == {"seen": "x"}


# ----------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def app(tmp_path_factory, adapters):
    from gradio_client import Client

    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    store = LabelStore(tmp_path_factory.mktemp("label-ui") / "labels.sqlite")
    demo = build_demo(
        jobs=JobManager(runs_dir=adapters.runs),
        store=store,
        runs_dir=adapters.runs,
        shipped_dir=tmp_path_factory.mktemp("no-shipped"),  # only this test's tiny adapters
        data_source="synthetic",
    )
    url = launch_on_free_port(demo, max_threads=64)

    def client() -> Client:
        return Client(url, verbose=False)

    yield SimpleNamespace(demo=demo, client=client, store=store, ctx=demo.noshow_context)
    demo.close()
    store.close()


def start(client, name: str, order: str = lv.ORDER_RANDOM, suggest=False, gen=None, clf=None):
    return client.predict(name, order, suggest, gen, clf, api_name="/label_next")


def press(
    client,
    endpoint: str,
    out,
    name: str,
    note: str = "",
    label: str | None = None,
    show: bool = False,
):
    args = (name, note, out[RECORD], out[SUBMISSION], False, None, None, show)
    if label is not None:
        args = (label, *args)
    return client.predict(*args, api_name=endpoint)


def test_app_requires_an_annotator_name(app):
    c = app.client()
    assert "Annotator name is empty" in start(c, "   ")[MESSAGE]
    shown = start(c, "Dr Named")
    out = press(c, "/label_submit", shown, "", label="no_show")
    assert "Annotator name is empty" in out[MESSAGE]
    assert app.store.events("Dr Named").empty


def test_app_submit_skip_back_and_forward_walk_the_queue(app):
    c = app.client()
    first = start(c, "Dr Walk")
    assert "Item 1 of 50" in first[ITEM] and "Pending" in first[ITEM]
    assert "0 of 50" in first[PROGRESS]
    statement = app.ctx.get_data(None).frame.set_index("record_id").loc[int(first[RECORD])]
    assert statement["statement"] in first[ITEM] or "&#x27;" in first[ITEM]

    second = press(c, "/label_submit", first, "Dr Walk", note="looks odd", label="no_show")
    assert second[RECORD] != first[RECORD] and "Item 2 of 50" in second[ITEM]
    assert "1 of 50" in second[PROGRESS] and "Saved No-show" in second[MESSAGE]
    assert second[NOTE] == ""  # the note belongs to the item it was written for
    third = press(c, "/label_skip", second, "Dr Walk")
    assert "2 of 50" in third[PROGRESS] and "1 skipped" in third[PROGRESS]

    back = press(c, "/label_back", third, "Dr Walk")
    assert back[RECORD] == second[RECORD] and "Skipped" in back[ITEM]
    back2 = press(c, "/label_back", back, "Dr Walk")
    assert back2[RECORD] == first[RECORD] and "Submitted as No-show" in back2[ITEM]
    # Correct it: the latest label counts, and the queue moves on to the next pending item.
    fixed = press(c, "/label_submit", back2, "Dr Walk", label="shows_up")
    assert fixed[RECORD] == third[RECORD]
    forward = press(c, "/label_forward", fixed, "Dr Walk")
    assert "Item 4 of 50" in forward[ITEM] and forward[RECORD] != fixed[RECORD]

    events = app.store.events("Dr Walk")
    assert events["status"].tolist() == ["submitted", "skipped", "submitted"]
    assert events["note"].tolist()[0] == "looks odd"
    assert events["previous_label"].tolist()[2] == 1
    current = app.store.current_labels("Dr Walk").set_index("record_id")
    assert int(current.loc[int(first[RECORD]), "label"]) == 0


def test_app_double_press_stores_one_event_and_lands_on_the_same_item(app):
    c = app.client()
    shown = start(c, "Dr Double")
    a = press(c, "/label_submit", shown, "Dr Double", label="shows_up")
    b = press(c, "/label_submit", shown, "Dr Double", label="shows_up")
    assert len(app.store.events("Dr Double")) == 1
    assert "Already saved" in b[MESSAGE]
    assert a[RECORD] == b[RECORD]


def test_app_two_simultaneous_presses_on_one_item_store_one_event(app):
    c = app.client()
    shown = start(c, "Dr Race")
    args = ("no_show", "Dr Race", "", shown[RECORD], shown[SUBMISSION], False, None, None, False)
    jobs = [c.submit(*args, api_name="/label_submit") for _ in range(2)]
    outs = [job.result(timeout=60) for job in jobs]
    assert len(app.store.events("Dr Race")) == 1
    assert outs[0][RECORD] == outs[1][RECORD] != shown[RECORD]


def test_app_refuses_a_press_after_the_name_changed(app):
    c = app.client()
    shown = start(c, "Dr One")
    out = press(c, "/label_submit", shown, "Dr Two", label="no_show")
    assert "press Start to get a queue for that name" in out[MESSAGE]
    assert app.store.events("Dr Two").empty


def test_app_press_without_a_queue_says_to_start(app):
    c = app.client()
    out = c.predict(
        "no_show", "Dr New", "", "123", "sid", False, None, None, False, api_name="/label_submit"
    )
    assert "press Start" in out[MESSAGE]


def test_app_hides_the_dataset_label_until_the_annotator_answers(app):
    c = app.client()
    first = start(c, "Dr Blind")
    truth = app.ctx.get_data(None).frame.set_index("record_id")["no_show"]
    label = lv.LABEL_TEXT[int(truth.loc[int(first[RECORD])])]
    assert "hidden until you answer" in first[ITEM] and f"<b>{label}</b>" not in first[ITEM]
    second = press(c, "/label_submit", first, "Dr Blind", label="no_show")
    assert "hidden until you answer" in second[ITEM]  # the next item is unanswered again
    back = press(c, "/label_back", second, "Dr Blind")
    assert back[RECORD] == first[RECORD] and f"Data set's label: <b>{label}</b>" in back[ITEM]
    # A review session: the switch shows it on an unanswered item, without losing the note.
    review = press(c, "/label_redraw", second, "Dr Blind", note="typing", show=True)
    assert review[RECORD] == second[RECORD] and "Data set's label: <b>" in review[ITEM]
    assert "value" not in review[NOTE]  # the note box is left as it is (gr.skip)
    assert len(app.store.events("Dr Blind")) == 1


def test_app_exports_csv_and_jsonl_that_reimport_exactly(app, tmp_path):
    c = app.client()
    shown = start(c, "Dr Export")
    press(c, "/label_submit", shown, "Dr Export", note="=SUM(A1)", label="no_show")
    files, message = c.predict(api_name="/label_export")
    paths = sorted(files, key=lambda p: p.rsplit(".", 1)[-1])
    assert [p.rsplit(".", 1)[-1] for p in paths] == ["csv", "jsonl"]
    original = app.store.events()
    assert f"Exported {len(original)} events" in message
    for path in paths:
        with LabelStore(tmp_path / f"copy-{path.rsplit('.', 1)[-1]}.sqlite") as copy:
            assert import_events(copy, path) == len(original)
            pd.testing.assert_frame_equal(copy.events(), original)


def test_app_export_names_the_label_and_holds_the_statement_and_annotator(app):
    c = app.client()
    shown = start(c, "Dr Readable")
    press(c, "/label_submit", shown, "Dr Readable", label="shows_up")
    files, _ = c.predict(api_name="/label_export")
    (csv_path,) = [p for p in files if p.endswith(".csv")]
    rows = pd.read_csv(csv_path, encoding="utf-8-sig", keep_default_na=False)
    mine = rows[rows["annotator"] == "Dr Readable"]
    statement = app.ctx.get_data(None).frame.set_index("record_id").loc[int(shown[RECORD])]
    assert mine[["record_id", "label", "statement"]].values.tolist() == [
        [int(shown[RECORD]), "Shows up", statement["statement"]]
    ]
    assert set(rows["label"]) <= {"No-show", "Shows up", ""}


def test_app_agreement_tables_cover_overlapping_annotators(app):
    c1, c2 = app.client(), app.client()
    for name, label, c in (("Dr K1", "no_show", c1), ("Dr K2", "shows_up", c2)):
        out = start(c, name)
        for _ in range(3):
            out = press(c, "/label_submit", out, name, label=label)
    kappa, disagreements, message = c1.predict(api_name="/label_agreement")
    kappa = pd.DataFrame(kappa["data"], columns=kappa["headers"])
    pair = kappa[(kappa["rater_a"] == "Dr K1") & (kappa["rater_b"] == "Dr K2")]
    assert len(pair) == 1 and int(pair["n"].iloc[0]) == 3  # same shuffle: they overlap
    table = pd.DataFrame(disagreements["data"], columns=disagreements["headers"])
    assert len(table) >= 3 and message == ""
    assert {"Dr K1: No-show", "Dr K2: Shows up"} <= {
        part for labels in table["labels"] for part in labels.split("; ")
    }


def test_app_kappa_against_the_data_set_comes_with_its_note(app):
    c = app.client()
    out = start(c, "Dr Constant")
    for _ in range(6):  # the same answer every time: kappa is 0 whatever the data set says
        out = press(c, "/label_submit", out, "Dr Constant", label="no_show")
    kappa, _, _ = c.predict(api_name="/label_agreement")
    kappa = pd.DataFrame(kappa["data"], columns=kappa["headers"])
    (row,) = [
        r
        for _, r in kappa.iterrows()
        if (r["rater_a"], r["kind"]) == ("Dr Constant", "vs data set")
    ]
    truth = app.ctx.get_data(None).frame.set_index("record_id")["no_show"]
    labelled = app.store.current_labels("Dr Constant")["record_id"]
    if truth.loc[labelled].nunique() == 2:
        assert row["kappa"] == "0.000"
        assert "gave every shared record the same label (No-show)" in row["note"]
    else:  # all six happen to be no-shows in the data set too
        assert row["kappa"] == "undefined" and "only one class" in row["note"]
    assert row["n"] == 6


def test_app_suggests_and_ranks_with_the_chosen_adapters(app, adapters):
    c = app.client()
    out = start(c, "Dr Rank", lv.ORDER_DISAGREE, True, adapters.generative, adapters.classifier)
    assert out[MESSAGE].count("adapters disagree most") == 1, out[MESSAGE]
    assert "In the queue because: generative P=" in out[ITEM]
    assert "generative: P(no-show) = " in out[SUGGESTIONS]
    assert "classifier: P(no-show) = " in out[SUGGESTIONS]


def test_app_ranked_order_without_adapters_is_refused(app):
    out = start(app.client(), "Dr Rank", lv.ORDER_CONTRADICT, False, None, None)
    assert "needs at least one adapter" in out[MESSAGE]


# 20 annotators x 5 labels at once through gradio_client. The full 20 x 50 = 1,000 events
# run at the store level in tests/test_labels.py: gradio_client spends about 0.1 s of CPU per
# call, so 1,000 presses would take minutes on the 2-core CI machine.
ANNOTATORS, LABELS_EACH = 20, 5


def test_app_many_annotators_at_once_store_every_label_exactly_once(app):
    # Sessions open one after another (a loaded 2-core machine can time out 20 handshakes at
    # once); the label presses then race. The barrier has a timeout so a failed thread fails
    # the test instead of leaving the others waiting forever.
    sessions = []
    for i in range(ANNOTATORS):
        name = f"Parallel {i:02d}"
        c = app.client()
        sessions.append((i, name, c, start(c, name)))
    barrier = threading.Barrier(ANNOTATORS)

    def annotate(session) -> int:
        _, name, c, out = session
        barrier.wait(timeout=300)
        for n in range(LABELS_EACH):
            out = press(c, "/label_submit", out, name, label="no_show" if n % 2 else "shows_up")
        return len(app.store.events(name))

    with ThreadPoolExecutor(ANNOTATORS) as pool:
        counts = list(pool.map(annotate, sessions))
    assert counts == [LABELS_EACH] * ANNOTATORS
    events = app.store.events()
    mine = events[events["annotator"].str.startswith("Parallel ")]
    assert len(mine) == ANNOTATORS * LABELS_EACH
    assert mine["submission_id"].is_unique
    assert not mine.duplicated(["annotator", "record_id"]).any()
