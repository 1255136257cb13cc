"""The Label tab: clinicians read statements and label them (No-show / Shows up / Skip, with
Back to correct), with keyboard shortcuts, notes, progress, agreement and exports. Every
action is one event in the label store (`noshow.labels.store.LabelStore`).

Endpoints (for gradio_client and tests); `suggest`, `generative` and `classifier` say which
adapters suggest a P(no-show) (the Compare tab's choices in the browser); `show_dataset_label`
(default off) shows the data set's label before the annotator has answered:
- `/label_next(annotator, order, suggest, generative, classifier, show_dataset_label)`: start
  a new queue
- `/label_submit(label, annotator, note, record_id, submission_id, suggest, generative,
  classifier, show_dataset_label)`: label is "no_show" or "shows_up" (or a button caption)
- `/label_skip(...)`, `/label_back(...)`, `/label_forward(...)`: same inputs, no label;
  `/label_redraw(...)`: the same inputs, draws the current item again (the switch uses it)
- `/label_export()` -> [CSV, JSONL] files (label names, annotator, statement text);
  `/label_agreement()` -> (kappa table, disagreements), also drawn when the section opens

Each of the item views returns (item html, fields, suggestions, progress, queue, record_id,
submission_id, note, message). The submission id names one showing of an item and is sent
back with each press about it: the same key pressed twice while it is on screen stores one
event, two different answers store both (the later one counts). In the browser each press
also carries its number on the page (appended to the submission id, "<id>#7"), and
`label_presses.PressLine` handles a page's presses one at a time in that order, each seeing
the session the one before it left: labelling faster than the server answers loses nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import gradio as gr

from noshow.app import label_views as lv
from noshow.app.common import UIContext, error_box, export_folder, info_box, ok_box, user_message
from noshow.app.label_presses import PressLine, press_js, split_press

NAME_STORAGE_KEY = "noshow-annotator-name"
# Only the annotator's own name is stored in the browser; a fixed secret keeps it readable
# after an app restart (a random one would forget the name each time).
NAME_STORAGE_SECRET = "noshow-label-tab"

# Keys fire the buttons unless the focus is in a text field (typing a note must not label).
KEYBOARD_JS = """
if (!window.__noshowLabelKeys) {
  window.__noshowLabelKeys = true;
  const keys = {"1": "label-no-show", "2": "label-shows-up", "s": "label-skip",
                "S": "label-skip", "ArrowLeft": "label-back", "ArrowRight": "label-forward"};
  const textTypes = ["text", "search", "email", "number", "password", "tel", "url", ""];
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const id = keys[ev.key];
    if (!id) return;
    const t = ev.target;
    if (t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
        (t.tagName === "INPUT" && textTypes.includes((t.type || "").toLowerCase())))) return;
    const btn = document.getElementById(id);
    // offsetParent is null while the Label tab is hidden: keys do nothing on other tabs.
    if (!btn || btn.disabled || btn.offsetParent === null) return;
    ev.preventDefault();
    btn.click();
  });
}
"""


def build_label_tab(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Label tab inside the current Blocks and wire its events."""
    store = ctx.store
    line = PressLine()  # one page's handlers one at a time, presses in the order made
    known_ids: dict[str, frozenset[int]] = {}
    known_lock = threading.Lock()

    def valid_ids(entry: Any) -> frozenset[int]:
        # Checking a record id against the loaded data on every press: build the set once.
        with known_lock:
            if entry.key not in known_ids:
                known_ids.clear()
                known_ids[entry.key] = frozenset(entry.frame["record_id"].astype(int).tolist())
            return known_ids[entry.key]

    gr.Markdown(
        "Label statements as a clinician would: will this patient miss the appointment? "
        "Your labels become training data (Train tab: *use clinician labels*) and a gold "
        "evaluation set (Compare tab: *gold set*)."
    )
    if store is None:
        gr.HTML(
            error_box(
                "Labelling is off: the label store could not be opened (see the app's log). "
                "Set NOSHOW_LABELS_DB to a writable file and restart the app."
            )
        )
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=380):
            with gr.Row():
                annotator = gr.Textbox(
                    label="Your name (required)",
                    placeholder="e.g. Dr Ana Souza",
                    max_length=100,
                    elem_id="label-annotator",
                    scale=2,
                )
                order = gr.Dropdown(
                    list(lv.QUEUE_ORDERS), value=lv.ORDER_RANDOM, label="Queue order", scale=2
                )
                with gr.Column(scale=2, min_width=200):
                    suggest = gr.Checkbox(
                        True,
                        label="Show model suggestions",
                        info="From the adapters chosen in the Compare tab.",
                    )
                    show_label = gr.Checkbox(
                        False,
                        label="Show the data set's label",
                        info="Off: shown once you have answered, so it cannot anchor your "
                        "judgement. On: review sessions.",
                        elem_id="label-show-dataset",
                    )
            start_btn = gr.Button("Start / new queue", variant="primary", elem_id="label-start")
            progress = gr.HTML(elem_id="label-progress")
            item = gr.HTML(
                info_box("Type your name and press Start to get a queue of statements."),
                elem_id="label-item",
            )
            with gr.Row():
                no_show_btn = gr.Button(
                    "No-show [1]", variant="stop", elem_id="label-no-show", min_width=90
                )
                shows_up_btn = gr.Button(
                    "Shows up [2]", variant="primary", elem_id="label-shows-up", min_width=90
                )
                skip_btn = gr.Button("Skip [s]", elem_id="label-skip", min_width=80)
                back_btn = gr.Button("Back [←]", elem_id="label-back", min_width=80)
                forward_btn = gr.Button("Next [→]", elem_id="label-forward", min_width=80)
            note = gr.Textbox(
                label="Note (optional)", placeholder="Anything unusual about this record?", lines=1
            )
            message = gr.HTML(elem_id="label-message")
        with gr.Column(scale=2, min_width=300):
            with gr.Accordion("Guidelines", open=True):
                gr.Markdown(lv.GUIDELINES)
            suggestions = gr.HTML()
            fields = gr.Dataframe(
                headers=["field", "value"], label="Structured fields", interactive=False
            )
    with gr.Accordion("Queue", open=False):
        queue_df = gr.Dataframe(label="Your queue (click a row to go there)", interactive=False)
    empty_kappa, empty_disagreements = lv.empty_agreement_views()
    with gr.Accordion("Agreement between annotators", open=False) as agree_section:
        agree_btn = gr.Button("Refresh agreement", size="sm")
        kappa_df = gr.Dataframe(
            empty_kappa,
            label="Cohen's kappa (the note says how to read each one)",
            interactive=False,
            wrap=True,
            column_widths=["13%", "13%", "13%", "6%", "9%", "46%"],
            elem_id="label-kappa",
        )
        disagree_df = gr.Dataframe(
            empty_disagreements,
            label="Disagreements to adjudicate",
            interactive=False,
            wrap=True,
            elem_id="label-disagreements",
        )
        agree_msg = gr.HTML()
    with gr.Accordion("Export labels", open=False):
        gr.Markdown(
            "Every stored event (labels and skips), as CSV and as JSON lines: the annotator, "
            "the label (No-show / Shows up) and the statement's text where the loaded data "
            "still has the statement that was labelled."
        )
        export_btn = gr.Button("Export CSV + JSONL", size="sm", elem_id="label-export")
        export_files = gr.File(label="Exports", file_count="multiple", interactive=False)
        export_msg = gr.HTML()
    record_box = gr.Textbox(visible="hidden", elem_id="label-record-id")
    submission_box = gr.Textbox(visible="hidden", elem_id="label-submission-id")
    session = gr.State(None)
    saved_name = gr.BrowserState("", storage_key=NAME_STORAGE_KEY, secret=NAME_STORAGE_SECRET)
    gr.HTML("", js_on_load=KEYBOARD_JS, elem_id="label-keys")

    gen_dd, clf_dd = ctx.adapter_inputs()  # the adapters chosen in this session

    # -- helpers -----------------------------------------------------------------------------

    def need_store() -> Any:
        if store is None:
            raise lv.LabelViewError(
                "Labelling is off: the label store could not be opened. Set NOSHOW_LABELS_DB "
                "to a writable file and restart the app."
            )
        return store

    def scorers(use: bool, gen_path: Any, clf_path: Any) -> dict[str, Any]:
        from noshow.app.compare_slots import CLASSIFIER, GENERATIVE, load_slot

        found = {}
        if not use:
            return found
        for approach, path in ((GENERATIVE, gen_path), (CLASSIFIER, clf_path)):
            if path:
                predictor, _ = load_slot(path, approach, ctx.adapters, background=True)
                if predictor is not None:
                    found[approach] = predictor
        return found

    def suggest_for(statement: str, use: bool, gen_path: Any, clf_path: Any) -> str:
        if not use:
            return ""
        from noshow.app.compare_slots import CLASSIFIER, GENERATIVE, score_slot

        out = {}
        for approach, path in ((GENERATIVE, gen_path), (CLASSIFIER, clf_path)):
            if path:
                slot = score_slot(path, approach, statement, ctx.adapters)
                out[approach] = slot
        if not out:
            return info_box("No adapter chosen in the Compare tab, so no suggestions.")
        return lv.suggestions_html(out)

    def view(state: dict, entry: Any, msg: str, use: bool, gen_path: Any, clf_path: Any):
        """Outputs for the item at state['pos'] (or the 'queue done' view)."""
        s = need_store()
        queue = state["queue"]
        statuses = s.status_for(state["annotator"], queue) if queue else {}
        counts = lv.progress_counts(s, state["annotator"], queue)
        table = lv.queue_table(queue, statuses, entry.frame, state["pos"])
        prog = lv.progress_html(counts)
        if state["pos"] is None:
            done = (
                lv.done_html(len(queue))
                if queue
                else info_box(
                    "Nothing left to label in this data set for you: every record is done."
                )
            )
            return (state, done, None, "", prog, table, "", "", "", msg)
        rid = int(queue[state["pos"]])
        row = entry.frame.loc[entry.frame["record_id"] == rid].iloc[0]
        current = None
        if statuses.get(rid) == "submitted":
            mine = s.current_labels(state["annotator"])
            hit = mine[mine["record_id"] == rid]
            current = int(hit["label"].iloc[0]) if len(hit) else None
        card = lv.item_html(
            row,
            state["pos"],
            len(queue),
            statuses.get(rid, "pending"),
            current,
            state["reasons"].get(str(rid)),
            show_dataset_label=bool(state.get("show_label")),
        )
        showing = lv.new_submission_id()
        state = {**state, "shown_at": time.time(), "shown": lv.remember_showing(state, showing)}
        return (
            state,
            card,
            lv.fields_table(row),
            suggest_for(str(row["statement"]), use, gen_path, clf_path),
            prog,
            table,
            str(rid),
            showing,
            "",
            msg,
        )

    def failure(e: Exception, state: Any):
        return (state, gr.update(), gr.update(), gr.update(), gr.update(), gr.update()) + (
            gr.update(),
            gr.update(),
            gr.update(),
            error_box(user_message(e)),
        )

    def checked_session(name: Any, state: Any, show: Any = False) -> tuple[str, dict]:
        """(annotator, session with the switch's current value) or LabelViewError."""
        from noshow.labels.events import normalize_annotator

        who = normalize_annotator(name)
        if not isinstance(state, dict) or not state.get("queue"):
            raise lv.LabelViewError("No queue yet: type your name and press Start.")
        if state["annotator"] != who:
            raise lv.LabelViewError(
                f"The name changed to {who!r}: press Start to get a queue for that name "
                f"(the current queue belongs to {state['annotator']!r})."
            )
        return who, {**state, "show_label": bool(show)}

    def in_turn(request: Any, sid: Any, state: Any, handle: Any) -> tuple:
        """`handle(session)` in this page's turn (a press, numbered in `sid`, in its order),
        with the session the page's last handler left; it returns the view, session first."""
        page = getattr(request, "session_hash", None)
        with line.turn(page, split_press(sid)[1], state) as turn:
            out = handle(turn.state)
            turn.leave(out[0])
            return out

    # -- handlers ----------------------------------------------------------------------------

    def restore_name(saved: Any):
        return saved if isinstance(saved, str) and saved.strip() else gr.skip()

    def start(
        name,
        queue_order,
        use,
        gen_path,
        clf_path,
        show,
        state,
        key,
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 - how Gradio injects a progress bar
    ):
        return in_turn(
            request,
            None,
            state,
            lambda now: start_now(
                name, queue_order, use, gen_path, clf_path, show, now, key, progress
            ),
        )

    def start_now(name, queue_order, use, gen_path, clf_path, show, state, key, progress):
        try:
            from noshow.labels.events import normalize_annotator

            s = need_store()
            who = normalize_annotator(name)
            entry = ctx.get_data(key)
            needs_models = queue_order != lv.ORDER_RANDOM
            found = scorers(True, gen_path, clf_path) if needs_models else {}
            fns = lv.scorers_with_progress(found, lambda f, text: progress(f, desc=text))
            queue, reasons = lv.build_queue(entry.frame, queue_order, who, s, scores=fns)
            new = lv.new_session(who, queue_order, queue, reasons) | {"show_label": bool(show)}
            statuses = s.status_for(who, queue)
            new["pos"] = lv.next_position(queue, statuses, -1)
            msg = ok_box(f"New queue for {who}: {len(queue)} statements ({queue_order}).")
            return view(new, entry, msg, use, gen_path, clf_path)
        except Exception as e:  # noqa: BLE001 - every failure becomes a sentence
            return failure(e, state)

    def record(label, name, note_text, rid, sid, use, gen_path, clf_path, show, state, key):
        """Submit (label given) or skip (label None) the item the press was about: the one
        on screen when it was pressed (`rid`, shown as `sid`), even if a press before it has
        moved the session on since."""
        try:
            s = need_store()
            who, state = checked_session(name, state, show)
            if not str(rid or "").strip():
                raise lv.LabelViewError("No statement is shown: press Start first.")
            entry = ctx.get_data(key)
            here = lv.position_of(state["queue"], rid, -1)
            if here < 0:
                raise lv.LabelViewError(
                    f"Record {rid} is not in your queue: press Start for a fresh queue."
                )
            row = entry.frame.loc[entry.frame["record_id"] == int(state["queue"][here])].iloc[0]
            showing, number = split_press(sid)
            common = {
                "statement": str(row["statement"]),
                "seconds_spent": lv.seconds_since(lv.shown_at(state, showing)),
                "note": note_text or "",
                "submission_id": None if number is None else f"press-{number}",
                "showing_id": showing,
                "valid_record_ids": valid_ids(entry),
            }
            if label is None:
                event = s.skip(int(row["record_id"]), who, **common)
            else:
                event = s.submit(int(row["record_id"]), lv.parse_label(label), who, **common)
            msg = lv.press_message(event)
            statuses = s.status_for(who, state["queue"])
            # From the pressed item, not from the session: a repeated press lands on the same
            # next item instead of skipping one.
            state = {**state, "pos": lv.next_position(state["queue"], statuses, here)}
            return view(state, entry, msg, use, gen_path, clf_path)
        except Exception as e:  # noqa: BLE001
            return failure(e, state)

    def press_handler(go: Any, numbered: bool = True, doc: str | None = None) -> Any:
        """The handler of the item's buttons and switch: `go(label, name, note_text, rid,
        sid, use, gen_path, clf_path, show, session, key)` in this page's turn (`numbered`:
        a press, in the order the page made it). Its parameters name the endpoint's inputs in
        the API (`label` is None, from a State, for all but No-show / Shows up); `doc` is the
        endpoint's description there."""

        def handler(
            label: str | None,
            name: str,
            note_text: str,
            rid: str,
            sid: str,
            use: bool,
            gen_path: str | None,
            clf_path: str | None,
            show: bool,
            state: Any,
            key: Any,
            request: gr.Request = None,
        ):
            args = (label, name, note_text, rid, sid, use, gen_path, clf_path, show)
            turn_sid = sid if numbered else None
            return in_turn(request, turn_sid, state, lambda now: go(*args, now, key))

        handler.__doc__ = doc
        return handler

    submit = press_handler(record)

    def move(step: int):
        def go(_label, name, _note, rid, _sid, use, gen_path, clf_path, show, state, key):
            try:
                _, state = checked_session(name, state, show)
                entry = ctx.get_data(key)
                # From the item the session shows now: a press still being answered when Back
                # was pressed has moved it on, and Back returns to the item that press answered.
                here = state["pos"]
                if here is None:
                    here = lv.position_of(state["queue"], rid, len(state["queue"]))
                target = min(max(here + step, 0), len(state["queue"]) - 1)
                return view({**state, "pos": target}, entry, "", use, gen_path, clf_path)
            except Exception as e:  # noqa: BLE001
                return failure(e, state)

        return press_handler(go)

    def redraw_now(_label, name, _note, rid, _sid, use, gen_path, clf_path, show, state, key):
        """The item on screen drawn again after the switch changed (nothing without a queue);
        the note being typed and the time already spent on the item stay."""
        if not isinstance(state, dict) or not state.get("queue"):
            return (state, *[gr.skip()] * 9)
        try:
            _, state = checked_session(name, state, show)
            state["pos"] = lv.position_of(state["queue"], rid, state["pos"])
            out = list(view(state, ctx.get_data(key), "", use, gen_path, clf_path))
            # the same showing drawn again: the time spent on it so far counts
            out[0] = {**out[0], "shown": {**out[0]["shown"], out[7]: state.get("shown_at")}}
            out[item_outputs.index(note)] = gr.skip()
            return tuple(out)
        except Exception as e:  # noqa: BLE001
            return failure(e, state)

    redraw = press_handler(redraw_now, numbered=False, doc=redraw_now.__doc__)

    def jump(
        name, use, gen_path, clf_path, show, state, key, evt: gr.SelectData, request: gr.Request
    ):
        args = (name, use, gen_path, clf_path, show)
        return in_turn(request, None, state, lambda now: jump_now(*args, now, key, evt))

    def jump_now(name, use, gen_path, clf_path, show, state, key, evt):
        try:
            _, state = checked_session(name, state, show)
            target = int(evt.index[0])
            if not 0 <= target < len(state["queue"]):
                raise lv.LabelViewError("That row is not in the queue.")
            return view({**state, "pos": target}, ctx.get_data(key), "", use, gen_path, clf_path)
        except Exception as e:  # noqa: BLE001
            return failure(e, state)

    def export(key=None):
        try:
            from noshow.labels.export import export_csv, export_jsonl, export_rows

            s = need_store()
            entry = ctx.get_data(key)
            texts = lv.statements_for(entry.frame, s.events()["record_id"].unique().tolist())
            stamp = time.strftime("%Y%m%d-%H%M%S")
            folder = export_folder()
            rows = export_rows(s, texts)
            paths = [
                export_csv(s, folder / f"labels-{stamp}.csv", texts),
                export_jsonl(s, folder / f"labels-{stamp}.jsonl", texts),
            ]
            return [str(p) for p in paths], ok_box(lv.export_message(rows, entry.label))
        except Exception as e:  # noqa: BLE001
            return None, error_box(user_message(e))

    def agreement(key=None):
        from noshow.labels.agreement import cohen_kappa_table, disagreements

        try:
            s = need_store()
            entry = ctx.get_data(key)
            labelled = s.current_labels()["record_id"].unique().tolist()
            truth = lv.dataset_labels_for(entry.frame, labelled)
            return (*lv.agreement_views(cohen_kappa_table(s, truth), disagreements(s, truth)), "")
        except Exception as e:  # noqa: BLE001
            return gr.skip(), gr.skip(), error_box(user_message(e))

    # -- wiring ------------------------------------------------------------------------------

    item_outputs = [session, item, fields, suggestions, progress, queue_df]
    item_outputs += [record_box, submission_box, note, message]
    extras = [suggest, gen_dd, clf_dd, show_label, session, ctx.data_key]
    item_inputs = [annotator, note, record_box, submission_box, *extras]
    # Skip, Back, Next and the switch: the presses' inputs, with a label that is always None.
    press_inputs = [gr.State(None), *item_inputs]
    start_btn.click(start, [annotator, order, *extras], item_outputs, api_name="label_next")
    # Labelling is light work: let annotators' presses run side by side instead of queueing
    # behind one another (the store serialises the writes itself; one page's presses run in
    # their order). Every press is sent, even while the last one is being answered.
    busy = {"concurrency_limit": 8, "concurrency_id": "label"}
    pressed = {
        **busy,
        "js": press_js(press_inputs.index(submission_box)),
        "trigger_mode": "multiple",
    }
    no_show_btn.click(
        submit, [no_show_btn, *item_inputs], item_outputs, api_name="label_submit", **pressed
    )
    shows_up_btn.click(
        submit,
        [shows_up_btn, *item_inputs],
        item_outputs,
        api_visibility="private",
        **pressed,
    )
    skip_btn.click(submit, press_inputs, item_outputs, api_name="label_skip", **pressed)
    back_btn.click(move(-1), press_inputs, item_outputs, api_name="label_back", **pressed)
    forward_btn.click(move(+1), press_inputs, item_outputs, api_name="label_forward", **pressed)
    show_label.change(redraw, press_inputs, item_outputs, api_name="label_redraw", **busy)
    queue_df.select(
        jump,
        [annotator, suggest, gen_dd, clf_dd, show_label, session, ctx.data_key],
        item_outputs,
        api_visibility="private",
    )
    export_btn.click(export, [ctx.data_key], [export_files, export_msg], api_name="label_export")
    agree_outputs = [kappa_df, disagree_df, agree_msg]
    agree_btn.click(agreement, [ctx.data_key], agree_outputs, api_name="label_agreement")
    # Filled when the section opens: nobody should have to find a Refresh button first.
    agree_section.expand(agreement, [ctx.data_key], agree_outputs, api_visibility="private")
    # The name is saved when the field loses focus (saving on every keystroke would echo the
    # value back while the user is still typing). BrowserState reads localStorage when it is
    # first drawn, i.e. when this tab is first opened, and then fires `change`.
    annotator.blur(lambda name: name.strip(), annotator, saved_name, api_visibility="private")
    saved_name.change(restore_name, saved_name, annotator, api_visibility="private")
    root = gr.context.Context.root_block
    if root is not None:
        root.load(restore_name, saved_name, annotator, api_visibility="private")
    return {"annotator": annotator, "item": item, "progress": progress}
