"""Shipped adapters (`adapters/<name>/`) and the code that ships them.

1. Every folder under adapters/: its files, bf16 weights under the size limit, its card, and
   (with the real data file) its CI check figure recomputed through `load_predictor` on the
   CPU, which must match the card within 0.005. Skips with a reason while none are shipped.
2. `noshow.inference.ship.ship_adapter` and scripts/ship_adapter.py on tiny runs trained here
   on the CPU (the `adapters` fixture in conftest.py): files, dtypes, size limit, atomic
   replacement, card content, the CI subsample.

    .venv/bin/python -m pytest -q tests/test_shipped_adapters.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from noshow.inference import ship as shipping

# The repository's adapters/; another folder can be checked with NOSHOW_TEST_SHIPPED_DIR.
SHIPPED_ROOT = Path(os.environ.get("NOSHOW_TEST_SHIPPED_DIR") or shipping.SHIPPED_DIR)
SHIPPED = shipping.shipped_adapters(SHIPPED_ROOT)
NO_SHIPPED = pytest.mark.skip(
    reason=f"no shipped adapters under {SHIPPED_ROOT} yet: train on the real data, then "
    "ship with scripts/ship_adapter.py RUN_DIR adapters/<name>"
)
SHIPPED_PARAMS = [pytest.param(p, id=p.name) for p in SHIPPED] or [
    pytest.param(None, id="none", marks=NO_SHIPPED)
]


def safetensors_dtypes(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118


def hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- shipped adapters


@pytest.mark.parametrize("folder", SHIPPED_PARAMS)
def test_shipped_adapter_has_bf16_weights_under_the_limit_and_a_card(folder):
    from noshow.inference.predict import list_adapters, read_adapter_meta

    card = shipping.read_card(folder)
    meta = read_adapter_meta(folder)
    assert card["name"] == folder.name
    assert card["approach"] == meta["approach"]
    assert card["base_model"]["portable"], "a shipped adapter must name a preset or hub base"
    weights = list(folder.glob("*.safetensors"))
    assert weights, f"{folder} holds no safetensors weights"
    for path in weights:
        assert path.stat().st_size <= shipping.MAX_FILE_BYTES, f"{path.name} is over 16 MiB"
        assert safetensors_dtypes(path) == {"BF16"}, path.name
    for path in folder.iterdir():
        assert path.stat().st_size <= shipping.MAX_FILE_BYTES, f"{path.name} is over 16 MiB"
    for name, recorded in card["weights"]["files"].items():  # unchanged since shipping
        assert shipping.sha256_file(folder / name) == recorded["sha256"], (
            f"{folder.name}/{name} changed after shipping: ship it again"
        )
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\nlicense: ")
    assert "library_name: peft" in readme and "Not for clinical decisions" in readme
    assert card["ci_check"], (
        f"{folder.name}'s card has no CI check figure: ship it again with the real data file "
        "present (scripts/ship_adapter.py --data ...)"
    )
    assert f"{card['ci_check']['roc_auc']:.4f}" in readme
    listed = {a["name"]: a for a in list_adapters(folder.parent / ".no-runs", folder.parent)}
    assert listed[folder.name]["source"] == "shipped"
    assert listed[folder.name]["approach"] == card["approach"]


@pytest.mark.parametrize("folder", SHIPPED_PARAMS)
def test_shipped_adapter_card_carries_net_benefit_capacity_subgroups_and_tripod(folder):
    """The card reports like a clinical prediction model (scripts/refresh_card_sections.py
    for adapters shipped before these sections), and README.md is card.json rendered
    through huggingface_hub's ModelCard."""
    from huggingface_hub import ModelCard

    from noshow.inference.model_card import render_model_card

    card = shipping.read_card(folder)
    clinical = card.get("clinical")
    assert clinical, f"{folder.name}: run scripts/refresh_card_sections.py on it"
    assert clinical["rows"] > 0 and clinical["subgroups"]["groups"]
    assert set(clinical["net_benefit"]["models"]) >= {"model"}
    assert [r["share"] for r in clinical["capacity"]["models"]["model"]] == [0.05, 0.1, 0.2, 0.3]
    rendered = render_model_card(card)
    assert isinstance(rendered, ModelCard)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert readme == str(rendered), f"{folder.name}/README.md is not its card.json rendered"
    for heading in ("## Net benefit", "## Capacity", "## Subgroups", "TRIPOD+AI"):
        assert heading in readme
    assert (folder / clinical["figure"]).is_file()
    assert ModelCard.load(folder / "README.md").data.to_dict()["library_name"] == "peft"


