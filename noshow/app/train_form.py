"""The Train tab's form and the run it describes: its fields (each a training option, with the
option's default, choices and help line), the run presets it offers, the data source
picker, the form's values <-> `RunConfig`, and a form saved in the browser read back.

Nothing here imports Gradio, so tests call these directly. The fields, defaults, choices
and help text come from `noshow.config.options()` (the one declaration of the training
options: scripts/train.py's flags and the model card's command use it too), the presets
from `noshow.config.RUN_PRESETS`:

    from noshow.config import preset_config
    from noshow.app.train_form import build_run_config, form_values
    values = form_values(preset_config("quick-cpu"))     # {form field: value shown}
    config = build_run_config(**values, data_source="synthetic")
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

from noshow.app.common import SYNTHETIC_SOURCE, check_server_data_path
from noshow.config import (
    ConfigError,
    Option,
    RunConfig,
    command_line,
    in_range,
    option,
    preset_config,
    refusal,
)
from noshow.modeling.approaches import REGISTRY, get_approach

SOURCE_DATA_TAB = "Same as the Data tab"
SOURCE_DEFAULT = "Default (NOSHOW_DATA, data/, synthetic)"
SOURCE_SYNTHETIC = "Bundled synthetic"
SOURCE_CHOICES = (SOURCE_DATA_TAB, SOURCE_DEFAULT, SOURCE_SYNTHETIC)

# The form's fields, in the order of the /preflight and /start_training parameters, and the
# option each one sets (data_source is the form's own picker: Data tab, default, synthetic).
FORM_OPTIONS: dict[str, tuple[str, str]] = {
    "approach": ("train", "approach"),
    "model": ("train", "model"),
    "split": ("data", "split"),
    "max_train_rows": ("data", "max_train_rows"),
    "max_eval_rows": ("data", "max_eval_rows"),
    "epochs": ("train", "epochs"),
    "max_steps": ("train", "max_steps"),
    "lr": ("train", "lr"),
    "batch_size": ("train", "batch_size"),
    "lora_r": ("lora", "r"),
    "eval_every": ("train", "eval_every"),
    "quantize": ("train", "quantize"),
    "wandb": ("train", "wandb"),
    "use_clinician_labels": ("data", "use_clinician_labels"),
}
FORM_FIELDS = (
    "approach",
    "model",
    "data_source",
    "split",
    "max_train_rows",
    "max_eval_rows",
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "lora_r",
    "eval_every",
    "quantize",
    "wandb",
    "use_clinician_labels",
)
# The form's name for each field: what its box is labelled and what a refusal names.
FORM_LABELS = {
    "approach": "Approach",
    "model": "Model",
    "data_source": "Training data",
    "split": "Split",
    "max_train_rows": "Max training rows",
    "max_eval_rows": "Max validation/test rows",
    "epochs": "Epochs",
    "max_steps": "Max steps",
    "lr": "Learning rate",
    "batch_size": "Batch size",
    "lora_r": "LoRA r",
    "eval_every": "Evaluate every",
    "quantize": "Quantization",
    "wandb": "Log to Weights & Biases",
    "use_clinician_labels": "Use clinician labels",
}
# What a preset sets: the hyperparameters. What to train (approach, data, split) and how to
# log stay as the user chose them.
PRESET_FIELDS = ("model", "quantize", "max_train_rows", "max_eval_rows", "epochs")
PRESET_FIELDS += ("max_steps", "lr", "batch_size", "lora_r", "eval_every")
CPU_PRESET = "quick-cpu"
GPU_PRESET = "full-gpu"
PRESET_LABELS = {CPU_PRESET: "quick CPU demo", GPU_PRESET: "full GPU run"}


def form_option(field: str) -> Option:
    """The training option a form field sets."""
    return option(*FORM_OPTIONS[field])


def alpha_per_r() -> float:
    """The form sets LoRA alpha = this * r, the defaults' ratio (the seed recipe's scale)."""
    return option("lora", "alpha").default / option("lora", "r").default


def _form_value(o: Option, value: Any) -> Any:
    # The form's number boxes show "not set" (all rows, no step limit) as 0.
    if value is None and o.kind in (int, float):
        return 0
    return value


def form_values(config: RunConfig) -> dict[str, Any]:
    """{form field: the value the form shows} for `config` (every field but data_source)."""
    out = {}
    for name, (section, key) in FORM_OPTIONS.items():
        out[name] = _form_value(form_option(name), getattr(getattr(config, section), key))
    return out


def start_preset(cuda: bool) -> str | None:
    """The preset the form opens on: none (the config's defaults) with a GPU, the quick CPU
    demo without one (the defaults are a run of hours on a CPU)."""
    return None if cuda else CPU_PRESET


def form_defaults(cuda: bool) -> dict[str, Any]:
    """The values the form opens with on a machine with (or without) a GPU."""
    name = start_preset(cuda)
    return form_values(preset_config(name) if name else RunConfig())


def preset_values(name: str, approach: str | None = None) -> dict[str, Any]:
    """{field: value} of PRESET_FIELDS for run preset `name`; the full GPU run trains the
    seed project's 8B model of `approach`."""
    config = preset_config(name)
    if name == GPU_PRESET and approach in REGISTRY:
        config = preset_config(name, train={"model": REGISTRY[approach].seed_model})
    values = form_values(config)
    return {f: values[f] for f in PRESET_FIELDS}


def form_info(field: str) -> str:
    """The help line under a form field: the option's docstring, in the form's terms."""
    o = form_option(field)
    text = o.help.replace("`", "")  # the info line is plain text
    if o.optional and o.kind in (int, float):
        text = text.replace("not set", "0")
    if field == "lora_r":
        text += f" LoRA alpha = {alpha_per_r():g}r here."
    return text


def full_run_command(approach: str = "classifier") -> str:
    """The scripts/train.py command of the full GPU run for `approach`."""
    config = preset_config(GPU_PRESET, train={"approach": approach})
    config.train.model = get_approach(approach).seed_model
    return shlex.join(["python", "scripts/train.py", *command_line(config.to_dict())])


def cpu_start_note(approach: str = "classifier") -> str:
    """Markdown above the form on a machine without a GPU: it opens on the quick preset."""
    quick = preset_config(CPU_PRESET)
    return (
        f"**No GPU on this machine: the form opens on the {PRESET_LABELS[CPU_PRESET]} "
        f"preset** ({quick.train.max_steps} steps of {quick.train.batch_size} statements "
        f"from {quick.data.max_train_rows} training rows: the whole flow in minutes; its AUC "
        "means little). The full run (every row, one epoch) takes hours on a CPU: run it on "
        f"a GPU machine with *Preset: {PRESET_LABELS[GPU_PRESET]}* or "
        f"`{full_run_command(approach)}`."
    )


def describe_model_choice(name: str | None, presets: dict[str, Any]) -> str:
    """One line under the model picker: the preset's description, or what a custom entry needs."""
    preset = presets.get((name or "").strip())
    if preset is not None:
        return f"_{preset.description}._"
    return (
        "_Custom model: a hub id (org/name) needs network access, and a token (HF_TOKEN) for "
        "gated models; a local folder must hold a Hugging Face model and tokenizer._"
    )


def whole_or_none(value: Any) -> int | None:
    """0, empty or None mean "no limit"."""
    if value in (None, ""):
        return None
    number = float(value)
    if number != int(number):
        raise ValueError(f"Expected a whole number, got {value!r}.")
    return int(number) or None


def form_number(field: str, value: Any) -> Any:
    """A number box's value as the config takes it: empty is the option's default, and 0 is
    "not set" for an option that may be unset (all rows, no step limit). Anything the option
    does not take raises ConfigError naming the form's field and what it takes
    (`noshow.config.refusal`)."""
    o = form_option(field)
    if value in (None, ""):
        return None if o.optional else o.default
    try:
        number: Any = float(value)
    except (TypeError, ValueError):
        number = value
    if isinstance(number, float) and o.optional and number == 0:
        return None
    if isinstance(number, float) and o.kind is int and number.is_integer():
        number = int(number)
    if not in_range(o, number):
        message = refusal(o, number, FORM_LABELS[field], unset="0")
        raise ConfigError(message, option=o, value=number)
    return number


def resolve_train_source(choice: str | None, data_tab_source: str | None) -> str | None:
    """DataConfig.source for the picker's choice (None = discovery order)."""
    if choice in (None, "", SOURCE_DEFAULT):
        return None
    if choice == SOURCE_SYNTHETIC:
        return SYNTHETIC_SOURCE
    if choice == SOURCE_DATA_TAB:
        return data_tab_source
    return check_server_data_path(choice)  # typed by the user


def build_run_config(
    *,
    approach: str,
    model: str,
    data_source: str | None,
    split: str,
    max_train_rows: Any,
    max_eval_rows: Any,
    epochs: Any,
    max_steps: Any,
    lr: Any,
    batch_size: Any,
    lora_r: Any,
    eval_every: Any,
    quantize: str,
    wandb: bool,
    use_clinician_labels: bool,
    output_dir: str | Path | None = None,
) -> RunConfig:
    """A validated RunConfig from the form's values (an empty box takes the option's
    default); ConfigError says what to fix, a number box by its label and range."""
    r = form_number("lora_r", lora_r)
    return RunConfig.from_dict(
        {
            "data": {
                "source": data_source,
                "split": split,
                "max_train_rows": form_number("max_train_rows", max_train_rows),
                "max_eval_rows": form_number("max_eval_rows", max_eval_rows),
                "use_clinician_labels": bool(use_clinician_labels),
            },
            # alpha follows r at the defaults' ratio, so the update's scale stays as r changes
            "lora": {"r": r, "alpha": round(alpha_per_r() * r)},
            "train": {
                "approach": approach,
                "model": (model or "").strip(),
                "quantize": quantize,
                "epochs": form_number("epochs", epochs),
                "max_steps": form_number("max_steps", max_steps),
                "lr": form_number("lr", lr),
                "batch_size": form_number("batch_size", batch_size),
                "eval_every": form_number("eval_every", eval_every),
                "wandb": bool(wandb),
                "output_dir": str(output_dir or option("train", "output_dir").default),
            },
        }
    )


def restore_form(saved: Any, *, demo_mode: bool = False) -> dict[str, Any]:
    """The valid part of a form saved in the browser: {field: value}, each of the right type
    (a choice among the option's choices, a number >= 0, ...). Fields it lacks, or holds in a
    form this version does not accept, keep what the form shows."""
    if not isinstance(saved, dict):
        return {}
    out: dict[str, Any] = {}
    for name, value in saved.items():
        if name == "data_source":
            listed = value in SOURCE_CHOICES
            if isinstance(value, str) and value.strip() and (listed or not demo_mode):
                out[name] = value
            continue
        if name not in FORM_OPTIONS:
            continue
        o = form_option(name)
        if o.choices is not None:
            ok = value in o.choices
        elif o.kind is bool:
            ok = isinstance(value, bool)
        elif o.kind in (int, float):
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value >= 0
                and (o.kind is float or value == int(value))
            )
        else:
            ok = isinstance(value, str) and bool(value.strip())
        if ok:
            out[name] = value
    return out
