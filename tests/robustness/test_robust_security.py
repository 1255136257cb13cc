"""Security promises, checked against the real `python app.py` (shared mode: NOSHOW_AUTH login,
NOSHOW_DEMO=1, fake HF and W&B tokens in its environment) and against a training run:

- the page and the API demand the login; a wrong password is refused;
- Gradio serves only the app's own files: /etc/passwd, /proc/self/environ, the repository,
  the label database and run folders are refused (also with ../ and URL-encoded paths);
- fields that name a file (Data tab path, Train tab data path, Compare adapter path, upload
  names) cannot reach other server files, with `..` or absolute paths alike;
- demo mode refuses to start or cancel jobs through the API, though the buttons are hidden;
- HF_TOKEN and WANDB_API_KEY never reach a page, an API answer, a log, config.json,
  status.json or any other file a run writes.

    .venv/bin/python -m pytest -q tests/robustness/test_robust_security.py
"""

from __future__ import annotations

import html
import json
import secrets
import shutil
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from robust_helpers import (
    REPO,
    call_api,
    grep_tree,
    launch_app,
    start_app_process,
    stop_process,
    tree,
)

USER = "tester"
PASSWORD = "Correct-Horse-" + secrets.token_hex(4)
HF_TOKEN = "hf_" + secrets.token_hex(17)  # the shape of a real Hugging Face token
WANDB_KEY = secrets.token_hex(20)  # the shape of a real W&B API key
SECRETS = (HF_TOKEN, WANDB_KEY, PASSWORD)


def secret_env() -> dict[str, str]:
    return {"HF_TOKEN": HF_TOKEN, "WANDB_API_KEY": WANDB_KEY}


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory, adapters):
    """`python app.py` as a shared public demo: login, demo mode, tokens in its environment."""
    root = tmp_path_factory.mktemp("shared-app")
    runs_dir = root / "runs"
    shutil.copytree(adapters.runs, runs_dir)
    env = {
        **secret_env(),
        "NOSHOW_AUTH": f"{USER}:{PASSWORD}",
        "NOSHOW_DEMO": "1",
        "NOSHOW_LABELS_DB": str(root / "labels" / "labels.sqlite"),
        "NOSHOW_DATA": "synthetic",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "SPACE_ID": "",
        "NOSHOW_HOST": "127.0.0.1",
    }
    served = start_app_process(runs_dir, env, root / "app.log")
    http = httpx.Client(base_url=served.url, timeout=60)
    assert http.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
    yield SimpleNamespace(
        **vars(served),
        http=http,
        root=root,
        runs_dir=runs_dir,
        runs_before=tree(runs_dir),
        adapters=SimpleNamespace(
            generative=str(runs_dir / Path(adapters.generative).name),
            classifier=str(runs_dir / Path(adapters.classifier).name),
        ),
    )
    http.close()
    stop_process(served)


def client_for(app):
    """One logged-in gradio_client session per module (each Client costs a round of calls)."""
    from gradio_client import Client

    if not hasattr(app, "client"):
        app.client = Client(app.url, auth=(USER, PASSWORD), verbose=False)
    return app.client


# ----------------------------------------------------------------------------- login


@pytest.mark.parametrize(
    "path",
    ["/config", "/gradio_api/info", "/gradio_api/file=/etc/passwd", "/gradio_api/queue/status"],
)
def test_without_login_the_app_answers_only_with_not_authenticated(shared_app, path):
    response = httpx.get(shared_app.url.rstrip("/") + path, timeout=30)
    assert response.status_code == 401
    assert "Not authenticated" in response.text


def test_without_login_no_endpoint_can_be_called(shared_app):
    response = httpx.post(
        shared_app.url + "gradio_api/call/compare", json={"data": ["x", None, None]}, timeout=30
    )
    assert response.status_code == 401


def test_page_shows_the_login_form_and_refuses_a_wrong_password(shared_app):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    page = httpx.get(shared_app.url, timeout=30)
    assert page.status_code == 200 and "login" in page.text.lower()
    wrong = httpx.post(
        shared_app.url + "login", data={"username": USER, "password": "guess"}, timeout=30
    )
    assert wrong.status_code == 400
    with pytest.raises(AuthenticationError):
        Client(shared_app.url, verbose=False)
    with pytest.raises(Exception, match="(?i)credentials|login|auth"):
        Client(shared_app.url, auth=(USER, "guess"), verbose=False)


