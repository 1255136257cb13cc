"""Ship a finished run's adapter: copy it into `adapters/<name>/` with bf16 weights, a Hugging
Face model card (`README.md`) and a machine-readable `card.json`, so the app, the tests and the
Hub all read the same folder.

    from noshow.inference.model_card import ship_adapter
    ship_adapter("runs/<run_id>", "adapters/generative-smollm2-135m", command="python scripts/train.py ...")

    python scripts/ship_adapter.py runs/<run_id> adapters/generative-smollm2-135m --command "..."

What shipping does, in order, inside a hidden staging folder beside the destination (renamed
into place only when everything succeeded, so the app never lists a half-written adapter):
1. checks the run finished and has config.json and eval.json, and refuses synthetic data and
   local base models unless allowed (a shipped adapter must reload anywhere);
2. copies the PEFT files, tokenizer and `noshow.json`; converts every adapter weight to bf16
   (half the size; the CPU predictor casts back to fp32 when it merges) and refuses any file
   over 16 MiB: the repository and a Space carry these files without Git LFS;
3. computes the CI check figure (below) when the real Kaggle file is present;
4. writes `README.md` (card with Hugging Face front matter) and `card.json`.

The CI check figure is the shipped adapter's ROC-AUC on a fixed, small subsample of the
time-split test set of the real file, scored on the CPU through `load_predictor`:
`CI_ROWS` rows stratified by label, chosen in each class as the rows with the smallest
blake2b hash of `f"{seed}:{record_id}"` (independent of file order, pandas and numpy versions).
It is a fingerprint that catches a broken adapter, template or predictor, not an evaluation
(use the test metrics from training for that); tests/test_shipped_adapters.py recomputes it.
200 rows score in ~25 s (generative) / ~15 s (classifier) for SmolLM2-135M on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.evaluation.metrics import format_auc
from noshow.modeling.approaches import get_approach
from noshow.system.files import replace_folder
from noshow.system.paths import REPO

SHIPPED_DIR = REPO / "adapters"
CARD_JSON = "card.json"
CARD_README = "README.md"
CARD_VERSION = 1
MIB = 1024 * 1024
MAX_FILE_BYTES = 16 * MIB
"""Largest file a shipped adapter may hold (SmolLM2-135M, r16, all linear layers: 9.3 MiB)."""
CI_ROWS = 200
CI_SEED = 0
CI_BATCH = 16
CI_TOLERANCE = 0.005
"""How far a recomputed CI figure may drift (CPU math differs slightly between machines)."""
REAL_DATA_NAME = "KaggleV2-May-2016.csv"

ADAPTER_LICENSE = "cc-by-nc-sa-4.0"
DATASET = {
    "name": "Medical Appointment No Shows",
    "kaggle_id": "joniarroba/noshowappointments",
    "url": "https://www.kaggle.com/datasets/joniarroba/noshowappointments",
    "license": "CC BY-NC-SA 4.0",
    "rows": 110_527,
    "where": "Vitória, Espírito Santo, Brazil; appointment days 2016-04-29 .. 2016-06-08",
}
# Hub id -> (front-matter license id, readable name) of the base models we know.
BASE_LICENSES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("apache-2.0", "Apache-2.0"),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama3.1", "Llama 3.1 Community License"),
    "meta-llama/Llama-3.1-8B": ("llama3.1", "Llama 3.1 Community License"),
}
SPLIT_TEXT = {
    "time": "by time: train before 2016-05-20, validation 2016-05-20 .. 05-29, "
    "test on/after 2016-05-30",
    "patient": "by patient: about 70/10/20% of patients (grouped by PatientId)",
    "random": "random: 80/10/10% of rows, stratified by label",
    "given": "the split column of the data file",
}
# The rows of the card's metric table, in order (each shown when the run reported it).
CARD_MODELS = (
    ("model", "This adapter"),
    ("model_uncalibrated", "This adapter, uncalibrated"),
    ("hybrid", "Hybrid (adapter + baseline)"),
    ("baseline", "Tuned baseline"),
    ("baseline_untuned", "Untuned baseline"),
)
RELIABILITY_PNG = "reliability.png"
METRIC_ROWS = (
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("brier", "Brier score (lower is better)"),
    ("ece", "Expected calibration error (lower is better)"),
    ("threshold", "Threshold (max F1 on validation)"),
    ("f1", "F1 at the threshold"),
    ("sensitivity", "Sensitivity (recall of no-shows)"),
    ("specificity", "Specificity"),
    ("precision", "Precision"),
    ("accuracy", "Accuracy"),
)
HYPERPARAMETERS = (
    ("train", "approach"),
    ("train", "model"),
    ("train", "quantize"),
    ("train", "epochs"),
    ("train", "max_steps"),
    ("train", "batch_size"),
    ("train", "lr"),
    ("train", "warmup_steps"),
    ("train", "weight_decay"),
    ("train", "class_weighting"),
    ("train", "early_stopping_patience"),
    ("train", "eval_every"),
    ("train", "max_length"),
    ("train", "gradient_checkpointing"),
    ("train", "seed"),
    ("lora", "r"),
    ("lora", "alpha"),
    ("lora", "dropout"),
    ("lora", "target_modules"),
    ("data", "split"),
    ("data", "max_train_rows"),
    ("data", "max_eval_rows"),
    ("data", "seed"),
    ("data", "use_clinician_labels"),
)


class ShipError(RuntimeError):
    """The run cannot be shipped as it is; the message says why and what to do."""


# ----------------------------------------------------------------------------- CI check


def find_real_data() -> Path | None:
    """The real Kaggle file: NOSHOW_DATA (when it names that file), `<repo>/data/`, then
    `../shared/data/` beside the repository; None when absent."""
    candidates = []
    env = os.environ.get("NOSHOW_DATA", "").strip()
    if env and Path(env).name == REAL_DATA_NAME:
        candidates.append(Path(env).expanduser())
    candidates += [REPO / "data" / REAL_DATA_NAME, REPO.parent / "shared" / "data" / REAL_DATA_NAME]
    return next((p for p in candidates if p.is_file()), None)


def _hash_key(seed: int, record_id: Any) -> str:
    return hashlib.blake2b(f"{seed}:{int(record_id)}".encode(), digest_size=8).hexdigest()


def ci_subsample(frame: pd.DataFrame, rows: int = CI_ROWS, seed: int = CI_SEED) -> pd.DataFrame:
    """The CI rows of a split frame (`split`, `record_id`, `no_show` columns): `rows` test rows,
    each class in its test-set share (largest remainder), the smallest hashes of
    `seed:record_id` within each class; ordered by record_id."""
    test = frame[frame["split"] == "test"]
    if len(test) < rows:
        raise ShipError(f"The test split has {len(test)} rows, fewer than the {rows} CI rows.")
    counts = test["no_show"].value_counts().sort_index()
    want = counts / len(test) * rows
    take = np.floor(want).astype(int)
    short = rows - int(take.sum())
    for label in (want - take).sort_values(ascending=False).index[:short]:
        take[label] += 1
    keys = test["record_id"].map(lambda r: _hash_key(seed, r))
    parts = [
        test.loc[keys[test["no_show"] == label].sort_values().index[:n]]
        for label, n in take.items()
    ]
    return pd.concat(parts).sort_values("record_id")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (card.json records one per shipped file and for the data file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_ci_rows(
    data_path: str | Path, rows: int = CI_ROWS, seed: int = CI_SEED
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(CI rows, a description of them) from the real Kaggle file, time split."""
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    loaded = load_data(data_path)
    if loaded.kind != "kaggle":
        raise ShipError(
            f"{data_path} is {loaded.kind} data; the CI check needs the Kaggle file "
            f"{REAL_DATA_NAME}."
        )
    sample = ci_subsample(split_data(loaded.frame, "time"), rows, seed)
    ids = ",".join(str(int(r)) for r in sample["record_id"])
    info = {
        "data_file": Path(data_path).name,
        "data_sha256": sha256_file(Path(data_path)),
        "split": "time",
        "subset": "test",
        "rows": len(sample),
        "positives": int(sample["no_show"].sum()),
        "seed": seed,
        "selection": "stratified by label; per class the smallest blake2b(f'{seed}:{record_id}')",
        "record_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
    }
    return sample, info