@pytest.fixture(scope="session")
def ci_rows_cache():
    cache: dict = {}

    def get(path: Path, rows: int, seed: int):
        if (rows, seed) not in cache:
            cache[(rows, seed)] = shipping.load_ci_rows(path, rows, seed)
        return cache[(rows, seed)]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("folder", SHIPPED_PARAMS)
def test_shipped_adapter_reproduces_its_ci_check_figure(folder, real_data_path, ci_rows_cache):
    card = shipping.read_card(folder)
    ci = card["ci_check"]
    assert ci, f"{folder.name}'s card has no CI check figure; ship it again with the data file."
    sample = ci_rows_cache(real_data_path, ci["rows"], ci["seed"])
    info = sample[1]
    assert info["data_sha256"] == ci["data_sha256"], (
        f"{real_data_path} is not the file {folder.name} was checked on (sha256 differs)"
    )
    assert info["record_ids_sha256"] == ci["record_ids_sha256"], (
        "the CI rows changed (cleaning, split or subsample code): the figure no longer applies"
    )
    now = shipping.score_ci_check(folder, real_data_path, sample=sample)
    assert abs(now["roc_auc"] - ci["roc_auc"]) <= shipping.CI_TOLERANCE, (
        f"{folder.name}: CI ROC-AUC {now['roc_auc']:.4f} now, {ci['roc_auc']:.4f} on its card"
    )


# ----------------------------------------------------------------------------- ship_adapter


def ship(run_dir, dest, **kwargs):
    options = {
        "find_data": False,
        "allow_synthetic": True,
        "allow_local_base": True,
        "log": lambda _: None,
    }
    return shipping.ship_adapter(run_dir, dest, **{**options, **kwargs})