def test_login_setting_must_have_a_user_and_a_password():
    from noshow.app.demo import launch_kwargs, parse_auth

    assert parse_auth("ana:pass:with:colons") == ("ana", "pass:with:colons")
    assert parse_auth("") is None and parse_auth(None) is None
    for bad in ("ana", "ana:", ":secret", " :secret"):
        with pytest.raises(ValueError, match="user:password"):
            parse_auth(bad)
    assert launch_kwargs(("a", "b"))["auth"] == ("a", "b")
    assert "auth" not in launch_kwargs()


# ----------------------------------------------------------------------------- files served


def file_paths(app) -> dict[str, str]:
    run = Path(app.adapters.classifier)
    return {
        "/etc/passwd": "/etc/passwd",
        "/proc/self/environ (holds the tokens)": "/proc/self/environ",
        "../ up to /etc/passwd": "../../../../../../etc/passwd",
        "URL-encoded ../": urllib.parse.quote("../../../../etc/passwd", safe=""),
        "app.py (relative)": "app.py",
        "a file of the repository": str(REPO / "noshow" / "labels.py"),
        "the label database": str(app.root / "labels" / "labels.sqlite"),
        "a run's config.json": str(run / "config.json"),
        "a run's adapter weights": str(run / "adapter" / "adapter_model.safetensors"),
        "the app's log": str(app.log_path),
        "a temp folder file": "/tmp/noshow-exports/../../etc/hostname",
    }


@pytest.mark.parametrize(
    "name",
    list(
        file_paths(
            SimpleNamespace(
                adapters=SimpleNamespace(classifier="/x/y"), root=Path("/r"), log_path="/l"
            )
        )
    ),
)
def test_server_files_outside_the_app_are_not_served(shared_app, name):
    target = file_paths(shared_app)[name]
    response = shared_app.http.get(f"/gradio_api/file={target}")
    assert response.status_code in (403, 404), response.text[:200]
    assert "root:" not in response.text and not any(s in response.text for s in SECRETS)


def test_launch_settings_serve_no_server_folder():
    from noshow.app.demo import launch_kwargs

    kwargs = launch_kwargs()
    assert kwargs["allowed_paths"] == []
    assert kwargs["show_error"] is False
    assert "blocked_paths" not in kwargs or kwargs["blocked_paths"]


# ----------------------------------------------------------------------------- fields naming files

SERVER_PATHS = [
    "/etc/passwd",
    "../../../../etc/passwd",
    "data/../../../../etc/shadow.csv",
    str(REPO / "data" / "KaggleV2-May-2016.csv"),
]


@pytest.mark.parametrize("path", SERVER_PATHS)
def test_demo_data_tab_never_reads_a_server_path(shared_app, path):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not in the list of choices"):
        client_for(shared_app).predict(
            "Path on the server", None, path, "time", api_name="/load_data"
        )


@pytest.mark.parametrize("path", SERVER_PATHS)
def test_demo_train_tab_never_reads_a_server_path(shared_app, path):
    from gradio_client.exceptions import AppError

    # Gradio refuses first (no custom values in demo mode); the handler would refuse too.
    with pytest.raises(AppError, match="not in the list of choices"):
        client_for(shared_app).predict(
            "classifier", "smollm2-135m-instruct", path, "time", 64, 64, 1, 3, 2e-4, 8, 4, 0,
            "none", False, False, api_name="/preflight",
        )  # fmt: skip


@pytest.mark.parametrize("path", SERVER_PATHS)
def test_demo_train_handler_refuses_a_server_path_behind_gradio(path, tmp_path):
    """The second line of defence: the handler itself, called as Gradio would call it."""
    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    demo = build_demo(
        jobs=JobManager(runs_dir=tmp_path), store=None, runs_dir=tmp_path, demo_mode=True,
        data_source="synthetic",
    )  # fmt: skip
    preflight = next(f.fn for f in demo.fns.values() if f.api_name == "preflight")
    message = preflight(
        "classifier", "smollm2-135m-instruct", path, "time", 64, 64, 1, 3, 2e-4, 8, 4, 0,
        "none", False, False,
    )  # fmt: skip
    assert "Reading files from the server is turned off in demo mode" in html.unescape(message)