def score_ci_check(
    adapter_dir: str | Path,
    data_path: str | Path,
    rows: int = CI_ROWS,
    seed: int = CI_SEED,
    sample: tuple[pd.DataFrame, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score the CI rows with the adapter through `load_predictor` on the CPU; the CI record."""
    import torch
    from sklearn.metrics import roc_auc_score

    from noshow.inference.predict import load_predictor

    frame, info = sample or load_ci_rows(data_path, rows, seed)
    t0 = time.time()
    # fp32 weights: the card's figure must not depend on whether the CPU has native bf16.
    predictor = load_predictor(adapter_dir, device="cpu", cpu_weights="float32")
    load_s = time.time() - t0
    statements = frame["statement"].tolist()
    t0 = time.time()
    # Small batches: on a CPU one 200-row batch pads more and runs ~1.6x slower than these.
    p = np.asarray(
        [
            q
            for i in range(0, len(statements), CI_BATCH)
            for q in predictor.predict_proba(statements[i : i + CI_BATCH])
        ],
        dtype=float,
    )
    score_s = time.time() - t0
    return {
        **info,
        "roc_auc": round(float(roc_auc_score(frame["no_show"].to_numpy(), p)), 6),
        "mean_p": round(float(p.mean()), 6),
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "load_s": round(load_s, 1),
        "score_s": round(score_s, 1),
        "tolerance": CI_TOLERANCE,
    }


# ----------------------------------------------------------------------------- weights


def convert_weights_to_bf16(src: Path, dst: Path) -> dict[str, Any]:
    """Rewrite one safetensors file with every floating tensor in bf16; its size and dtypes."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    out = {
        k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
        for k, v in tensors.items()
    }
    save_file(out, str(dst), metadata={"format": "pt", **metadata})
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in out.values()})
    return {"bytes": dst.stat().st_size, "tensors": len(out), "dtypes": dtypes}


