"""Helpers shared by the robustness suite (tests/robustness/): start the app in this process or
as `python app.py`, and the checks every case ends with (nothing lost, nothing left
half-written, nothing written where it should not be).

No conftest.py here on purpose: a second conftest.py would shadow `from conftest import ...`
in the tests one folder up, so the few shared pieces are plain functions.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What a half-written file or folder is called while it is written (then renamed into place).
_HALF_WRITTEN = re.compile(r"(\.tmp$|\.tmp-|\.partial$|\.new$|\.old$|\.old-)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(folder: Path) -> dict[str, str]:
    """{relative path: content hash} of every file under `folder` ("nothing was written")."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def half_written(folder: Path, allowed: Iterable[str] = ()) -> list[str]:
    """Temporary or partial files/folders left under `folder` (names in `allowed` excepted)."""
    allowed = set(allowed)
    return [
        str(p.relative_to(folder))
        for p in Path(folder).rglob("*")
        if _HALF_WRITTEN.search(p.name) and p.name not in allowed
    ]


def formula_cells(path: Path) -> list[str]:
    """Cells of a CSV that a spreadsheet would run as a formula (numbers excepted)."""
    bad = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.reader(f):
            for cell in row:
                if cell.startswith(FORMULA_STARTS):
                    try:
                        float(cell)
                    except ValueError:
                        bad.append(cell)
    return bad


def grep_tree(folder: Path, needles: Iterable[str]) -> list[str]:
    """'path: needle' for every file under `folder` that contains one of `needles`."""
    hits = []
    needles = [n.encode() for n in needles]
    for path in Path(folder).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


def launch_app(
    runs_dir: Path,
    *,
    demo_mode: bool = False,
    store: Any = None,
    jobs: Any = None,
    max_file_size: int | None = None,
) -> SimpleNamespace:
    """build_demo on the synthetic data, launched in this process with the app's own
    launch settings (`launch_kwargs`), and a gradio_client Client for it."""
    from gradio_client import Client

    from noshow.app.demo import build_demo, launch_kwargs
    from noshow.training.jobs import JobManager

    jobs = jobs or JobManager(runs_dir=runs_dir)
    demo = build_demo(
        jobs=jobs, store=store, runs_dir=runs_dir, demo_mode=demo_mode, data_source="synthetic"
    )
    port = free_port()
    kwargs = launch_kwargs(max_file_size=max_file_size)
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **kwargs
    )
    url = f"http://127.0.0.1:{port}/"
    return SimpleNamespace(
        demo=demo,
        url=url,
        client=Client(url, verbose=False),
        jobs=jobs,
        ctx=demo.noshow_context,
        runs_dir=Path(runs_dir),
    )


def start_app_process(
    runs_dir: Path, env: dict[str, str], log_path: Path, port: int | None = None
) -> SimpleNamespace:
    """`python app.py` on a free port (stdout and stderr to `log_path`); waits until it
    answers. The caller stops it with `stop_process`."""
    port = port or free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--runs-dir", str(runs_dir)],
        cwd=REPO,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            log.close()
            raise AssertionError(f"app.py exited with {proc.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return SimpleNamespace(proc=proc, url=url, log=log, log_path=log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"app.py did not answer in time: {log_path.read_text()}")


def stop_process(served: SimpleNamespace) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(15)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait(5)
    served.log.close()


def call_api(url: str, api_name: str, data: list[Any], timeout: float = 120) -> list[Any]:
    """Call an endpoint over plain HTTP, as a browser does (JSON with \\u escapes, so even a
    lone UTF-16 surrogate gets through, which gradio_client cannot send). Returns the
    outputs; raises AssertionError with the server's answer when the call fails."""
    import json

    base = url.rstrip("/") + "/gradio_api/call/" + api_name.strip("/")
    body = json.dumps({"data": data})  # ensure_ascii: "\ud800" travels as an escape
    with httpx.Client(timeout=timeout) as http:
        started = http.post(base, content=body, headers={"Content-Type": "application/json"})
        assert started.status_code == 200, started.text
        event_id = started.json()["event_id"]
        text = http.get(f"{base}/{event_id}").text
    event = None
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "complete":
            return json.loads(line.split(":", 1)[1])
    raise AssertionError(f"{api_name} did not complete: {text[:2000]}")
