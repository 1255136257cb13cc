"""Start the noshow Gradio app: browse data, train in the background, compare, label.

    python app.py                       # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 7861 --runs-dir runs

Environment: NOSHOW_HOST (listen address; default 127.0.0.1), NOSHOW_DEMO=1 (public demo:
no training), NOSHOW_AUTH=user:password (login for a shared deployment), NOSHOW_DATA (data
file), NOSHOW_LABELS_DB (label database). This file only wires services and launches;
everything else lives in noshow/.
"""

from __future__ import annotations

import argparse
import os
import sys

from noshow.jobs import JobManager
from noshow.ui.app import build_demo, style_kwargs


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        sys.exit("NOSHOW_AUTH must look like user:password (both parts non-empty).")
    return user, password


def open_label_store():
    # The label store is optional: the app still serves data and training without it.
    try:
        from noshow.labels import LabelStore, default_label_db

        return LabelStore(default_label_db())
    except Exception as e:  # noqa: BLE001 - reported, and the Label tab says it is off
        print(f"Label store unavailable, labelling is off: {e}", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("NOSHOW_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", default="runs", help="folder with one sub-folder per run")
    args = parser.parse_args()

    jobs = JobManager(runs_dir=args.runs_dir)
    demo = build_demo(
        jobs=jobs,
        store=open_label_store(),
        runs_dir=args.runs_dir,
        demo_mode=os.environ.get("NOSHOW_DEMO") == "1",
    )
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        auth=parse_auth(os.environ.get("NOSHOW_AUTH")),
        allowed_paths=[],
        **style_kwargs(),
    )


if __name__ == "__main__":
    main()
