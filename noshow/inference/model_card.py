"""A shipped adapter's model card: `card.json` (everything the card says, machine-readable)
and the Hugging Face card (`README.md`) rendered from it, its YAML metadata from
`huggingface_hub.ModelCardData` and its Markdown body from the run's figures (every model's
test metrics with intervals, calibration, the reliability diagram, net benefit, capacity and
subgroups (`noshow.inference.card_clinical`), the CI check figure, the command and
hyperparameters, intended use and limits, licenses).

    from noshow.inference.model_card import build_card, render_model_card
    card = build_card(run_dir, name, meta, config, report, base, weights, command, ci_check)
    render_model_card(card).save("adapters/<name>/README.md")   # a huggingface_hub.ModelCard

`noshow.inference.ship` copies the adapter and calls these; read a shipped card with
`noshow.inference.ship.read_card`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from noshow.evaluation.metrics import format_auc
from noshow.inference.card_clinical import clinical_card, render_clinical_sections
from noshow.inference.card_quality import CARD_KEYS, quality_sections
from noshow.modeling.approaches import get_approach

CARD_VERSION = 1
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
CARD_TAGS = ("peft", "lora", "qlora", "llama", "medical", "tabular-to-text", "appointment-no-show")
# License first, as the Hub's own cards put it (ModelCardData alone would sort the keys).
METADATA_ORDER = ["license", "base_model", "library_name", "pipeline_tag", "language", "tags"]
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
    ("stacked", "Stacked (tabular model + adapter score)"),
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


def card_metadata(card: Mapping[str, Any]) -> ModelCardData:
    """The card's YAML metadata, what the Hub indexes: license, base model, library, task,
    language and tags (a local base model is no hub id, so it is left out)."""
    hub_id = card["base_model"]["hub_id"]
    tags = [*CARD_TAGS, card["approach"], "noshow"]
    if hub_id:
        tags.append(f"base_model:adapter:{hub_id}")
    return ModelCardData(
        license=card["license"],
        base_model=hub_id,
        library_name="peft",
        pipeline_tag=get_approach(card["approach"]).pipeline_tag,
        language=["en"],
        tags=tags,
    )


def render_model_card(card: Mapping[str, Any]) -> ModelCard:
    """The README.md of a shipped adapter from card.json: `card_metadata` as YAML front
    matter, then the Markdown body (`.save(path)` writes it, `str()` gives its text)."""
    metadata = card_metadata(card).to_yaml(original_order=METADATA_ORDER)
    return ModelCard(f"---\n{metadata}\n---\n\n{_card_body(card)}")


def _card_body(card: Mapping[str, Any]) -> str:
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
    out = [f"# {name}", ""]
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
        f"{weights['bytes'] / 2**20:.1f} MiB |",
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
    out += render_clinical_sections(card)  # net benefit, capacity, subgroups, TRIPOD+AI
    out += quality_sections(card)  # stacked, both adapters, recalibration, a clinic's rate
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
    base: Mapping[str, Any],
    weights: Mapping[str, Any],
    command: str | None,
    ci_check: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """card.json: everything the README says, machine-readable. `base` is
    `base_model_info(meta["base_model"])`, which shipping has checked already."""
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
        "base_model": dict(base),
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
            for key in (
                "model",
                "model_uncalibrated",
                "hybrid",
                "stacked",
                "baseline",
                "baseline_untuned",
            )
        },
        **{key: report.get(key) for key in CARD_KEYS},
        "differences": report.get("differences") or [],
        "clinical": clinical_card(report),
        "calibration": report.get("calibration"),
        "quantize_trained": meta.get("quantize"),
        "baseline_note": report.get("baseline_note"),
        "training": {k: report.get(k) for k in ("steps", "samples_seen", "elapsed_s")},
        "weights": dict(weights),
        "ci_check": dict(ci_check) if ci_check else None,
        "shipped_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
