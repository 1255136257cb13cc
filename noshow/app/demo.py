"""`build_demo`: the whole Gradio app (Data / Train / Compare / Label tabs) around the
services it is given, so tests can pass fakes.

    from noshow.training.jobs import JobManager
    from noshow.app.demo import build_demo, style_kwargs
    demo = build_demo(jobs=JobManager(runs_dir="runs"), store=None, runs_dir="runs")
    demo.launch(**launch_kwargs(auth=parse_auth("user:password")))

Every event a test drives has an `api_name` (see each tab module for the list).

`launch_kwargs` holds the launch settings that security depends on, so `app.py`, the load
test and the tests start the app the same way: Gradio serves only files the app itself
created (uploads and downloads in its cache; `allowed_paths=[]`, nothing else on the
server), uploads over the data limit are refused before they are stored, errors reach the
browser as our sentences (never a traceback), and a login is asked for when `auth` is set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from noshow.app.common import CSS, DataCache, UIContext
from noshow.app.compare_tab import build_compare_tab
from noshow.app.data_tab import build_data_tab
from noshow.app.label_tab import build_label_tab
from noshow.app.train_tab import build_train_tab

log = logging.getLogger(__name__)

TITLE = "noshow: will the patient miss the appointment?"
INTRO = (
    "Fine-tune Llama-family models with QLoRA on the Kaggle *Medical Appointment No Shows* "
    "data, written as short statements. Two approaches: a **generative** model that answers "
    "Yes/No, and a **classifier head**. Browse the data, train in the background, compare "
    "both adapters side by side, and label statements. Every model is reported next to a "
    "tabular baseline (gradient boosting) trained on the same rows."
)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`NOSHOW_AUTH` ("user:password") -> (user, password); None when unset or empty.

    The password may contain ':' (only the first one separates). Raises ValueError for a
    value without a user or a password, so a typo never starts an open app by accident.
    """
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise ValueError("NOSHOW_AUTH must look like user:password (both parts non-empty).")
    return user.strip(), password


def launch_kwargs(
    auth: tuple[str, str] | None = None, *, max_file_size: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for `demo.launch(...)`: theme, CSS and the security settings.

    `max_file_size` (bytes) defaults to `noshow.data.load.MAX_BYTES`, the limit load_data applies.
    """
    from noshow.data.load import MAX_BYTES

    kwargs: dict[str, Any] = {
        # Serve no folder of the server: only files the app put in Gradio's cache (uploads,
        # the CSV downloads it returns) can be fetched through /gradio_api/file=.
        "allowed_paths": [],
        "max_file_size": MAX_BYTES if max_file_size is None else max_file_size,
        "show_error": False,  # handlers return sentences; unexpected errors stay in the log
        **style_kwargs(),
    }
    if auth is not None:
        kwargs["auth"] = auth
        kwargs["auth_message"] = "noshow is shared with a login: ask the person who runs it."
    return kwargs


def style_kwargs() -> dict[str, Any]:
    """Theme and CSS for `demo.launch(...)` (Gradio 6 takes them at launch, not in Blocks)."""
    return {
        "theme": gr.themes.Soft(primary_hue="blue", secondary_hue="sky", neutral_hue="slate"),
        "css": CSS,
    }


def build_demo(
    jobs: Any,
    store: Any,
    runs_dir: str | Path = "runs",
    demo_mode: bool = False,
    data_source: str | None = None,
    shipped_dir: str | Path | None = None,
) -> gr.Blocks:
    """Lay out the app around `jobs` (a JobManager) and `store` (a LabelStore, or None).

    `data_source` is what the Data tab shows first (None = NOSHOW_DATA, data/, synthetic).
    `demo_mode` hides the training controls and makes the training endpoints refuse.
    `shipped_dir` holds the shipped adapters listed before the runs (None = `<repo>/adapters`).
    """
    from noshow.app.startup import import_for_requests

    # Before any request: Gradio's worker threads importing one library at once can see it
    # half-initialised (the first page after a start showed an import error).
    import_for_requests()
    runs_dir = Path(runs_dir)
    try:
        from noshow.training.runs import mark_interrupted_runs

        # Runs left "running" by a previous app process are dead now; say so on disk.
        marked = mark_interrupted_runs(runs_dir)
        if marked:
            log.info("Marked %d interrupted run(s): %s", len(marked), ", ".join(marked))
    except Exception as e:  # noqa: BLE001 - a damaged runs folder must not stop the app
        log.warning("Could not check %s for interrupted runs: %s", runs_dir, e)

    ctx = UIContext(
        jobs=jobs,
        store=store,
        runs_dir=runs_dir,
        demo_mode=demo_mode,
        data_source=data_source,
        cache=DataCache(),
    )
    if shipped_dir is not None:
        ctx.extras["shipped_dir"] = Path(shipped_dir)  # read by the Compare tab
    with gr.Blocks(title="noshow", fill_width=False) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        if demo_mode:
            gr.Markdown(
                "_Public demo: training is turned off; browsing, comparing and labelling work._"
            )
        ctx.data_key = gr.State(None)
        ctx.banner = gr.HTML()
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                data = build_data_tab(ctx)
            with gr.Tab("Train", id="train"):
                train = build_train_tab(ctx)
            with gr.Tab("Compare", id="compare"):
                # noshow/app/compare_tab.py (owned by the Compare tab's author)
                build_compare_tab(ctx)
            with gr.Tab("Label", id="label"):
                # noshow/app/label_tab.py (owned by the Label tab's author)
                build_label_tab(ctx)

        # On page load: show the data and re-attach to whatever job is running.
        demo.load(
            data["startup"],
            data["startup_inputs"],
            data["startup_outputs"],
            api_visibility="private",
        ).then(
            data["first_page"],
            data["filter_inputs"],
            data["table_outputs"],
            api_visibility="private",
        ).then(
            data["show_first"],
            data["filter_inputs"],
            data["record_outputs"],
            api_visibility="private",
        ).then(
            data["summary_of"],
            data["filter_inputs"],
            data["summary_plot"],
            api_visibility="private",
        )
        demo.load(
            train["training_status"],
            train["status_inputs"],
            train["status_outputs"],
            api_visibility="private",
        )
        # The Train form as last used in this browser (also restored when its tab is drawn).
        demo.load(
            train["restore_form"],
            train["restore_inputs"],
            train["restore_outputs"],
            api_visibility="private",
        )
        demo.load(train["list_runs"], None, train["runs_df"], api_visibility="private")
    demo.noshow_context = ctx  # for tests and embedding apps
    return demo
