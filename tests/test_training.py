"""Training engine tests on the CPU with a tiny random Llama (2 layers, hidden 16) that
carries the bundled tokenizer, plus one run of the real bundled model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from noshow.config import ConfigError, DataConfig, LoraSettings, RunConfig, TrainConfig
from noshow.modeling.batching import length_grouped_batches, pad_batch
from noshow.training.loop import fit
from noshow.training.recipe import train
from noshow.training.session import TrainingSession


def _config(model: Path | str, tmp_path: Path, **train_kw) -> RunConfig:
    data_kw = {
        k: train_kw.pop(k)
        for k in list(train_kw)
        if k in ("source", "split", "max_train_rows", "max_eval_rows", "use_clinician_labels")
    }
    data_kw.setdefault("max_train_rows", 96)
    data_kw.setdefault("max_eval_rows", 64)
    train_kw.setdefault("max_steps", 3)
    train_kw.setdefault("batch_size", 16)
    train_kw.setdefault("quantize", "none")
    train_kw.setdefault("lr", 1e-3)
    return RunConfig(
        data=DataConfig(**data_kw),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        train=TrainConfig(model=str(model), output_dir=str(tmp_path / "runs"), **train_kw),
    )


@pytest.fixture(autouse=True)
def _synthetic_by_default(monkeypatch, tmp_path):
    """Discovery would find a real file under data/ on a developer's machine: pin synthetic."""
    monkeypatch.delenv("NOSHOW_DATA", raising=False)
    monkeypatch.setenv("NOSHOW_LABELS_DB", str(tmp_path / "labels.sqlite"))


@pytest.fixture()
def statements_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    ages = rng.integers(1, 90, 240)
    y = (ages < 30).astype(int)  # a planted, learnable effect
    rows = [
        {
            "Statement": f"A {a}-year-old patient booked {int(d)} days ahead.",
            "NoShow": "Yes" if t else "No",
        }
        for a, d, t in zip(ages, rng.integers(0, 30, 240), y, strict=True)
    ]
    path = tmp_path / "statements.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir):
    from noshow.modeling.models import load_tokenizer

    return load_tokenizer(str(bundled_model_dir))


# ----------------------------------------------------------------------------- pieces


def test_length_grouped_batches_cover_every_row_once_and_pad_little():
    lengths = np.random.default_rng(1).integers(10, 200, 1000)
    batches = length_grouped_batches(lengths, 32, seed=0)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    waste = sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)
    assert waste / lengths.sum() < 0.05
    assert [b.tolist() for b in batches] == [
        b.tolist() for b in length_grouped_batches(lengths, 32, seed=0)
    ]


def test_pad_batch_positions_count_real_tokens_for_left_and_right_padding():
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"), left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_prompt_mask_keeps_only_answer_and_end_of_turn(tokenizer):
    from noshow.data.statements import render_generative_prompt
    from noshow.modeling.approaches.generative import IGNORE_INDEX, build_masked_example

    statement = "A 30-year-old woman booked 5 days ahead."
    ids, labels = build_masked_example(tokenizer, statement, 1)
    prompt = tokenizer(render_generative_prompt(statement, tokenizer), add_special_tokens=False)[
        "input_ids"
    ]
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids == [*prompt, 10539, end_id]  # "Yes" then <|im_end|>
    assert labels == [IGNORE_INDEX] * len(prompt) + [10539, end_id]
    ids_no, labels_no = build_masked_example(tokenizer, statement, 0)
    assert labels_no[-2:] == [5230, end_id]  # "No"


def test_fast_generative_loss_equals_standard_masked_loss(tiny_model_dir, tokenizer):
    """The answer-positions-only head gives exactly the loss of the full masked LM loss."""
    from transformers import AutoModelForCausalLM

    from noshow.modeling.approaches.generative import (
        build_masked_example,
        build_prompt_layout,
        encode_prompts,
        generative_loss,
    )

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    statements = [
        "A 30-year-old woman booked 5 days ahead.",
        "A man of 71 booked the same day, no SMS.",
    ]
    labels = [1, 0]
    layout = build_prompt_layout(tokenizer)
    enc = encode_prompts(
        tokenizer, layout, statements, labels, [0, 1], with_answer=True, max_length=256
    )
    fast, n = generative_loss(model, enc, np.array([0, 1]), torch.device("cpu"), layout)
    reference = []
    for s, y in zip(statements, labels, strict=True):
        ids, lab = build_masked_example(tokenizer, s, y)
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([lab]))
        reference.append(out.loss)
    assert n == 2
    assert torch.allclose(fast, torch.stack(reference).mean(), atol=1e-5)