@pytest.mark.parametrize(
    "path",
    ["/etc", "../../../../etc", "/tmp", "{runs}/../{run}", "{run}/adapter/../adapter", "~"],
)
def test_demo_compare_only_loads_listed_adapters(shared_app, path):
    run = Path(shared_app.adapters.classifier)
    path = path.format(runs=shared_app.runs_dir, run=run if "{runs}" not in path else run.name)
    _, summary, _ = client_for(shared_app).predict(
        "A statement.", shared_app.adapters.generative, path, api_name="/compare"
    )
    assert "only the listed adapters" in summary["classifier"]["error"]
    assert summary["generative"]["p"] is not None  # the listed one still works


def test_uploaded_file_names_are_never_used_as_paths(tmp_path):
    """An upload named ../../x is stored inside Gradio's cache under its bare name, and a
    forged file reference to a server path is refused before the handler sees it."""
    served = launch_app(tmp_path / "runs", demo_mode=True)
    try:
        evil = "../../../../tmp/noshow-evil-upload.csv"
        response = httpx.post(
            served.url + "gradio_api/upload",
            files={"files": (evil, b"Statement,NoShow\nA.,Yes\nB.,No\nC.,No\n")},
            timeout=30,
        )
        (stored,) = response.json()
        assert Path(stored).name == "noshow-evil-upload.csv" and ".." not in stored
        assert not Path("/tmp/noshow-evil-upload.csv").exists()
        upload = {"path": stored, "orig_name": evil, "meta": {"_type": "gradio.FileData"}}
        outputs = call_api(served.url, "load_data", ["Upload a file", upload, None, "random"])
        message = next(o for o in outputs if isinstance(o, str) and "noshow-msg" in o)
        assert "Loaded noshow-evil-upload.csv: 3 rows" in html.unescape(message)

        forged = {"path": "/etc/passwd", "orig_name": "x.csv", "meta": {"_type": "gradio.FileData"}}
        with pytest.raises(AssertionError, match="did not complete"):
            call_api(served.url, "load_data", ["Upload a file", forged, None, "random"])
    finally:
        served.client.close()
        served.demo.close()


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../../../../etc/hostname", "/root/.ssh/id_rsa", "~/.netrc", "app.py"]
)
def test_server_paths_outside_demo_mode_must_name_a_data_file(path):
    """Outside demo mode people type server paths on purpose, but a file that is not data
    is refused before it is read: the missing-column message would quote its first line."""
    from noshow.app.data_tab import SOURCE_PATH, resolve_source
    from noshow.app.train_form import resolve_train_source

    with pytest.raises(ValueError, match="is not a data file"):
        resolve_source(SOURCE_PATH, None, path, demo_mode=False)
    with pytest.raises(ValueError, match="is not a data file"):
        resolve_train_source(path, None)
    assert resolve_source(SOURCE_PATH, None, " /srv/a.CSV ", demo_mode=False) == "/srv/a.CSV"


# ----------------------------------------------------------------------------- demo mode


@pytest.mark.parametrize("endpoint", ["/start_training", "/cancel_training"])
def test_demo_mode_refuses_jobs_through_the_api(shared_app, endpoint):
    client = client_for(shared_app)
    if endpoint == "/start_training":
        message = client.predict(
            "classifier", "smollm2-135m-instruct", "Bundled synthetic", "time", 64, 64, 1, 3,
            2e-4, 8, 4, 0, "none", False, False, api_name=endpoint,
        )  # fmt: skip
    else:
        message = client.predict(api_name=endpoint)
    assert "Training is turned off in this demo" in message
    status = client.predict(api_name="/training_status")[0]
    assert status["state"] == "idle"
    assert tree(shared_app.runs_dir) == shared_app.runs_before  # no run folder was made


# ----------------------------------------------------------------------------- tokens


