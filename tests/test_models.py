"""Tests for noshow.modeling.models: presets, resolving and converting the bundled model, loading a
base model for either approach, Yes/No tokens, random tiny Llamas and 4-bit on the CPU.

    .venv/bin/python -m pytest -q tests/test_models.py

The bundled model is converted once per machine (conftest's `bundled_model_dir`) and loaded
once per module; conversion itself is exercised with a fake converter in a temp cache.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import noshow.modeling.presets as presets
from noshow.modeling.approaches import get_approach
from noshow.modeling.models import (
    answer_token_ids,
    choose_quantization,
    describe_model,
    load_base,
    load_tokenizer,
)
from noshow.modeling.presets import PRESETS, ModelError, resolve

REPO = Path(__file__).resolve().parents[1]
BUNDLED = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def generative(bundled_model_dir):
    return load_base(BUNDLED, get_approach("generative"), quantize="none", device="cpu")


@pytest.fixture(scope="module")
def classifier(bundled_model_dir):
    return load_base(BUNDLED, get_approach("classifier"), quantize="none", device="cpu")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    """A fresh NOSHOW_HOME, so conversion logic runs without touching the real cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("NOSHOW_HOME", str(home))
    return home / "models"


def fake_converter(calls: list[Path], fail: BaseException | None = None):
    """Stands in for the 1-2 minute GGUF conversion: writes a minimal folder, or dies mid-way."""

    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        if fail is not None:
            raise fail
        (out_dir / "model.safetensors").write_bytes(b"weights")

    return convert


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- presets, resolve


def test_presets_name_the_bundled_default_and_the_gated_llamas():
    assert PRESETS[BUNDLED].bundled and not PRESETS[BUNDLED].gated
    assert PRESETS[BUNDLED].hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert PRESETS["llama-3.1-8b-instruct"].hub_id == "meta-llama/Llama-3.1-8B-Instruct"
    assert PRESETS["llama-3.1-8b-instruct"].default_approach == "generative"
    assert PRESETS["llama-3.1-8b"].hub_id == "meta-llama/Llama-3.1-8B"
    assert PRESETS["llama-3.1-8b"].default_approach == "classifier"
    assert all(
        PRESETS[n].gated and not PRESETS[n].bundled
        for n in ("llama-3.1-8b-instruct", "llama-3.1-8b")
    )


def test_cache_dir_follows_noshow_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NOSHOW_HOME", str(tmp_path))
    assert presets.cache_dir() == tmp_path
    monkeypatch.delenv("NOSHOW_HOME")
    assert presets.cache_dir() == REPO / ".noshow"