def test_generative_probability_read_at_answer_position_with_left_and_right_padding(
    tiny_model_dir, tokenizer
):
    from transformers import AutoModelForCausalLM

    from noshow.modeling.approaches.generative import (
        build_prompt_layout,
        encode_prompts,
        score_prompts,
    )
    from noshow.modeling.batching import last_token_index

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    layout = build_prompt_layout(tokenizer)
    statements = ["Short one.", "A much longer statement about a patient who booked 30 days ahead."]
    enc = encode_prompts(
        tokenizer, layout, statements, [0, 0], [0, 1], with_answer=False, max_length=256
    )
    batched = score_prompts(model, enc, torch.device("cpu"), layout)
    for i, row in enumerate(enc.input_ids):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row])).logits[0, -1]
        p = logits[[layout.no_id, layout.yes_id]].softmax(-1)[1].item()
        assert batched[i] == pytest.approx(p, abs=1e-4)
    for left in (False, True):
        ids, mask, pos = pad_batch(enc.input_ids, layout.pad_id, torch.device("cpu"), left=left)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        last = last_token_index(mask)
        p = logits[torch.arange(2), last][:, [layout.no_id, layout.yes_id]].softmax(-1)[:, 1]
        assert np.allclose(p.numpy(), batched, atol=1e-4)


def test_classifier_batched_equals_single(tiny_model_dir, tokenizer):
    from noshow.modeling.approaches import CLASSIFIER
    from noshow.modeling.approaches.classifier import encode_inputs, score_inputs
    from noshow.modeling.models import load_base

    model, tok = load_base(str(tiny_model_dir), CLASSIFIER, "none", device=torch.device("cpu"))
    statements = ["x", "A 30-year-old woman booked 5 days ahead.", "A man, 71, no SMS, same day."]
    enc = encode_inputs(tok, statements, [0, 1, 0], [0, 1, 2], max_length=256)
    batched = score_inputs(model, enc, torch.device("cpu"), tok.pad_token_id)
    for i in range(3):
        single_enc = encode_inputs(tok, [statements[i]], [0], [0], max_length=256)
        single = score_inputs(model, single_enc, torch.device("cpu"), tok.pad_token_id)
        assert single[0] == pytest.approx(batched[i], abs=1e-5)


# ----------------------------------------------------------------------------- training runs


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_only_lora_and_head_weights_move_and_loss_falls(
    approach, tiny_model_dir, tokenizer, tmp_path
):
    """Train on one fixed batch: loss goes down; LoRA (and the head) change, the base does not."""
    from noshow.modeling.approaches import get_approach
    from noshow.modeling.approaches.classifier import encode_inputs
    from noshow.modeling.approaches.generative import build_prompt_layout, encode_prompts
    from noshow.training.recipe import setup_model

    cfg = _config(tiny_model_dir, tmp_path, approach=approach, lr=3e-2, max_steps=80, batch_size=8)
    device = torch.device("cpu")
    statements = [f"A {20 + 7 * i}-year-old patient booked {i} days ahead." for i in range(8)]
    labels = np.array([1, 0] * 4)
    if approach == "generative":
        model, tok, _ = setup_model(cfg, get_approach(approach), device)
        layout = build_prompt_layout(tok)
        with torch.no_grad():  # random init (std 0.02) leaves the tied head almost no range
            model.get_input_embeddings().weight.mul_(15)
        enc = encode_prompts(
            tok, layout, statements, labels, np.arange(8), with_answer=True, max_length=256
        )
    else:
        model, tok, _ = setup_model(cfg, get_approach(approach), device)
        enc = encode_inputs(tok, statements, labels, np.arange(8), max_length=256)
    bound = get_approach(approach).bind(model, tok, max_length=256, device=device)

    # A random tiny model's 49k-wide head can barely move the full-vocabulary loss, so
    # judge learning by what the app reads: the binary loss of P(no-show) on this batch.
    if approach == "generative":
        from noshow.modeling.approaches.generative import score_prompts

        prompts = encode_prompts(
            tok, layout, statements, labels, np.arange(8), with_answer=False, max_length=256
        )

        def binary_loss():
            p = score_prompts(model, prompts, device, layout)
            return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    else:
        from noshow.modeling.approaches.classifier import score_inputs

        def binary_loss():
            p = score_inputs(model, enc, device, tok.pad_token_id)
            return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = binary_loss()
    session = TrainingSession(cfg, None, None, None)
    with session:
        fit(session, model, enc, bound, None, device)
    assert session.state == "completed"
    model.eval()
    last = binary_loss()
    assert last < first - 0.1, (first, last)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved, "nothing trained"
    assert all("lora_" in n or "score" in n for n in moved), sorted(moved)[:5]
    if approach == "classifier":
        assert any("score" in n for n in moved)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(model.get_parameter(n), before[n]) for n in frozen)


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_run_writes_folder_and_reloaded_adapter_predicts_identically(
    approach, tiny_model_dir, tmp_path, statements_csv
):
    from noshow.inference.predict import load_predictor

    cfg = _config(tiny_model_dir, tmp_path, approach=approach, source=str(statements_csv))
    progress = []
    result = train(cfg, on_progress=progress.append)
    assert result.state == "completed", result.error
    run = result.run_dir
    for name in ("config.json", "metrics.jsonl", "status.json", "eval.json", "predictions.parquet"):
        assert (run / name).exists(), name
    assert (run / "adapter" / "adapter_config.json").exists()
    assert not (run / "adapter.partial").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert json.loads((run / "config.json").read_text())["train"]["approach"] == approach
    assert any(p.get("phase") == "training" and p.get("step") == 3 for p in progress)
    assert result.metrics["model"]["roc_auc"] is not None

    preds = pd.read_parquet(run / "predictions.parquet")
    frame = pd.read_csv(statements_csv)
    predictor = load_predictor(run, expected_approach=approach)
    test_rows = preds[preds["split"] == "test"].head(5)
    statements = [frame.loc[int(r), "Statement"] for r in test_rows["record_id"]]
    again = predictor.predict_proba(statements)
    assert np.allclose(again, test_rows["p_no_show"].to_numpy(), atol=1e-3)
    single = [predictor.predict_proba([s])[0] for s in statements]
    assert np.allclose(single, again, atol=1e-3)


