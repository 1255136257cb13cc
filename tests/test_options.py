"""The training options are declared once (noshow.config) and the command line, the Train
tab's form and the model card's command agree with that declaration.

    .venv/bin/python -m pytest -q tests/test_options.py
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

from noshow.app import train_form as tf
from noshow.config import RunConfig, config_from_args, options, preset_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli():
    """scripts/train.py as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("noshow_train_cli", REPO / "scripts/train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def built_form(monkeypatch, gpus: int) -> dict:
    """{field: component} of the Train tab as build_demo lays it out, on a machine that
    shows `gpus` CUDA devices."""
    from noshow.app import train_tab
    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    monkeypatch.setattr(train_tab, "gpu_count", lambda: gpus)
    demo = build_demo(jobs=JobManager(runs_dir="unused"), store=None, data_source="synthetic")
    return demo.noshow_context.extras["train_form"]


def config_of(form: dict) -> RunConfig:
    values = {name: component.value for name, component in form.items()}
    # "Same as the Data tab" is the form's own choice; the config's default is "not set"
    return tf.build_run_config(**{**values, "data_source": None})


def test_cli_defaults_are_the_config_defaults(cli):
    assert config_from_args(cli.parse_args([])) == RunConfig()


def test_cli_help_shows_every_option_with_its_docstring_and_default(cli, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping: argparse splits words at hyphens
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for o in options():
        assert o.flag in text
        if o.flag == "--seed":  # two fields, one flag: one line says what it seeds
            continue
        assert o.help in text, o.name
        if o.kind is not bool:
            shown = "not set" if o.default is None else o.default
            assert f"{o.help} (default: {shown})" in text, o.name
    seeds = "Seed for sampling and the patient/random splits, and for LoRA initialisation"
    assert f"{seeds} and batch order. (default: 0)" in text and text.count("Seed for") == 1


def test_cli_usage_example_keeps_its_line_break(cli, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    assert "KaggleV2-May-2016.csv \\\n        --split time --epochs 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--epochs", "abc"], "argument --epochs: 'abc' is not a number above 0"),
        (
            ["--batch-size", "2.5"],
            "argument --batch-size: '2.5' is not a whole number of at least 1",
        ),
        (["--max-train-rows", "-5"], "'-5' is not 'none' (= all) or a whole number of at least 1"),
        (["--lr", "nan"], "argument --lr: 'nan' is not a number above 0 and below 1"),
    ],
)
def test_cli_refuses_a_value_naming_the_flag_and_what_it_takes(cli, capsys, args, said):
    with pytest.raises(SystemExit):
        cli.parse_args(args)
    err = capsys.readouterr().err
    assert said in err and "functools" not in err and "Option(" not in err, err


def test_train_tab_defaults_on_a_gpu_are_the_config_and_cli_defaults(monkeypatch, cli):
    form = built_form(monkeypatch, gpus=1)
    assert config_of(form) == RunConfig() == config_from_args(cli.parse_args([]))
    assert form["data_source"].value == tf.SOURCE_DATA_TAB


def test_train_tab_choices_and_help_come_from_the_options(monkeypatch):
    form = built_form(monkeypatch, gpus=1)
    for name in tf.FORM_OPTIONS:
        o = tf.form_option(name)
        component = form[name]
        assert component.info == tf.form_info(name)
        assert o.help.replace("`", "").split(";")[0] in component.info
        if o.choices is not None:
            assert [value for _, value in component.choices] == list(o.choices)


def test_train_tab_opens_on_the_quick_cpu_preset_without_a_gpu(monkeypatch):
    form = built_form(monkeypatch, gpus=0)
    quick = preset_config(tf.CPU_PRESET)
    assert config_of(form) == quick
    assert quick.train.max_steps and quick.data.max_train_rows  # a short run, not the default


def test_presets_set_the_form_to_the_declared_presets():
    for name in ("quick-cpu", "full-gpu"):
        form = {**tf.form_defaults(cuda=True), **tf.preset_values(name)}
        assert tf.build_run_config(**form, data_source=None) == preset_config(name)
    values = tf.preset_values("full-gpu", approach="generative")
    assert values["model"] == "llama-3.1-8b-instruct"  # the seed project's generative model


def test_model_card_command_parses_back_to_the_same_config(cli):
    from noshow.inference.model_card import train_command

    config = RunConfig.from_dict(
        {
            "data": {
                "source": "data/KaggleV2-May-2016.csv",
                "split": "patient",
                "max_train_rows": 1000,
                "max_eval_rows": 500,
                "seed": 3,
                "use_clinician_labels": True,
            },
            "lora": {"r": 8, "alpha": 24, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
            "train": {
                "approach": "generative",
                "model": "llama-3.1-8b-instruct",
                "quantize": "4bit",
                "epochs": 2.5,
                "max_steps": 300,
                "lr": 1e-4,
                "batch_size": 32,
                "warmup_steps": 20,
                "weight_decay": 0.01,
                "eval_every": 50,
                "early_stopping_patience": 3,
                "class_weighting": True,
                "max_length": 192,
                "gradient_checkpointing": "on",
                "seed": 3,
                "wandb": True,
                "output_dir": "elsewhere",
            },
        }
    )
    words = shlex.split(train_command(config.to_dict()))
    assert words[:2] == ["python", "scripts/train.py"]
    assert config_from_args(cli.parse_args(words[2:])) == config
    default = RunConfig()
    words = shlex.split(train_command(default.to_dict()))
    assert config_from_args(cli.parse_args(words[2:])) == default