def _check_size(path: Path, limit: int | None) -> None:
    size = path.stat().st_size
    if limit is not None and size > limit:
        what = "in bf16 " if path.suffix == ".safetensors" else ""
        raise ShipError(
            f"{path.name} is {size / MIB:.1f} MiB {what}, over the {limit / MIB:.0f} MiB "
            "limit for shipped adapters (the repository and a Space carry them without Git "
            "LFS). Ship a smaller adapter (lower LoRA r, fewer target modules, or the 135M "
            "base: an 8B adapter with r16 on all linear layers is ~80 MiB), or publish it "
            "on the Hugging Face Hub instead."
        )


# ----------------------------------------------------------------------------- the card


def base_model_info(base_model: str) -> dict[str, Any]:
    """Hub id, license and whether `base_model` (a preset, hub id or folder) reloads anywhere."""
    from noshow.modeling.presets import PRESETS

    preset = PRESETS.get(base_model)
    hub_id = preset.hub_id if preset else None
    if hub_id is None and base_model.count("/") == 1 and not Path(base_model).exists():
        hub_id = base_model  # a hub id given directly
    license_id, license_name = BASE_LICENSES.get(hub_id or "", (None, None))
    return {
        "name": base_model,
        "preset": preset.name if preset else None,
        "hub_id": hub_id,
        "license": license_id,
        "license_name": license_name or ("see the base model's page" if hub_id else "unknown"),
        "portable": hub_id is not None,
    }


def train_command(config: Mapping[str, Any]) -> str:
    """The `scripts/train.py` command line that reproduces `config` (defaults left out)."""
    from noshow.config import command_line

    return shlex.join(["python", "scripts/train.py", *command_line(dict(config))])


