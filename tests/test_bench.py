"""The benchmark scripts run end to end on the CPU in --smoke mode (they check that every mode
runs and prints its table, not the speed), plus the pieces the GPU runs rely on: the seed
recipe's examples and padding, the in-memory 4-bit random Llama, the fast path's model
preparation, and the BENCHMARKS.md writer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))  # seed_recipe.py is bench-only code beside its script


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NOSHOW_DATA"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the smoke modes are the CPU path, even on a GPU machine
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def header_cells(header: str) -> list[str]:
    return [c.strip() for c in header.strip("|").split("|")]


def _table(stdout: str) -> tuple[str, list[list[str]]]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, f"no table in the output:\n{stdout}"
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return lines[0], cells


def _script_module(name: str):
    """scripts/<name>.py as a module (scripts are not a package)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # the bench scripts import each other
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_recipes():
    return _script_module("bench_recipes")


@pytest.fixture(scope="module")
def bench_common():
    return _script_module("bench_common")


# ----------------------------------------------------------------------------- scripts


def test_bench_train_smoke_prints_one_row_per_approach_and_recipe(bundled_model_dir):
    done = _run_script(
        "bench_train.py", "--smoke", "--no-write", "--statements", "16", "--test-rows", "32"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header, rows = _table(done.stdout)
    for column in ("statements/s", "non-pad tokens/s", "peak GPU mem GB", "test ROC-AUC"):
        assert column in header
    pairs = [(r[0], r[1].split(" ")[0].rstrip(":")) for r in rows]
    assert pairs == [
        ("generative", "seed"),
        ("generative", "fast"),
        ("classifier", "seed"),
        ("classifier", "fast"),
    ]
    for r in rows:
        assert r[3] == "16"  # both recipes trained on exactly the asked-for statements
        assert 0.0 <= float(r[header_cells(header).index("test ROC-AUC")]) <= 1.0


def test_bench_predict_smoke_prints_batch_cpu_weights_and_compare(bundled_model_dir):
    from noshow.inference.cpu.forward import onednn_available
    from noshow.inference.cpu.weights import native_bf16

    done = _run_script("bench_predict.py", "--smoke", "--no-write", "--profile")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("CPU: ")  # the machine line the figures come from
    header, rows = _table(done.stdout)
    profiles = [ln for ln in done.stdout.splitlines() if ln.startswith("- profile, ")]
    assert [ln.split(",")[1].split(" (")[0].strip() for ln in profiles] == [
        "generative",
        "classifier",
    ]
    assert all("matmuls" in ln and "% " not in ln.split(";")[0] for ln in profiles)
    for column in ("statements/s", "p50 ms", "p95 ms", "x fp32", "max dP vs fp32"):
        assert column in header
    # every candidate form this CPU runs, fp32 through transformers first (the reference),
    # exactly one of them marked as the app's; then the app's form in batches of 1, 2, 4
    forms = ["float32, transformers forward", "float32, fused"]
    forms += ["float32, oneDNN-packed, fused"] if not onednn_available(torch.float32) else []
    if native_bf16():
        forms += ["bf16 linears (fp32 activations), fused"]
        if not onednn_available(torch.bfloat16):
            forms += ["bf16 linears (fp32 activations), oneDNN-packed, fused"]
    for name in rows[0][0], rows[len(rows) // 2][0]:
        mine = [r for r in rows if r[0] == name]
        assert mine[0][1] == "batch"
        singles = [r for r in mine if r[1] == "single"]
        assert [r[3].removesuffix(" (app)") for r in singles] == forms
        assert sum(r[3].endswith(" (app)") for r in singles) == 1
        assert float(singles[0][8]) == 1.0 and float(singles[0][9]) == 0.0
        assert all(float(r[6]) > 0 and float(r[7]) >= float(r[6]) for r in singles)
        batches = [r for r in mine if r[1].startswith("batch of")]
        assert [r[1] for r in batches] == ["batch of 1", "batch of 2", "batch of 4"]
        assert all(float(r[9]) <= 1e-3 for r in batches)  # batched == alone
    assert rows[-1][0] == "both (Compare)" and float(rows[-1][4].replace(",", "")) == 10


def test_bench_cpu_weights_scores_every_variant_against_fp32(adapters):
    done = _run_script(
        "bench_cpu_weights.py",
        *("--rows", "12", "--data", "synthetic"),
        *("--generative", adapters.generative, "--classifier", adapters.classifier),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header, rows = _table(done.stdout)
    assert "max dP vs fp32" in header
    weights = [r[1].split(" ")[0] for r in rows]
    assert weights == ["float32", "float32,", "bf16", "whole", "int8"] * 2
    for r in rows:
        assert r[2] == "12" and 0.0 <= float(r[4]) <= 1.0
    assert float(rows[0][4]) == 0.0 and float(rows[5][4]) == 0.0  # fp32 against itself
    assert float(rows[1][4]) < 1e-4  # fp32 oneDNN-packed: the same scores


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_bench_train_without_gpu_explains_instead_of_crashing():
    done = _run_script("bench_train.py", "--no-write")
    assert done.returncode == 2
    assert "--smoke" in done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- seed recipe


def test_seed_generative_examples_match_build_masked_example(tiny_model_dir):
    from seed_recipe import encode_generative_examples

    from noshow.modeling.approaches.generative import build_masked_example
    from noshow.modeling.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    statements = ["A 30-year-old woman has an appointment.", "A 7-year-old boy is booked."]
    examples = encode_generative_examples(tokenizer, statements, [1, 0], max_length=256)
    for example, statement, label in zip(examples, statements, [1, 0], strict=True):
        ids, labels = build_masked_example(tokenizer, statement, label)
        assert example["input_ids"] == ids
        assert example["labels"] == labels
        assert example["attention_mask"] == [1] * len(ids)


def test_seed_collator_pads_right_with_pad_id_zero_mask_and_ignored_labels():
    from seed_recipe import CausalLMPadCollator

    batch = CausalLMPadCollator(pad_id=0)(
        [
            {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
            {"input_ids": [8], "attention_mask": [1], "labels": [8]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_fast_model_preparation_matches_the_approach_setup(bench_recipes, tiny_model_dir, approach):
    """The bench prepares in-memory bases like noshow.training.recipe.setup_model; if that changes,
    this fails and the bench must follow."""
    from noshow.config import RunConfig, TrainConfig
    from noshow.modeling.approaches import get_approach
    from noshow.modeling.lora import set_seed
    from noshow.modeling.models import load_base
    from noshow.training.recipe import setup_model

    config = RunConfig(
        train=TrainConfig(approach=approach, model=str(tiny_model_dir), quantize="none")
    )
    cpu = torch.device("cpu")
    reference, _, _ = setup_model(config, get_approach(approach), cpu)
    set_seed(config.train.seed)
    base, tokenizer = load_base(str(tiny_model_dir), get_approach(approach), "none", device=cpu)
    prepared, _ = bench_recipes.prepare_fast_model(base, tokenizer, approach, config)

    def trainable(model):
        return {
            n: (tuple(p.shape), p.dtype) for n, p in model.named_parameters() if p.requires_grad
        }

    assert trainable(prepared) == trainable(reference)
    torch.testing.assert_close(
        dict(prepared.named_parameters()), dict(reference.named_parameters())
    )  # same seed, same LoRA and head initialisation


# ----------------------------------------------------------------------------- BENCHMARKS.md


def test_append_benchmarks_creates_header_once_and_appends_in_order(bench_common, tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    bench_common.append_benchmarks(path, "## first\n\n| a |\n|---|\n| 1 |")
    bench_common.append_benchmarks(path, "## second")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.count("# Benchmarks") == 1
    assert text.index("## first") < text.index("## second")
    assert text.endswith("## second\n")
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]  # no temp file left


def test_writing_the_engine_table_keeps_other_kinds_and_unmeasured_approaches(tmp_path):
    import json

    import bench_engines

    path = tmp_path / "engine_table.json"
    old = {"engine": "fused-fp32", "p50_ms": 99.0, "max_dp": 0.0, "measured": "old"}
    path.write_text(json.dumps({"amx": {"classifier": [old]}, "avx2": {"generative": [old]}}))
    row = {
        "adapter": "classifier-smollm2-135m",
        "engine": "onnxruntime-fp32",
        "p50_ms": 50.0,
        "batch16_ms": None,
        "max_dp": 0.0001,
        "auc_drift": 0.0,
    }
    bench_engines.write_table([row], "avx2", "now", path)
    table = json.loads(path.read_text())
    assert table["amx"] == {"classifier": [old]}
    assert table["avx2"]["generative"] == [old]  # not measured in this run: kept
    assert [r["engine"] for r in table["avx2"]["classifier"]] == ["onnxruntime-fp32"]