def test_cancel_stops_within_one_step_and_registers_no_adapter(
    tiny_model_dir, tmp_path, statements_csv
):
    cfg = _config(tiny_model_dir, tmp_path, source=str(statements_csv), max_steps=50)
    steps_seen = []

    def on_progress(p):
        if p.get("phase") == "training":
            steps_seen.append(p["step"])

    result = train(cfg, on_progress=on_progress, should_stop=lambda: len(steps_seen) >= 2)
    assert result.state == "cancelled"
    assert max(steps_seen) == 2
    assert not (result.run_dir / "adapter").exists()
    assert json.loads((result.run_dir / "status.json").read_text())["state"] == "cancelled"


def test_resume_continues_from_last_checkpoint(tiny_model_dir, tmp_path, statements_csv):
    cfg = _config(tiny_model_dir, tmp_path, source=str(statements_csv), max_steps=6, eval_every=2)
    seen: set[int] = set()

    def track(into):
        return lambda p: into.add(p["step"]) if p.get("phase") == "training" else None

    first = train(cfg, on_progress=track(seen), should_stop=lambda: len(seen) >= 5)
    assert first.state == "cancelled"
    assert (first.run_dir / "checkpoints" / "step-4").exists()
    resumed: set[int] = set()
    second = train(cfg, run_dir=first.run_dir, resume=True, on_progress=track(resumed))
    assert second.state == "completed", second.error
    assert min(resumed) == 5 and max(resumed) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0}, "lr must be a number above 0"),
        ({"lr": -1e-4}, "lr must be a number above 0"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_train_config_is_refused_with_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_invalid_lora_config_is_refused_with_fix():
    with pytest.raises(ConfigError, match="lora_r must be a whole number of at least 1"):
        LoraSettings(r=0)
    with pytest.raises(ConfigError, match="Unknown target module"):
        LoraSettings(target_modules=["q_proj", "attn_out"])


def test_batch_size_larger_than_data_fails_clearly(tiny_model_dir, tmp_path, statements_csv):
    cfg = _config(tiny_model_dir, tmp_path, source=str(statements_csv), batch_size=500)
    result = train(cfg)
    assert result.state == "failed"
    assert "larger than the" in result.error and "batch_size" in result.error


def test_single_class_training_data_fails_clearly(tiny_model_dir, tmp_path):
    path = tmp_path / "one_class.csv"
    pd.DataFrame({"Statement": [f"Patient {i}." for i in range(60)], "NoShow": ["No"] * 60}).to_csv(
        path, index=False
    )
    result = train(_config(tiny_model_dir, tmp_path, source=str(path)))
    assert result.state == "failed"
    assert "only one class" in result.error


def test_empty_training_split_fails_clearly(tiny_model_dir, tmp_path, real_data_path):
    """Appointments only from the test weeks: the time split has no training rows."""
    raw = pd.read_csv(real_data_path, nrows=20_000)
    late = raw[raw["AppointmentDay"] >= "2016-05-30"].head(300)
    path = tmp_path / "june_only.csv"
    late.to_csv(path, index=False)
    result = train(_config(tiny_model_dir, tmp_path, source=str(path), split="time"))
    assert result.state == "failed"
    assert "leaves train, validation empty" in result.error
    assert "Use split='patient' or 'random'" in result.error
    assert not (result.run_dir / "adapter").exists()


# ----------------------------------------------------------------------------- scripts/train.py


@pytest.fixture(scope="module")
def cli():
    """scripts/train.py as a module (scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "train.py"
    spec = importlib.util.spec_from_file_location("noshow_train_cli_runs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_data_error_is_said_once_and_leaves_no_run_folder(cli, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n")
    runs = tmp_path / "runs"
    code = cli.main(["--data", str(bad), "--max-steps", "1", "--output-dir", str(runs)])
    out = capsys.readouterr()
    said = out.out + out.err
    assert code != 0
    assert said.count("has a header (a, b) but no data rows") == 1, said
    assert not runs.exists() or list(runs.iterdir()) == []


def test_cli_asks_for_yes_before_a_run_evaluated_on_a_handful_of_rows(
    cli, tiny_model_dir, tmp_path, capsys
):
    runs = tmp_path / "runs"
    args = ["--data", "synthetic", "--model", str(tiny_model_dir), "--quantize", "none"]
    args += ["--max-steps", "1", "--batch-size", "8", "--max-train-rows", "32"]
    args += ["--max-eval-rows", "1", "--output-dir", str(runs)]
    assert cli.main(args) == 2
    said = capsys.readouterr()
    text = said.out + said.err
    assert "It evaluates on 1 validation row and 1 test row" in text
    assert "Pass --yes to start it anyway." in text and text.count("It evaluates on") == 1
    assert not runs.exists() or list(runs.iterdir()) == []
    assert cli.main([*args, "--yes"]) == 0
    assert len(list(runs.iterdir())) == 1


def test_cli_progress_bar_gives_no_rate_before_a_second_step(cli):
    import io

    out = io.StringIO()
    show = cli.ProgressPrinter(file=out)
    show({"phase": "loading", "message": "Loading data"})
    show({"phase": "training", "step": 1, "total_steps": 6, "samples_per_s": 12.5, "loss": 0.7})
    show.close()
    text = out.getvalue()
    assert "Loading data" in text and "1/6" in text
    # the first update came after a long load: tqdm's own rate read "8774.69step/s"
    assert not re.search(r"\d+(\.\d+)?step/s", text), text


def test_a_run_that_fails_before_training_is_hidden_from_the_runs_table(
    tiny_model_dir, tmp_path, statements_csv
):
    from noshow.app.train_views import runs_table
    from noshow.training.runs import read_status

    ok = train(_config(tiny_model_dir, tmp_path, source=str(statements_csv)))
    failed = train(_config(tiny_model_dir, tmp_path, source=str(tmp_path / "missing.csv")))
    assert failed.state == "failed" and read_status(failed.run_dir)["before_training"] is True
    assert read_status(ok.run_dir).get("before_training") is None
    assert runs_table(tmp_path / "runs")["run_id"].tolist() == [ok.run_dir.name]


def test_existing_run_folder_is_refused(tiny_model_dir, tmp_path, statements_csv):
    from noshow.training.runs import RunError, create_run

    cfg = _config(tiny_model_dir, tmp_path, source=str(statements_csv))
    create_run(cfg, tmp_path / "runs", run_id="same")
    with pytest.raises(RunError, match="already exists"):
        create_run(cfg, tmp_path / "runs", run_id="same")


def test_out_of_memory_lowers_micro_batch_then_fails_clearly(
    tiny_model_dir, tmp_path, statements_csv, monkeypatch
):
    """A step that runs out of memory is retried with half the micro-batch; when even one row
    does not fit, the run fails with the setting to lower, and the process keeps going."""
    import noshow.modeling.approaches.classifier as clf

    real = clf.classifier_batch_loss
    sizes = []

    def oom_above_4(model, batch):
        sizes.append(batch.shape[0])
        if batch.shape[0] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(model, batch)

    monkeypatch.setattr(clf, "classifier_batch_loss", oom_above_4)
    ok = train(_config(tiny_model_dir, tmp_path, source=str(statements_csv), approach="classifier"))
    assert ok.state == "completed", ok.error
    assert sizes[:3] == [16, 8, 4]

    def always_oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(clf, "classifier_batch_loss", always_oom)
    bad = train(
        _config(tiny_model_dir, tmp_path, source=str(statements_csv), approach="classifier")
    )
    assert bad.state == "failed"
    assert "Out of GPU memory" in bad.error and "--batch-size" in bad.error


def test_wandb_offline_run_is_recorded_locally(
    tiny_model_dir, tmp_path, statements_csv, monkeypatch
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    cfg = _config(tiny_model_dir, tmp_path, source=str(statements_csv), wandb=True, max_steps=2)
    result = train(cfg)
    assert result.state == "completed", result.error
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["wandb_mode"] == "offline"
    assert Path(status["wandb_dir"]).exists()


@pytest.mark.slow
def test_bundled_model_trains_a_few_steps_on_cpu_and_predicts(tmp_path, statements_csv):
    from noshow.inference.predict import load_predictor

    cfg = _config(
        "smollm2-135m-instruct",
        tmp_path,
        source=str(statements_csv),
        approach="classifier",
        max_steps=2,
        batch_size=8,
        max_train_rows=32,
        max_eval_rows=16,
    )
    result = train(cfg)
    assert result.state == "completed", result.error
    p = load_predictor(result.run_dir).predict_proba(["A 25-year-old man booked 40 days ahead."])
    assert 0.0 < p[0] < 1.0


def test_clinician_labels_override_the_data_set_and_are_recorded_in_the_config(
    tiny_model_dir, tmp_path, statements_csv
):
    """Two clinicians relabel three records; the run trains on their labels and its
    config.json says how many it applied, how many changed, and a hash of them."""
    from noshow.labels.events import labels_fingerprint
    from noshow.labels.store import LabelStore, default_label_db

    frame = pd.read_csv(statements_csv)
    flipped = {rid: 0 if frame.loc[rid, "NoShow"] == "Yes" else 1 for rid in (0, 1, 2)}
    with LabelStore(default_label_db()) as store:  # NOSHOW_LABELS_DB points into tmp_path
        for rid, label in flipped.items():
            for annotator in ("Dr A", "Dr B"):
                store.submit(rid, label, annotator, statement=frame.loc[rid, "Statement"])
    cfg = _config(tiny_model_dir, tmp_path, source=str(statements_csv), use_clinician_labels=True)
    result = train(cfg)
    assert result.state == "completed", result.error
    used = json.loads((result.run_dir / "config.json").read_text())["labels_used"]
    assert used["applied"] == 3 and used["changed"] == 3
    assert used["hash"] == labels_fingerprint(flipped)["hash"]
    assert (
        "Clinician labels: 3 records labelled, 3 differ"
        in (result.run_dir / "train.log").read_text()
    )


# Peak GPU memory of 4-bit runs measured on an H100 on 2026-12-07 (BENCHMARKS.md, "GPU session
# of 2026-12-07"; results/gpu-2026-12-07/): (model, approach, batch, peak GB). The rough table
# (each approach's `rough_gpu_gb`) was fitted on H200 peaks of other runs in November; these
# runs were not among them.
MEASURED_PEAKS_NOT_FITTED_ON = [
    ("smollm2-135m-instruct", "classifier", 32, 2.47),  # tests/test_gpu.py's job
    ("smollm2-135m-instruct", "classifier", 256, 15.4),  # bench_preflight.py, the default run
    ("smollm2-135m-instruct", "generative", 256, 24.76),  # bench_train.py, CUDA graphs
    ("llama-3.1-8b-random", "generative", 16, 7.61),  # bench_train.py, checkpointing
    ("llama-3.1-8b-random", "generative", 64, 10.91),
    ("llama-3.1-8b-random", "classifier", 64, 8.35),
]


@pytest.mark.parametrize(("model", "approach", "batch", "peak_gb"), MEASURED_PEAKS_NOT_FITTED_ON)
def test_rough_gpu_estimate_covers_peaks_it_was_not_fitted_on(
    monkeypatch, model, approach, batch, peak_gb
):
    """Without a measurement the preflight still refuses what will not fit, so it must not
    under-estimate; it did (2.0 GB against 2.8 GB measured) until tests/test_gpu.py caught it.
    Not by more than 2x either, or it would refuse runs that fit."""
    from noshow.training.preflight import estimate_resources

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (80e9, 81.5e9))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    config = RunConfig(
        train=TrainConfig(model=model, approach=approach, batch_size=batch, quantize="4bit")
    )
    rows = {"train": 63_532, "validation": 11_746, "test": 35_243}
    estimate = estimate_resources(config, rows, measure=False)
    assert "rough" in estimate["basis"]
    assert peak_gb <= estimate["gpu_mem_gb"] <= 2 * peak_gb
    assert estimate["fits"] is True