def test_bundled_model_resolves_to_a_converted_llama_folder(bundled_model_dir):
    assert resolve(BUNDLED) == bundled_model_dir
    config = json.loads((bundled_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        30,
        576,
        49_152,
    )
    assert config["dtype"] == "bfloat16"
    assert "quantization_config" not in config  # or 4-bit loads would be refused
    assert (bundled_model_dir / "model.safetensors").stat().st_size > 200_000_000


def test_local_folder_resolves_to_itself(tiny_model_dir):
    assert resolve(str(tiny_model_dir)) == tiny_model_dir


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve(tmp_path)


def test_unknown_model_name_lists_the_presets():
    with pytest.raises(ModelError) as info:
        resolve("gpt-17-ultra")
    assert "Unknown model 'gpt-17-ultra'" in str(info.value)
    assert all(name in str(info.value) for name in PRESETS)


def test_gated_preset_without_token_says_how_to_get_access(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(
        presets, "_cached_snapshot", lambda hub_id: None
    )  # a dev may have it cached
    with pytest.raises(ModelError) as info:
        resolve("llama-3.1-8b-instruct")
    message = str(info.value)
    assert "is gated" in message and "HF_TOKEN" in message and "hf auth login" in message
    assert "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct" in message


def test_hub_id_while_offline_says_the_hub_is_off(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        resolve("noshow-tests/not-a-cached-model")
    assert "noshow-tests/not-a-cached-model" in str(info.value)
    assert "HF_HUB_OFFLINE" in str(info.value)
    assert "If you meant a local folder" in str(info.value)  # "a/b" may be a mistyped path


@pytest.mark.parametrize(
    ("error_name", "expected"),
    [
        ("LocalEntryNotFoundError", "hub is unreachable"),  # what huggingface_hub raises offline
        ("GatedRepoError", "accept the license"),
        ("RepositoryNotFoundError", "not found on the hub"),
    ],
)
def test_hub_download_failures_become_clear_messages(monkeypatch, error_name, expected):
    import huggingface_hub
    from huggingface_hub import constants, errors

    def failing_download(repo_id, **kwargs):
        error_class = getattr(errors, error_name)
        if kwargs.get("local_files_only") or error_class is errors.LocalEntryNotFoundError:
            raise errors.LocalEntryNotFoundError("no connection")
        # Built without __init__, which wants a live HTTP response object.
        error = error_class.__new__(error_class)
        Exception.__init__(error, "refused")
        raise error

    # Never reaches the network: the download function itself is replaced.
    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing_download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with pytest.raises(ModelError, match=expected):
        resolve("llama-3.1-8b")


# ----------------------------------------------------------------------------- conversion


def test_missing_bundled_package_says_run_make_setup(empty_cache, monkeypatch):
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="make setup"):
        resolve(BUNDLED)


def test_interrupted_conversion_leaves_nothing_that_looks_finished(empty_cache, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(presets, "_convert_gguf", fake_converter(calls, fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        resolve(BUNDLED)
    assert len(calls) == 1
    assert not (empty_cache / BUNDLED).exists()
    assert list(empty_cache.iterdir()) == []  # the partial folder went too


def test_partial_folder_of_a_killed_conversion_is_not_taken_as_finished(empty_cache, monkeypatch):
    leftover = empty_cache / f".{BUNDLED}.partial-{dead_pid()}-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text("{}")
    (leftover / "model.safetensors").write_bytes(b"half")
    calls: list[Path] = []
    monkeypatch.setattr(presets, "_convert_gguf", fake_converter(calls))

    assert resolve(BUNDLED) == empty_cache / BUNDLED
    assert len(calls) == 1 and calls[0] != leftover
    assert (empty_cache / BUNDLED / "model.safetensors").read_bytes() == b"weights"
    assert not leftover.exists()
    resolve(BUNDLED)
    assert len(calls) == 1  # converted once, then reused


# ----------------------------------------------------------------------------- tokens, template


def test_yes_and_no_are_single_tokens_of_the_bundled_tokenizer(bundled_model_dir):
    tokenizer = load_tokenizer(BUNDLED)
    assert answer_token_ids(tokenizer) == (5230, 10539)
    assert tokenizer(" Yes", add_special_tokens=False)["input_ids"] == [9230]
    assert tokenizer(" No", add_special_tokens=False)["input_ids"] == [2838]


def test_answer_token_ids_refuses_a_tokenizer_that_splits_yes():
    class SplittingTokenizer:
        name_or_path = "org/odd-model"

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [1, 2] if text == "Yes" else [3]}

    with pytest.raises(ModelError, match="org/odd-model"):
        answer_token_ids(SplittingTokenizer())


def test_chat_template_survives_conversion(bundled_model_dir):
    tokenizer = load_tokenizer(BUNDLED)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Will the patient come?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert "<|im_start|>user\nWill the patient come?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_tokenizer_has_a_pad_token_and_the_requested_side(bundled_model_dir):
    tokenizer = load_tokenizer(BUNDLED, padding_side="left")
    assert tokenizer.pad_token_id is not None
    assert tokenizer.padding_side == "left"


# ----------------------------------------------------------------------------- loading


def test_quantize_auto_is_4bit_on_cuda_for_every_model_size():
    cuda = torch.device("cuda")  # a device name only: nothing runs on it
    assert choose_quantization("auto", cuda, "smollm2-135m-instruct") == "4bit"
    assert choose_quantization("auto", cuda, "llama-3.1-8b") == "4bit"
    assert choose_quantization("none", cuda, "llama-3.1-8b") == "none"


def test_quantize_auto_means_none_on_the_cpu_and_bad_values_are_refused():
    assert choose_quantization("auto", torch.device("cpu")) == "none"
    with pytest.raises(ModelError, match="quantize"):
        choose_quantization("8bit", torch.device("cpu"))


def test_an_unknown_approach_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="generative, classifier"):
        get_approach("regression")


def test_generative_model_gives_finite_vocabulary_logits(generative):
    model, tokenizer = generative
    batch = tokenizer(["The patient is 62."], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits  # (B, T, V)
    assert logits.shape == (1, batch["input_ids"].shape[1], 49_152)
    assert torch.isfinite(logits).all()


def test_unquantized_cpu_model_is_float32_and_fully_described(generative):
    info = describe_model(generative[0])
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["quantized"] is False and info["quantization"] == "none"
    assert 134_000_000 < info["parameters_total"] < 135_000_000
    assert info["parameters_trainable"] == info["parameters_total"]


def test_classifier_has_two_labels_and_knows_the_pad_token(classifier):
    model, tokenizer = classifier
    assert model.config.num_labels == 2
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    batch = tokenizer(
        ["A statement.", "A longer statement about a patient."], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**batch).logits  # (B, 2)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_classifier_scores_a_padded_batch_like_single_statements(classifier):
    model, tokenizer = classifier
    texts = ["Short one.", "A much longer statement that needs no padding at all here."]
    with torch.no_grad():
        batched = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        single = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in texts])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- random llamas


def test_tiny_random_llama_matches_its_tokenizer_and_runs(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (16, 2)
    assert config["vocab_size"] == len(tokenizer)
    assert config["pad_token_id"] == tokenizer.pad_token_id
    assert config["eos_token_id"] == tokenizer.eos_token_id
    model, tokenizer = load_base(
        tiny_model_dir, get_approach("generative"), quantize="none", device="cpu"
    )
    with torch.no_grad():
        logits = model(**tokenizer(["Yes or No?"], return_tensors="pt")).logits
    assert logits.shape[-1] == len(tokenizer) and torch.isfinite(logits).all()


def test_tiny_llama_loads_in_4bit_on_the_cpu(tiny_model_dir):
    # No forward: bitsandbytes' CPU 4-bit kernel needs output widths divisible by its block
    # size, which the tiny shape's 8-wide k/v projections are not (the bundled model's are).
    model, tokenizer = load_base(
        tiny_model_dir, get_approach("classifier"), quantize="4bit", device="cpu"
    )
    import bitsandbytes as bnb

    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    info = describe_model(model)
    assert info["quantized"] is True and info["quantization"] == "4-bit nf4"
    # Packed 4-bit weights (two per byte) count as their unpacked size.
    plain, _ = load_base(tiny_model_dir, get_approach("classifier"), quantize="none", device="cpu")
    assert info["parameters_total"] == describe_model(plain)["parameters_total"]
    assert model.config.num_labels == 2


# ----------------------------------------------------------------------------- script


def load_script():
    spec = importlib.util.spec_from_file_location(
        "prepare_model", REPO / "scripts" / "prepare_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_model_script_prints_folder_and_answer_ids(bundled_model_dir, capsys):
    assert load_script().main([]) == 0
    out = capsys.readouterr().out
    assert str(bundled_model_dir) in out
    assert '"No" = 5230, "Yes" = 10539' in out


def test_prepare_model_script_reports_bad_names_without_a_traceback(capsys):
    assert load_script().main(["gpt-17-ultra"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown model") and "Traceback" not in err
