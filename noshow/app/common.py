"""Small pieces shared by the app's tabs: the context object, the data cache, message boxes,
who is asking (a request's owner) and where downloads are written.

`UIContext` is what `build_demo` hands to every `build_*_tab(ctx)`: the services passed in
(job manager, label store), settings (runs folder, demo mode) and the server-side cache of
loaded data sets. A tab reads the data the user loaded in the Data tab with
`ctx.get_data(key)`, where `key` is the value of `ctx.data_key` (a `gr.State`).

Messages to users go through `error_box` / `ok_box` / `user_message`: bad input never shows
a traceback, only a sentence that says what to do, and never a token (secrets are redacted).

A data file typed as a server path must be a .csv/.parquet file (`check_server_data_path`):
the message for a file that is not appointment data quotes its first line, so the path box
must not read /etc/passwd or a key file and echo it back.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noshow.app.data_cache import (  # noqa: F401 - re-exported for the tabs
    DEFAULT_SOURCE,
    SYNTHETIC_SOURCE,
    DataCache,
    DataEntry,
    file_fingerprint,
)

# Errors whose message is written for users; anything else gets its type name prefixed.
_USER_ERROR_NAMES = {
    "DataError",
    "ConfigError",
    "ModelError",
    "JobBusyError",
    "JobError",
    "RunError",
    "LabelError",
    "TrainingError",
    "PredictError",
    "RecordNotFound",
}

CSS = """
.noshow-banner {border-radius: 8px; padding: 8px 14px; margin: 4px 0;}
.noshow-banner-synthetic {background: #fff4d6; border: 1px solid #f0c36d; color: #6b4b00;}
.noshow-msg-error {background: #fdecea; border: 1px solid #f5a39b; color: #7a1c12;
  border-radius: 8px; padding: 8px 14px;}
.noshow-msg-ok {background: #e9f7ef; border: 1px solid #9fd8b4; color: #185c32;
  border-radius: 8px; padding: 8px 14px;}
.noshow-msg-info {background: #eef4fd; border: 1px solid #a9c6f0; color: #1b3f73;
  border-radius: 8px; padding: 8px 14px;}
.noshow-mono textarea {font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px;}
"""


def _box(kind: str, text: str) -> str:
    # Markdown would render user-controlled text (file names, messages) as markup; escape it.
    body = html.escape(str(text)).replace("\n", "<br>")
    return f'<div class="noshow-msg-{kind}">{body}</div>'


def error_box(message: str) -> str:
    """An error message as an HTML box for a gr.Markdown (text is escaped)."""
    return _box("error", message)


def ok_box(message: str) -> str:
    """A success message as an HTML box for a gr.Markdown (text is escaped)."""
    return _box("ok", message)


def info_box(message: str) -> str:
    """A neutral notice as an HTML box for a gr.Markdown (text is escaped)."""
    return _box("info", message)


def user_message(exc: BaseException) -> str:
    """A sentence for the user from an exception: our own errors as written, others named;
    secrets (HF/W&B tokens, the login password) and the server's Python installation (an
    import error's file) are left out either way."""
    from noshow.system.redact import redact_library_paths, redact_secrets

    text = redact_library_paths(redact_secrets(str(exc).strip() or type(exc).__name__))
    if type(exc).__name__ in _USER_ERROR_NAMES or isinstance(exc, ValueError | FileNotFoundError):
        return text
    return f"Unexpected error ({type(exc).__name__}): {text}"


DATA_SUFFIXES = (".csv", ".parquet", ".pq")


def check_server_data_path(path: str) -> str:
    """`path` stripped, if it names a CSV/Parquet file; ValueError otherwise."""
    text = str(path).strip()
    if Path(text).suffix.lower() not in DATA_SUFFIXES or "\x00" in text:
        raise ValueError(
            f"{Path(text).name or text!r} is not a data file: a server path must end in "
            f"{', '.join(DATA_SUFFIXES)} (the Kaggle CSV or a Statement/NoShow file)."
        )
    return text


def synthetic_banner(is_synthetic: bool, source: str = "") -> str:
    """The banner shown whenever the data on screen is synthetic (empty string otherwise)."""
    if not is_synthetic:
        return ""
    return (
        '<div class="noshow-banner noshow-banner-synthetic"><b>Synthetic data.</b> '
        "These rows are generated with the real schema for an offline demo; they are not "
        "real patients and figures computed on them say nothing about real no-shows. "
        "Load the Kaggle file (Data tab) for real results.</div>"
    )


def request_owner(request: Any) -> str:
    """Who is asking (a `gr.Request`'s browser session, else its client's host), for the
    scheduler's fair queue and the one-batch-per-user limit."""
    if request is None:
        return ""
    if getattr(request, "session_hash", None):
        return str(request.session_hash)
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "")


def export_folder() -> Path:
    """Where downloads are written: a folder under the system temp dir (Gradio serves it)."""
    folder = Path(tempfile.gettempdir()) / "noshow-exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def format_duration(seconds: float | None) -> str:
    """'1h 02m', '3m 05s', '12s' or '-' for unknown."""
    if seconds is None or seconds != seconds or seconds < 0:  # NaN check without numpy
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


@dataclass
class UIContext:
    """Services and shared state handed to every tab builder."""

    jobs: Any  # noshow.training.jobs.JobManager
    store: Any  # noshow.labels.store.LabelStore or None
    runs_dir: Path
    demo_mode: bool = False
    data_source: str | None = None
    """Source the app starts with (None = discovery order: NOSHOW_DATA, data/, synthetic)."""
    cache: DataCache = field(default_factory=DataCache)
    data_key: Any = None
    """gr.State holding the cache key of the data loaded in the Data tab (None = default)."""
    banner: Any = None
    """gr.Markdown at the top of the page: the synthetic-data banner."""
    extras: dict[str, Any] = field(default_factory=dict)
    adapter_service: Any = None
    """noshow.inference.serving.AdapterService; None = made on first use of `adapters`."""
    _adapter_inputs: Any = field(default=None, repr=False)

    @property
    def adapters(self) -> Any:
        """The adapters every tab scores with (`noshow.inference.serving.AdapterService`): listed from
        the runs folder and the shipped adapters, only listed ones loadable in a public demo,
        every call through the one scheduler."""
        if self.adapter_service is None:
            from noshow.inference.serving import AdapterService

            shipped = self.extras.get("shipped_dir") or Path(__file__).resolve().parents[2] / (
                "adapters"
            )
            self.adapter_service = AdapterService(
                self.runs_dir, shipped, listed_only=self.demo_mode
            )
        return self.adapter_service

    def adapter_inputs(self) -> tuple[Any, Any]:
        """(generative, classifier): hidden Textboxes holding the adapter paths chosen in
        this browser session, made on first call inside the Blocks. They start at the first
        listed adapter; the Compare tab keeps them in step with its dropdowns; other tabs
        take them as inputs (so their API still takes the two paths)."""
        if self._adapter_inputs is None:
            import gradio as gr

            self._adapter_inputs = (
                gr.Textbox(self.adapters.default("generative"), visible=False),
                gr.Textbox(self.adapters.default("classifier"), visible=False),
            )
        return self._adapter_inputs

    def get_data(self, key: str | None = None, split_method: str = "time") -> DataEntry:
        """The data set for `key`, or the start-up data when the key is empty or evicted."""
        from noshow.app.data_views import load_entry

        entry = self.cache.get(key)
        if entry is not None:
            return entry
        return load_entry(self.cache, self.data_source, split_method=split_method)