def _fmt(value: Any) -> str:
    """A hyperparameter as people write it: 0.0002, 1, 0.05, all-linear."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _fmt_metric(value: Any) -> str:
    return (
        f"{value:.3f}" if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"
    )


def _fmt_int(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else "n/a"


def _front_matter(card: Mapping[str, Any]) -> str:
    base = card["base_model"]
    lines = ["---", f"license: {card['license']}"]
    if base["hub_id"]:
        lines.append(f"base_model: {base['hub_id']}")
    lines += ["library_name: peft"]
    pipeline = get_approach(card["approach"]).pipeline_tag
    lines += [f"pipeline_tag: {pipeline}", "language:", "- en", "tags:"]
    tags = ["peft", "lora", "qlora", "llama", "medical", "tabular-to-text", "appointment-no-show"]
    tags += [card["approach"], "noshow"]
    if base["hub_id"]:
        tags.append(f"base_model:adapter:{base['hub_id']}")
    lines += [f"- {t}" for t in tags]
    lines.append("---")
    return "\n".join(lines)


def render_model_card(card: Mapping[str, Any]) -> str:
    """The README.md of a shipped adapter (Hugging Face front matter + Markdown) from card.json."""
    from noshow.data.examples import EXAMPLES

    name, approach, base = card["name"], card["approach"], card["base_model"]
    data, metrics = card["data"], card["test_metrics"]
    model, baseline = metrics.get("model") or {}, metrics.get("baseline") or {}
    base_link = (
        f"[{base['hub_id']}](https://huggingface.co/{base['hub_id']})"
        if base["hub_id"]
        else f"`{base['name']}` (a local folder)"
    )
    how = get_approach(approach).card_summary
    out = [_front_matter(card), "", f"# {name}", ""]
    out.append(
        f"A LoRA adapter for {base_link} that predicts whether a patient will miss a medical "
        f"appointment (a *no-show*) from a short English statement describing the appointment: "
        f"{how}. Trained with the noshow project (`noshow.training.recipe.train`) and shipped with "
        "`scripts/ship_adapter.py`."
    )
    out.append("")
    out.append(
        "> **Research and demo use only. Not for clinical or administrative decisions about "
        "patients.** See *Intended use and limits* below."
    )
    if data["synthetic"]:
        out += [
            "",
            "> **Trained on synthetic data** (generated with the real schema). Its figures say "
            "nothing about real no-shows.",
        ]
    rows = data.get("rows") or {}
    weights = card["weights"]
    out += [
        "",
        "## At a glance",
        "",
        "| | |",
        "|---|---|",
        f"| Approach | {approach} |",
        f"| Base model | {base_link}, license {base['license_name']}"
        + (f" (noshow preset `{base['preset']}`)" if base["preset"] else "")
        + " |",
        f"| Data set | {_dataset_line(data)} |",
        f"| Split | {SPLIT_TEXT.get(data.get('split'), data.get('split'))} |",
        f"| Rows | train {_fmt_int(rows.get('train'))}, validation "
        f"{_fmt_int(rows.get('validation'))}, test {_fmt_int(rows.get('test'))} |",
        f"| Decision threshold | {_fmt_metric(card['threshold'])} (max F1 on the validation "
        "split) |",
        f"| Test ROC-AUC | {format_auc(model)} (tuned tabular baseline {format_auc(baseline)}) |",
        f"| Statement template | {card.get('template_version') or 'n/a'} |",
        f"| Weights | {', '.join(weights['dtypes'])} safetensors, "
        f"{weights['bytes'] / MIB:.1f} MiB |",
        f"| Run | `{card.get('run_id')}` |",
        "",
        "## Test metrics next to the tabular baseline",
        "",
        "Every model is scored on the same test rows. **This adapter** is its calibrated "
        "P(no-show) (a scaler fitted on the validation split, stored as `calibration.json`); "
        "the **tuned baseline** is gradient boosting (scikit-learn HistGradientBoosting) on "
        "the tabular columns, its settings chosen on the validation split, fitted on the same "
        "training rows in the same run; the **hybrid** blends the two (three numbers fitted on "
        "validation, `hybrid.json`). Thresholded metrics use each model's own threshold, chosen "
        "on the validation split. ROC-AUCs carry 95% intervals (DeLong, a patient's "
        "appointments counted as one unit).",
        "",
    ]
    rows = [(k, t) for k, t in CARD_MODELS if isinstance(card["test_metrics"].get(k), dict)]
    out.append("| Metric | " + " | ".join(t for _, t in rows) + " |")
    out.append("|---|" + "---|" * len(rows))
    for key, label in METRIC_ROWS:
        cells = []
        for k, _ in rows:
            m = card["test_metrics"][k]
            cells.append(format_auc(m) if key == "roc_auc" else _fmt_metric(m.get(key)))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    n, pos = model.get("n"), model.get("positives")
    out += ["", f"Test rows: {_fmt_int(n)}, of which no-shows: {_fmt_int(pos)}."]
    out += [f"- {d['text']}" for d in card.get("differences") or [] if d.get("text")]
    if card.get("differences"):
        out.append(
            "- For reference, published leak-free results on this data fall between 0.72 and "
            "0.76 ROC-AUC (LightGBM on the same time split: 0.726)."
        )
    calibration = card.get("calibration") or {}
    if calibration:
        raw = card["test_metrics"].get("model_uncalibrated") or {}
        before = calibration.get("ece_test_before", raw.get("ece"))
        after = calibration.get("ece_test_after", model.get("ece"))
        mean_p = calibration.get("mean_p_after", model.get("mean_p"))
        rate = calibration.get("prevalence", model.get("prevalence"))
        out += [
            "",
            f"**Calibration** (`calibration.json`, applied to every P(no-show) noshow shows): "
            f"{calibration.get('method', '?')} scaling of the logit of P(no-show), fitted on "
            f"{_fmt_int(calibration.get('rows'))} validation rows; expected calibration error on "
            f"test {_fmt_metric(before)} before, {_fmt_metric(after)} after (mean P "
            f"{_fmt_metric(mean_p)} against an observed rate of {_fmt_metric(rate)}; the "
            "no-show rate of the test days is lower than the validation days', which no "
            "scaler fitted on validation can know)."
            + (f" Note: {calibration['note']}." if calibration.get("note") else ""),
        ]
    preview = card.get("hybrid_preview")
    if preview:
        out += [
            "",
            f"**Hybrid** (`hybrid.json`: this adapter's calibrated P blended with the tuned "
            f"tabular baseline's, weights fitted on validation): ROC-AUC "
            f"{format_auc(preview)} on {_fmt_int(preview.get('test_rows'))} sampled test rows, "
            f"where the tuned baseline reached {_fmt_metric(preview.get('tuned_baseline_roc_auc'))}.",
        ]
        if (card.get("weights") or {}).get("files", {}).get(RELIABILITY_PNG):
            out += ["", f"![Reliability diagram before and after calibration]({RELIABILITY_PNG})"]
    if card.get("baseline_note"):
        out.append(f"Baseline: {card['baseline_note']}.")
    out += ["", "## CI check figure", ""]
    ci = card.get("ci_check")
    if ci:
        out.append(
            f"ROC-AUC **{ci['roc_auc']:.4f}** on a fixed subsample of the time-split test set of "
            f"`{ci['data_file']}`: {ci['rows']} rows ({ci['positives']} no-shows), stratified "
            f"by label, seed {ci['seed']} (per class, the rows with the smallest "
            f"`blake2b(f'{{seed}}:{{record_id}}')`), scored on the CPU with "
            f"`noshow.inference.predict.load_predictor` ({ci['score_s']} s on {ci['threads']} threads). "
            f"`tests/test_shipped_adapters.py` recomputes it and fails when it moves by more "
            f"than {ci['tolerance']}. It is a fingerprint for regressions, not an evaluation: "
            "use the test metrics above."
        )
        if card.get("quantize_trained", (card["config"].get("train") or {}).get("quantize")) in (
            "4bit",
            "auto",
        ):
            out.append(
                "Training (and the test metrics) used the 4-bit NF4 base on CUDA; on the CPU "
                "the predictor rounds the base's weights through NF4 the same way before "
                "merging the adapter, so its scores follow the GPU's to about 0.01 (merged "
                "into the unrounded base, the generative adapter's P(no-show) fell by 0.16 on "
                "average and its threshold no longer applied)."
            )
    else:
        out.append(
            "Not computed: the real data file was absent when this adapter was shipped. Ship "
            "it again with the file present (`--data`)."
        )
    out += [
        "",
        "## How it was made",
        "",
        "Command"
        + (" (reconstructed from the run's config.json)" if card["command_reconstructed"] else "")
        + ":",
        "",
        "```bash",
        card["command"],
        "```",
        "",
        "| Hyperparameter | Value |",
        "|---|---|",
    ]
    config = card["config"]
    for section, key in HYPERPARAMETERS:
        value = (config.get(section) or {}).get(key)
        out.append(f"| {section}.{key} | {_fmt(value)} |")
    training = card.get("training") or {}
    out += [
        "",
        f"Optimizer steps: {_fmt_int(training.get('steps'))}; statements seen: "
        f"{_fmt_int(training.get('samples_seen'))}; wall time: "
        f"{_fmt_int(training.get('elapsed_s'))} s. Adapter weights were saved in float32 and "
        "converted to bf16 for shipping.",
        "",
        "## Input",
        "",
        "One statement per appointment, rendered from the table by "
        "`noshow.data.statements.render_statement` (template "
        f"{card.get('template_version') or 'n/a'}), for example:",
        "",
        f"> {EXAMPLES[0].statement}",
        "",
        "## Use",
        "",
        "```python",
        "from noshow.inference.predict import load_predictor",
        "",
        f'p = load_predictor("adapters/{name}")  # on the CPU the LoRA is merged into the base',
        f"statement = {json.dumps(EXAMPLES[0].statement, ensure_ascii=False)}",
        "p.predict_proba([statement])  # -> [P(no-show)]",
        "```",
        "",
        "The app (`python app.py`) lists this folder in the Compare and Label tabs as "
        "*shipped*. The folder is also a plain PEFT adapter "
        "(`PeftModel.from_pretrained(base, folder)`); `noshow.json` holds the approach, base "
        "model and threshold.",
        "",
        "## Intended use and limits",
        "",
        "- **Intended use:** research, teaching and demonstrations of fine-tuning "
        "Llama-family models on tabular data written as text, and of comparing them with a "
        "tabular baseline.",
        "- **Not for clinical decisions.** Do not use it to decide who gets an appointment, "
        "a reminder, an overbooked slot or any other care or administrative action. It has "
        "not been validated clinically, prospectively, or outside the data below.",
        "- **Narrow data:** appointments in one Brazilian city over six weeks of 2016. Other "
        "places, years, health systems and booking practices will differ.",
        "- **Modest accuracy:** a no-show is hard to predict from these columns; read the "
        "adapter's figures next to the tabular baseline above, which is far cheaper to run.",
        "- **Sensitive attributes:** the statements mention age, gender, neighbourhood and "
        "welfare status, so predictions can encode and reinforce social inequities.",
        "- **Calibration** is measured on the test split only (Brier, ECE above); the "
        "threshold was tuned for F1 on validation and is not a clinical operating point.",
        "",
        "## License",
        "",
        f"Adapter weights: CC BY-NC-SA 4.0 (`{ADAPTER_LICENSE}`), because they are derived "
        f"from the {DATASET['license']} data set; they are also subject to the base "
        f"model's license ({base['license_name']}). Data set: [{DATASET['name']}]"
        f"({DATASET['url']}) by Joni Hoppen, {DATASET['license']}.",
        "",
    ]
    return "\n".join(out)


def _dataset_line(data: Mapping[str, Any]) -> str:
    if data["synthetic"]:
        return "synthetic demo data with the Kaggle schema (`noshow.data.synthetic`)"
    return (
        f"Kaggle [{DATASET['name']}]({DATASET['url']}) ({DATASET['license']}; "
        f"{DATASET['rows']:,} appointments, {DATASET['where']}), file `{data['source']}`"
    )


def build_card(
    run_dir: Path,
    name: str,
    meta: Mapping[str, Any],
    config: Mapping[str, Any],
    report: Mapping[str, Any],
    weights: Mapping[str, Any],
    command: str | None,
    ci_check: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """card.json: everything the README says, machine-readable."""
    source = report.get("data_source") or (config.get("data") or {}).get("source") or "?"
    data = {
        "source": Path(str(source)).name if not report.get("synthetic") else "synthetic",
        "synthetic": bool(report.get("synthetic")),
        "split": report.get("split") or (config.get("data") or {}).get("split"),
        "rows": report.get("rows"),
    }
    clean_config = json.loads(json.dumps(config))
    if clean_config.get("data", {}).get("source"):
        clean_config["data"]["source"] = data["source"]  # no paths of the training machine
    clean_config.get("train", {}).pop("output_dir", None)
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "approach": meta["approach"],
        "base_model": base_model_info(str(meta["base_model"])),
        "license": ADAPTER_LICENSE,
        "dataset": DATASET,
        "run_id": meta.get("run_id") or run_dir.name,
        "template_version": meta.get("template_version"),
        "threshold": meta.get("threshold", report.get("threshold")),
        "data": data,
        "config": clean_config,
        "command": command or train_command(config),
        "command_reconstructed": not command,
        "test_metrics": {
            key: report.get(key)
            for key in ("model", "model_uncalibrated", "hybrid", "baseline", "baseline_untuned")
        },
        "differences": report.get("differences") or [],
        "calibration": report.get("calibration"),
        "quantize_trained": meta.get("quantize"),
        "baseline_note": report.get("baseline_note"),
        "training": {k: report.get(k) for k in ("steps", "samples_seen", "elapsed_s")},
        "weights": dict(weights),
        "ci_check": dict(ci_check) if ci_check else None,
        "shipped_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def read_card(adapter_dir: str | Path) -> dict[str, Any]:
    """card.json of a shipped adapter; ShipError when missing or unreadable."""
    path = Path(adapter_dir) / CARD_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShipError(
            f"{path} is missing: ship adapters with scripts/ship_adapter.py, which writes it."
        ) from None
    except (OSError, ValueError) as e:
        raise ShipError(f"cannot read {path}: {e}") from e


# ----------------------------------------------------------------------------- shipping


def _load_run(run_dir: Path) -> tuple[Path, dict, dict, dict]:
    from noshow.inference.predict import PredictError, read_adapter_meta
    from noshow.training import runs

    if not run_dir.is_dir():
        raise ShipError(f"Run folder not found: {run_dir}")
    status = runs.read_status(run_dir)
    adapter = runs.adapter_dir(run_dir)
    if adapter is None:
        raise ShipError(
            f"{run_dir} has no finished adapter (state {status.get('state')!r}): ship a "
            "completed run."
        )
    try:
        meta = read_adapter_meta(adapter)
        config = runs.read_config(run_dir)
        report = runs.read_eval(run_dir)
    except (PredictError, runs.RunError) as e:
        raise ShipError(str(e)) from e
    if not report:
        raise ShipError(f"{run_dir} has no eval.json: the model card needs its test metrics.")
    return adapter, meta, config, report


def ship_adapter(
    run_dir: str | Path,
    dest: str | Path,
    *,
    command: str | None = None,
    data_path: str | Path | None = None,
    find_data: bool = True,
    ci_rows: int = CI_ROWS,
    ci_seed: int = CI_SEED,
    max_file_bytes: int | None = MAX_FILE_BYTES,
    allow_synthetic: bool = False,
    allow_local_base: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Copy the finished adapter of `run_dir` into `dest` (see the module docstring); return
    `dest`. `data_path` is the real Kaggle file for the CI check (default: `find_real_data()`
    when `find_data`; the check is skipped with a note when there is none)."""
    run_dir, dest = Path(run_dir), Path(dest)
    adapter, meta, config, report = _load_run(run_dir)
    if report.get("synthetic") and not allow_synthetic:
        raise ShipError(
            f"{run_dir} was trained on synthetic data; shipped adapters come from the real "
            "Kaggle file (pass allow_synthetic / --allow-synthetic for a demo)."
        )
    base = base_model_info(str(meta["base_model"]))
    if not base["portable"] and not allow_local_base:
        raise ShipError(
            f"The base model {meta['base_model']!r} is a local folder, so the shipped adapter "
            "would not load elsewhere: train from a preset or a hub id (pass allow_local_base "
            "/ --allow-local-base for tests)."
        )
    if not list(adapter.glob("*.safetensors")):
        raise ShipError(f"{adapter} holds no .safetensors weights; re-save the adapter.")
    if data_path is None and find_data:
        data_path = find_real_data()

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Hidden staging root beside dest: same file system for the rename, and list_adapters
    # never takes it for an adapter (the adapter sits one level down, under dest's name).
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    staging = scratch / dest.name
    try:
        staging.mkdir()
        dtypes: set[str] = set()
        for src in sorted(adapter.iterdir()):
            if src.is_dir() or src.name in (CARD_README, CARD_JSON):
                continue  # PEFT's template README is replaced by our card
            dst = staging / src.name
            if src.suffix == ".safetensors":
                info = convert_weights_to_bf16(src, dst)
                dtypes.update(info["dtypes"])
            else:
                shutil.copyfile(src, dst)
            _check_size(dst, max_file_bytes)
        _rewrite_adapter_config(staging, base)
        _write_reliability(run_dir, staging / RELIABILITY_PNG)
        files = {  # as shipped, so a later edit of any of them shows
            p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(staging.iterdir())
        }
        weights = {
            "dtypes": sorted(dtypes),
            "bytes": sum(v["bytes"] for k, v in files.items() if k.endswith(".safetensors")),
            "files": files,
        }
        ci = None
        if data_path is not None:
            log(f"CI check: scoring {ci_rows} test rows of {Path(data_path).name} on the CPU ...")
            ci = score_ci_check(staging, data_path, ci_rows, ci_seed)
            log(f"CI check: ROC-AUC {ci['roc_auc']:.4f} ({ci['score_s']} s)")
        else:
            log(
                f"warning: the real data file ({REAL_DATA_NAME}) was not found, so the card has "
                "no CI check figure and tests/test_shipped_adapters.py will fail for it; pass "
                "--data."
            )
        card = build_card(run_dir, dest.name, meta, config, report, weights, command, ci)
        (staging / CARD_JSON).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        (staging / CARD_README).write_text(render_model_card(card), encoding="utf-8")
        for path in staging.iterdir():
            path.chmod(0o644)  # save_pretrained leaves weights private (0600)
        replace_folder(staging, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"Shipped {run_dir.name} -> {dest} ({weights['bytes'] / MIB:.1f} MiB of weights)")
    return dest


def _write_reliability(run_dir: Path, path: Path) -> None:
    """The card's reliability diagram (test rows, before and after calibration) from the
    run's predictions; nothing when the run kept no uncalibrated scores."""
    from noshow.evaluation.calibration import plot_reliability
    from noshow.training import runs

    preds = runs.read_predictions(run_dir)
    if preds is None or "p_no_show_raw" not in preds.columns:
        return
    test = preds[preds["split"] == "test"]
    figure = plot_reliability(
        {"this adapter": (test["label"], test["p_no_show_raw"], test["p_no_show"])}
    )
    figure.savefig(path, dpi=90)


def _rewrite_adapter_config(folder: Path, base: Mapping[str, Any]) -> None:
    """Point adapter_config.json at the hub id instead of the training machine's cache path,
    so plain `peft` users find the base (noshow reads the base from noshow.json)."""
    path = folder / "adapter_config.json"
    if not path.exists() or not base["hub_id"]:
        return
    with contextlib.suppress(ValueError):
        cfg = json.loads(path.read_text())
        cfg["base_model_name_or_path"] = base["hub_id"]
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def shipped_adapters(root: str | Path = SHIPPED_DIR) -> list[Path]:
    """Adapter folders under `root` (hidden staging folders excluded), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