def test_ship_writes_bf16_weights_tokenizer_and_a_model_card(adapters, tmp_path):
    from noshow.evaluation.metrics import format_auc
    from noshow.inference.predict import list_adapters

    run = Path(adapters.generative)
    dest = ship(run, tmp_path / "adapters" / "generative-tiny", command="python train.py --x 1")
    names = {p.name for p in dest.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "noshow.json"} <= names
    assert {"calibration.json", "reliability.png"} <= names  # calibration and its diagram
    assert {"tokenizer.json", "tokenizer_config.json", "README.md", "card.json"} <= names
    assert safetensors_dtypes(run / "adapter" / "adapter_model.safetensors") == {"F32"}
    assert safetensors_dtypes(dest / "adapter_model.safetensors") == {"BF16"}
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in dest.iterdir())  # world-readable

    card = json.loads((dest / "card.json").read_text())
    report = json.loads((run / "eval.json").read_text())
    assert card["name"] == "generative-tiny" and card["approach"] == "generative"
    assert card["command"] == "python train.py --x 1" and not card["command_reconstructed"]
    assert card["test_metrics"]["model"] == report["model"]
    assert card["test_metrics"]["baseline"] == report["baseline"]
    assert card["threshold"] == pytest.approx(report["threshold"])
    assert card["config"]["lora"]["r"] == 4 and "output_dir" not in card["config"]["train"]
    assert card["ci_check"] is None and card["data"]["synthetic"] is True
    assert set(card["weights"]["files"]) == names - {"README.md", "card.json"}
    for name, recorded in card["weights"]["files"].items():  # hashes of the files as shipped
        assert shipping.sha256_file(dest / name) == recorded["sha256"], name

    readme = (dest / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\nlicense: cc-by-nc-sa-4.0\n")
    assert "library_name: peft" in readme and "- generative" in readme
    assert "base_model:" not in readme.split("---")[1]  # a local folder is no hub id
    for text in (
        "Research and demo use only. Not for clinical",
        "CC BY-NC-SA 4.0",
        "Trained on synthetic data",
        "python train.py --x 1",
        "| lora.r | 4 |",
        "| train.max_steps | 3 |",
        f"| ROC-AUC | {format_auc(report['model'])} | {format_auc(report['model_uncalibrated'])} |",
        f"{format_auc(report['baseline'])} |",  # the tuned baseline's column, with its interval
        f"{report['threshold']:.3f} (max F1",
        "CI check figure",
        "Not computed",
    ):
        assert text in readme, text
    assert hidden_leftovers(dest.parent) == []
    listed = list_adapters(tmp_path / "no-runs", dest.parent)
    assert [(a["name"], a["source"], a["approach"]) for a in listed] == [
        ("generative-tiny", "shipped", "generative")
    ]


def test_a_hub_base_is_named_in_adapter_config_and_front_matter(adapters, tmp_path, monkeypatch):
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    info = {"name": "smollm2-135m-instruct", "preset": "smollm2-135m-instruct", "hub_id": hub_id}
    info.update(license="apache-2.0", license_name="Apache-2.0", portable=True)
    monkeypatch.setattr(shipping, "base_model_info", lambda name: info)
    dest = ship(adapters.classifier, tmp_path / "classifier-tiny", allow_local_base=False)
    config = json.loads((dest / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == hub_id  # not the training machine's cache path
    front = (dest / "README.md").read_text().split("---")[1]
    assert f"base_model: {hub_id}" in front and f"base_model:adapter:{hub_id}" in front
    assert "pipeline_tag: text-classification" in front
    for name, recorded in shipping.read_card(dest)["weights"]["files"].items():
        assert shipping.sha256_file(dest / name) == recorded["sha256"], name


def test_shipped_adapter_predicts_like_its_run(adapters, tmp_path):
    from noshow.data.examples import example_statements
    from noshow.inference.predict import load_predictor

    for approach in ("generative", "classifier"):
        run = getattr(adapters, approach)
        dest = ship(run, tmp_path / f"{approach}-tiny")
        statements = example_statements()
        before = load_predictor(run, device="cpu").predict_proba(statements)
        after = load_predictor(dest, device="cpu")
        assert after.approach == approach and after.name == f"{approach}-tiny"
        np.testing.assert_allclose(after.predict_proba(statements), before, atol=2e-3)


def test_ship_refuses_a_file_over_the_limit_and_leaves_nothing(adapters, tmp_path):
    dest = tmp_path / "adapters" / "classifier-tiny"
    with pytest.raises(shipping.ShipError, match=r"over the .* limit for shipped adapters"):
        ship(adapters.classifier, dest, max_file_bytes=1024)
    assert not dest.exists()
    assert hidden_leftovers(dest.parent) == []


def test_a_failed_ship_keeps_the_previous_adapter_whole(adapters, tmp_path, monkeypatch):
    dest = ship(adapters.classifier, tmp_path / "classifier-tiny", command="first")
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    def broken(card):
        raise RuntimeError("disk full while writing the card")

    monkeypatch.setattr(shipping, "render_model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ship(adapters.classifier, dest, command="second")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert hidden_leftovers(tmp_path) == []

    monkeypatch.undo()
    ship(adapters.classifier, dest, command="second")
    assert shipping.read_card(dest)["command"] == "second"
    assert hidden_leftovers(tmp_path) == []


def test_ship_refuses_synthetic_data_local_bases_and_unfinished_runs(adapters, tmp_path):
    from noshow.config import RunConfig
    from noshow.training.runs import create_run

    dest = tmp_path / "out"
    with pytest.raises(shipping.ShipError, match="synthetic data"):
        ship(adapters.generative, dest, allow_synthetic=False)
    with pytest.raises(shipping.ShipError, match="local folder"):
        ship(adapters.generative, dest, allow_local_base=False)
    unfinished = create_run(RunConfig(), output_dir=tmp_path / "runs")
    with pytest.raises(shipping.ShipError, match="no finished adapter"):
        ship(unfinished, dest)
    with pytest.raises(shipping.ShipError, match="not found"):
        ship(tmp_path / "nowhere", dest)
    assert not dest.exists()


def test_train_command_is_rebuilt_from_the_config_without_defaults():
    from noshow.config import DataConfig, LoraSettings, RunConfig, TrainConfig
    from noshow.inference.model_card import train_command

    config = RunConfig(
        data=DataConfig(source="data/KaggleV2-May-2016.csv", max_train_rows=1000),
        lora=LoraSettings(r=8),
        train=TrainConfig(approach="generative", quantize="4bit", batch_size=16, wandb=True),
    ).to_dict()
    assert train_command(config) == (
        "python scripts/train.py --approach generative --data data/KaggleV2-May-2016.csv "
        "--max-train-rows 1000 --lora-r 8 --quantize 4bit --batch-size 16 --wandb"
    )


def test_ci_subsample_is_stratified_fixed_and_independent_of_row_order():
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data("synthetic").frame, "time")
    test = frame[frame["split"] == "test"]
    sample = shipping.ci_subsample(frame, rows=60, seed=0)
    assert len(sample) == 60 and set(sample["split"]) == {"test"}
    assert abs(sample["no_show"].sum() - 60 * test["no_show"].mean()) <= 1
    shuffled = frame.sample(frac=1.0, random_state=1)
    again = shipping.ci_subsample(shuffled, rows=60, seed=0)
    assert again["record_id"].tolist() == sample["record_id"].tolist()
    other = shipping.ci_subsample(frame, rows=60, seed=1)
    assert other["record_id"].tolist() != sample["record_id"].tolist()
    with pytest.raises(shipping.ShipError, match="fewer than"):
        shipping.ci_subsample(frame, rows=len(test) + 1)


def test_ci_check_on_the_real_data_is_recorded_and_reproducible(adapters, tmp_path, real_data_path):
    dest = ship(adapters.classifier, tmp_path / "classifier-tiny", data_path=real_data_path)
    ci = shipping.read_card(dest)["ci_check"]
    assert (
        ci["rows"] == shipping.CI_ROWS and ci["seed"] == shipping.CI_SEED and ci["split"] == "time"
    )
    assert ci["data_file"] == "KaggleV2-May-2016.csv" and ci["device"] == "cpu"
    assert 30 <= ci["positives"] <= 45  # 18.5% of 200 test rows are no-shows
    assert 0.0 <= ci["roc_auc"] <= 1.0
    assert f"ROC-AUC **{ci['roc_auc']:.4f}**" in (dest / "README.md").read_text()
    again = shipping.score_ci_check(dest, real_data_path)
    assert again["record_ids_sha256"] == ci["record_ids_sha256"]
    assert again["roc_auc"] == pytest.approx(ci["roc_auc"], abs=1e-6)


def test_cli_ships_a_run_and_explains_failures(adapters, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ship_adapter_cli", Path(__file__).resolve().parents[1] / "scripts" / "ship_adapter.py"
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    dest = tmp_path / "adapters" / "generative-cli"
    common = ["--skip-ci-check", "--allow-synthetic", "--allow-local-base"]
    assert cli.main([adapters.generative, str(dest), "--command", "make it", *common]) == 0
    assert capsys.readouterr().out.strip() == str(dest / "README.md")
    assert shipping.read_card(dest)["command"] == "make it"
    assert cli.main([adapters.generative, str(dest), "--max-file-mib", "0.001", *common]) == 2
    assert "limit for shipped adapters" in capsys.readouterr().err
    assert shipping.read_card(dest)["command"] == "make it"  # the failed ship changed nothing
    shutil.rmtree(dest)
    assert cli.main([str(tmp_path / "missing"), str(dest), *common]) == 2
    assert "Run folder not found" in capsys.readouterr().err


def test_shipped_calibrations_record_the_rate_a_clinic_rate_replaces():
    from noshow.evaluation.calibration import Calibrator

    assert SHIPPED, "no shipped adapters found"
    for folder in SHIPPED:
        calibrator = Calibrator.load(folder)
        # the time split's validation rows of the real file: 2,469 no-shows of 11,746
        assert calibrator.base_rate == pytest.approx(0.2102, abs=5e-4)