def test_tokens_never_reach_the_pages_the_api_or_the_log(shared_app):
    client = client_for(shared_app)
    answers = [
        shared_app.http.get("/").text,
        shared_app.http.get("/config").text,
        shared_app.http.get("/gradio_api/info").text,
        client.predict(api_name="/training_status"),
        client.predict(api_name="/list_runs"),
        client.predict("Bundled synthetic", None, "", "time", api_name="/load_data"),
        client.predict(
            HF_TOKEN,
            shared_app.adapters.generative,
            shared_app.adapters.classifier,
            api_name="/compare",
        ),  # fmt: skip
        client.predict(None, None, api_name="/compare_adapters"),
        client.predict(api_name="/label_export"),
    ]
    text = json.dumps(answers[3:], default=str)
    for secret in (WANDB_KEY, PASSWORD):
        assert all(secret not in str(a) for a in answers[:3]) and secret not in text
    # The HF token typed into the Compare box comes back only as the statement it was.
    assert HF_TOKEN not in json.dumps(answers[:3] + answers[3:6] + answers[7:], default=str)
    stop_log = shared_app.log_path.read_text(errors="replace")
    assert not any(s in stop_log for s in SECRETS), "a secret reached the app's log"
    assert grep_tree(shared_app.root, SECRETS) == []


def test_tokens_never_reach_a_run_folder_the_job_view_or_the_output(
    adapters, tiny_model_dir, tmp_path, monkeypatch, capfd
):
    """A tiny training run through the JobManager (as the Train tab starts it) with W&B on,
    in offline mode, while the tokens are set; then everything it wrote is searched."""
    from noshow.config import DataConfig, LoraSettings, RunConfig, TrainConfig
    from noshow.training import session as training
    from noshow.training.jobs import JobManager

    for name, value in {**secret_env(), "NOSHOW_AUTH": f"{USER}:{PASSWORD}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(training, "_wandb_has_key", lambda: False)  # no network in tests
    runs_dir = tmp_path / "runs"
    jobs = JobManager(runs_dir=runs_dir)
    config = RunConfig(
        data=DataConfig(source="synthetic", max_train_rows=64, max_eval_rows=64),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        train=TrainConfig(
            model=str(tiny_model_dir), quantize="none", max_steps=2, batch_size=16, wandb=True
        ),
    )
    served = launch_app(runs_dir, jobs=jobs)
    try:
        jobs.start(config)
        assert jobs.wait(180)
        snap = served.client.predict(api_name="/training_status")
        table = served.client.predict(api_name="/list_runs")
    finally:
        served.client.close()
        served.demo.close()
    assert jobs.snapshot()["state"] == "completed", jobs.snapshot()["error"]
    out, err = capfd.readouterr()
    shown = json.dumps([snap, table, jobs.snapshot()], default=str) + out + err
    assert not [s for s in SECRETS if s in shown]
    assert grep_tree(runs_dir, SECRETS) == []  # config, status, logs, metrics, W&B files
    (run_dir,) = list(runs_dir.iterdir())
    assert any((run_dir / "wandb").rglob("*")), "W&B offline files were searched too"


def test_a_token_that_training_prints_is_redacted_in_the_job_view_and_status(tmp_path, monkeypatch):
    """Defence in depth: even if a hub error echoed the token, the Train tab and status.json
    show it redacted."""
    from noshow.config import RunConfig
    from noshow.training.jobs import JobManager
    from noshow.training.runs import read_status

    for name, value in secret_env().items():
        monkeypatch.setenv(name, value)

    def leaky_train(config, *, run_dir, on_progress, should_stop):
        on_progress({"phase": "loading", "message": f"GET with Authorization: Bearer {HF_TOKEN}"})
        raise RuntimeError(f"401 for token {HF_TOKEN} and key {WANDB_KEY}")

    jobs = JobManager(train_fn=leaky_train, runs_dir=tmp_path)
    run_id = jobs.start(RunConfig())
    assert jobs.wait(30)
    snap = json.dumps(jobs.snapshot())
    assert "Bearer <redacted>" in snap and "401 for token <redacted> and key <redacted>" in snap
    assert not any(s in snap for s in SECRETS)
    assert "<redacted>" in read_status(tmp_path / run_id)["error"]
    assert grep_tree(tmp_path, SECRETS) == []
