"""Small, validated run configuration, saved as `config.json` in every run folder.

Three dataclasses (data, LoRA, training) and one `RunConfig` that holds them. Each field has
a one-line docstring; `__post_init__` refuses bad values with a message that says how to fix
them. Everything not here is fixed in code until someone needs it.

These fields are the one declaration of the training options: `scripts/train.py`'s flags and
`--help` (`add_arguments`, `config_from_args`), the model card's command (`command_line`)
and the Train tab's defaults all derive from them (`options()`), so a new field or a new
default appears everywhere at once. So do the numbers each option takes (its field's
metadata: "min"/"max" inclusive, "above"/"below" exclusive; whole numbers for int fields)
and the one refusal every front end shows for a value outside them (`refusal`), named by
the front end's own word for the option (a flag, a form label, the field).

    from noshow.config import RunConfig, TrainConfig
    cfg = RunConfig(train=TrainConfig(approach="classifier", max_steps=20))
    cfg.to_dict(); RunConfig.from_dict(d)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Approach = Literal["generative", "classifier"]
SplitMethod = Literal["time", "patient", "random"]
Quantize = Literal["auto", "4bit", "none"]
Engine = Literal["auto", "eager", "cuda-graphs", "compile", "compile+cuda-graphs"]
DataParallel = Literal["flat", "ddp"]

APPROACHES = ("generative", "classifier")
SPLITS = ("time", "patient", "random")
QUANTIZE = ("auto", "4bit", "none")
# Names of Llama's linear layers; "all-linear" lets peft find them for any architecture.
KNOWN_TARGET_MODULES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message says how to fix it. A value outside an
    option's range also carries the `option` (an Option) and the `value`, so a front end can
    word the refusal with its own name for the option."""

    def __init__(self, message: str, option: Any = None, value: Any = None) -> None:
        super().__init__(message)
        self.option = option
        self.value = value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class DataConfig:
    """Which data to train on and how to split it."""

    source: str | None = field(default=None, metadata={"flag": "--data"})
    """A Kaggle CSV or a Statement/NoShow CSV/Parquet file, or 'synthetic'; not set = NOSHOW_DATA, then data/, then synthetic."""
    split: SplitMethod = "time"
    """'time' (test = on/after 2016-05-30), 'patient' (grouped by PatientId) or 'random'."""
    max_train_rows: int | None = field(default=None, metadata={"min": 1})
    """Use at most this many training rows (a stratified sample); not set = all."""
    max_eval_rows: int | None = field(default=None, metadata={"min": 1})
    """Use at most this many validation and test rows each; not set = all."""
    seed: int = field(default=0, metadata={"min": 0})
    """Seed for sampling and the patient/random splits."""
    use_clinician_labels: bool = False
    """Let clinician labels from the label store override the data set's labels."""

    def __post_init__(self) -> None:
        _check(
            self.split in SPLITS,
            f"split must be one of {', '.join(SPLITS)}, got {self.split!r}.",
        )
        check_ranges(self, "data")


@dataclass
class LoraSettings:
    """LoRA adapter shape (named to avoid clashing with peft.LoraConfig)."""

    r: int = field(default=16, metadata={"flag": "--lora-r", "min": 1})
    """Rank of the LoRA matrices; 8-64 is typical. Higher = more capacity, more memory."""
    alpha: int = field(default=32, metadata={"flag": "--lora-alpha", "min": 1})
    """Scaling numerator; the update is scaled by alpha / r."""
    dropout: float = field(default=0.0, metadata={"flag": "--lora-dropout", "min": 0, "below": 1})
    """Dropout on the LoRA input, 0 <= dropout < 1 (0: one step of the 135M model trains on
    a few thousand statements, and dropout only added kernels; BENCHMARKS.md)."""
    target_modules: str | list[str] = field(
        default="all-linear", metadata={"flag": "--lora-target-modules"}
    )
    """'all-linear' or module names such as q_proj,v_proj (comma-separated on the command line)."""

    def __post_init__(self) -> None:
        check_ranges(self, "lora")
        if isinstance(self.target_modules, str):
            _check(
                self.target_modules == "all-linear",
                "target_modules must be 'all-linear' or a list of module names, "
                f"got {self.target_modules!r}.",
            )
        else:
            self.target_modules = list(self.target_modules)
            _check(len(self.target_modules) > 0, "target_modules must not be an empty list.")
            unknown = [m for m in self.target_modules if m not in KNOWN_TARGET_MODULES]
            _check(
                not unknown,
                f"Unknown target module(s) {unknown}: choose from "
                f"{', '.join(KNOWN_TARGET_MODULES)} or use 'all-linear'.",
            )


@dataclass
class TrainConfig:
    """How to fine-tune."""

    approach: Approach = "classifier"
    """'generative' (the model answers Yes/No) or 'classifier' (a linear head)."""
    model: str = "smollm2-135m-instruct"
    """A preset name, a Hugging Face hub id, or a local folder."""
    quantize: Quantize = "auto"
    """'4bit' (QLoRA, NF4 base), 'none' (bf16 on a GPU, fp32 on a CPU), 'auto' (4bit on CUDA, none on a CPU)."""
    epochs: float = field(default=1.0, metadata={"above": 0})
    """Passes over the training rows (ignored when max_steps is set)."""
    max_steps: int | None = field(default=None, metadata={"min": 1})
    """Stop after this many optimizer steps; not set = run `epochs`."""
    lr: float = field(default=1e-3, metadata={"above": 0, "below": 1})
    """Peak learning rate (linear warm-up then cosine decay)."""
    batch_size: int = field(default=256, metadata={"min": 1})
    """Statements per optimizer step (micro-batches on out-of-memory; split across GPUs)."""
    warmup_steps: int = field(default=10, metadata={"min": 0})
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = field(default=0.0, metadata={"min": 0})
    """AdamW weight decay on the trainable weights."""
    eval_every: int = field(default=0, metadata={"min": 0})
    """Evaluate on the validation split every N steps (0 = only at the end)."""
    early_stopping_patience: int = field(default=0, metadata={"flag": "--early-stopping", "min": 0})
    """Stop after this many evaluations without a better validation AUC (0 = off)."""
    class_weighting: bool = False
    """Weight the no-show class by the inverse class frequency."""
    max_length: int = field(default=256, metadata={"min": 32})
    """Truncate token sequences longer than this."""
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Trade compute for memory; 'auto' turns it on only for models over 3B parameters."""
    engine: Engine = "auto"
    """How a step runs on CUDA: 'cuda-graphs' (replayed without Python), 'compile' (fused
    kernels), both, or 'eager'; 'auto' picks the fastest measured (BENCHMARKS.md); always eager on a CPU."""
    data_parallel: DataParallel = "flat"
    """How the processes of a torchrun / accelerate launch sum a step's gradients: 'flat' (one
    all_reduce of one flat buffer per step) or 'ddp' (torch DistributedDataParallel); one process: unused."""
    seed: int = field(default=0, metadata={"min": 0})
    """Seed for LoRA initialisation and batch order."""
    wandb: bool = False
    """Log to Weights & Biases (offline mode when no API key is configured)."""
    output_dir: str = "runs"
    """Folder that holds one sub-folder per run."""

    def __post_init__(self) -> None:
        _check(
            self.approach in APPROACHES,
            f"approach must be 'generative' or 'classifier', got {self.approach!r}.",
        )
        _check(
            self.quantize in QUANTIZE,
            f"quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}.",
        )
        _check(bool(str(self.model).strip()), "model must name a preset, hub id or folder.")
        check_ranges(self, "train")
        _check(
            self.gradient_checkpointing in ("auto", "on", "off"),
            "gradient_checkpointing must be 'auto', 'on' or 'off'.",
        )
        _check(
            self.engine in typing.get_args(Engine),
            f"engine must be one of {', '.join(typing.get_args(Engine))}, got {self.engine!r}.",
        )
        _check(
            self.data_parallel in typing.get_args(DataParallel),
            f"data_parallel must be 'flat' or 'ddp', got {self.data_parallel!r}.",
        )


@dataclass
class RunConfig:
    """Everything that defines a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    labels_used: dict[str, Any] | None = None
    """Filled in by training: clinician-label overrides used (count and hash), if any."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        try:
            return cls(
                data=DataConfig(**d.get("data", {})),
                lora=LoraSettings(**d.get("lora", {})),
                train=TrainConfig(**d.get("train", {})),
                labels_used=d.get("labels_used"),
            )
        except TypeError as e:  # unknown or missing keys
            raise ConfigError(f"Invalid run configuration: {e}") from e


# ----------------------------------------------------------------------------- run presets

# Named sets of options a user starts from (the Train tab's preset buttons; the preflight
# test runs "quick-cpu"): only the values that differ from the defaults.
RUN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick-cpu": {  # the whole flow in ~3 minutes on a 2-core CPU; the AUC means little
        "data": {"max_train_rows": 48, "max_eval_rows": 100},  # 100: see MIN_EVAL_ROWS
        "train": {
            "model": "smollm2-135m-instruct",
            "quantize": "none",
            "max_steps": 6,
            "batch_size": 8,
            "eval_every": 3,
        },
    },
    "full-gpu": {  # one epoch of every row on a GPU
        "data": {"max_train_rows": None, "max_eval_rows": None},
        "train": {"max_steps": None, "eval_every": 200},
    },
}


def preset_config(name: str, **sections: dict[str, Any]) -> RunConfig:
    """The RunConfig of run preset `name`, with `sections` (e.g. train={"approach": ...})
    applied on top."""
    base = RUN_PRESETS[name]
    merged = {s: {**base.get(s, {}), **sections.get(s, {})} for s in ("data", "lora", "train")}
    return RunConfig.from_dict(merged)


# ----------------------------------------------------------------------------- options

SECTIONS = (("data", DataConfig), ("lora", LoraSettings), ("train", TrainConfig))


@dataclass(frozen=True)
class Option:
    """One training option as the command line, the model card and the Train tab see it."""

    section: str  # "data", "lora" or "train"
    name: str  # the dataclass field
    flag: str  # "--max-train-rows"
    help: str  # the field's docstring
    default: Any
    kind: type  # int, float, str or bool
    choices: tuple[Any, ...] | None  # from a Literal annotation
    optional: bool  # None is allowed ("all", "not set")
    minimum: float | None = None  # the numbers it takes (field metadata "min", "max",
    maximum: float | None = None  # "above", "below"): what `refusal` words
    above: float | None = None
    below: float | None = None


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: docstring}: the string literal right under each field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _kind(annotation: Any) -> tuple[type, tuple[Any, ...] | None, bool]:
    """(base type, Literal choices, None allowed) of a field's resolved annotation."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    if typing.get_origin(annotation) is Literal:
        return str, args, False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        kind, choices, _ = _kind(rest[0])
        return kind, choices, optional
    if annotation in (int, float, str, bool):
        return annotation, None, False
    return str, None, optional  # e.g. list[str]


@functools.cache
def options() -> tuple[Option, ...]:
    """Every training option, in the order of the dataclasses' fields. A flag shared by two
    fields (--seed: data.seed and train.seed) sets both."""
    out = []
    for section, cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            kind, choices, optional = _kind(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append(
                Option(
                    section=section,
                    name=f.name,
                    flag=f.metadata.get("flag", "--" + f.name.replace("_", "-")),
                    help=docs.get(f.name, ""),
                    default=default,
                    kind=kind,
                    choices=choices,
                    optional=optional or default is None,
                    minimum=f.metadata.get("min"),
                    maximum=f.metadata.get("max"),
                    above=f.metadata.get("above"),
                    below=f.metadata.get("below"),
                )
            )
    return tuple(out)


def option(section: str, name: str) -> Option:
    """The option for `section.name` (e.g. option("train", "batch_size"))."""
    for o in options():
        if (o.section, o.name) == (section, name):
            return o
    raise KeyError(f"No option {section}.{name}.")


# ----------------------------------------------------------------------------- ranges


def value_text(value: Any) -> str:
    """A value as a refusal quotes it: 0 (not 0.0), 0.001, 'abc'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def unset_meaning(o: Option) -> str:
    """What leaving an optional option unset means, from its docstring ("all", "run epochs")."""
    found = re.search(r"not set = ([^.;]+)", o.help)
    return found.group(1).replace("`", "").strip() if found else "not set"


def allowed_values(o: Option, unset: str | None = None) -> str:
    """What `o` takes, in words: "a whole number of at least 1", "a number above 0 and below
    1"; for an optional option, `unset` is how the front end says "not set" ("0 (= all) or
    ..." in the Train tab's form)."""
    bounds = []
    for word, bound in (
        ("of at least", o.minimum),
        ("above", o.above),
        ("of at most", o.maximum),
        ("below", o.below),
    ):
        if bound is not None:
            bounds.append(f"{word} {value_text(bound)}")
    text = " ".join(["a whole number" if o.kind is int else "a number", " and ".join(bounds)])
    if o.optional and unset is not None:
        text = f"{unset} (= {unset_meaning(o)}) or {text}"
    return text.strip()


def in_range(o: Option, value: Any) -> bool:
    """True when `value` is one `o` takes (None for an optional option, a number of its kind
    within its bounds)."""
    if value is None:
        return o.optional
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if (o.kind is int and not isinstance(value, int)) or not math.isfinite(value):
        return False
    return not (
        (o.minimum is not None and value < o.minimum)
        or (o.above is not None and value <= o.above)
        or (o.maximum is not None and value > o.maximum)
        or (o.below is not None and value >= o.below)
    )


def refusal(o: Option, value: Any, name: str | None = None, unset: str | None = None) -> str:
    """The one message for a value `o` does not take, naming the option as the reader knows
    it (`name`: a flag, a form label; the field by default) and what it takes."""
    default = "" if o.default is None else f" (the default is {value_text(o.default)})"
    return f"{name or o.name} must be {allowed_values(o, unset)}{default}; got {value_text(value)}."


def check_ranges(config: Any, section: str) -> None:
    """ConfigError (with `option` and `value`) for the first numeric field of `config` (the
    dataclass of `section`) outside its option's range."""
    for o in options():
        if o.section == section and o.kind in (int, float):
            value = getattr(config, o.name)
            if not in_range(o, value):  # named as its flag is: lora_r, not r
                name = o.flag.removeprefix("--").replace("-", "_")
                raise ConfigError(refusal(o, value, name, unset="None"), option=o, value=value)


class _Parser:
    """argparse's `type` for one option: the value, or ArgumentTypeError saying what the flag
    takes ("argument --epochs: 'abc' is not a number above 0 (the default is 1)"). A class,
    not a partial: argparse names a failing `type` by its repr."""

    def __init__(self, o: Option) -> None:
        self.o = o
        self.__name__ = o.flag

    def __call__(self, text: str) -> Any:
        o = self.o
        if o.optional and text.strip().lower() in ("", "none"):
            return None
        if o.name == "target_modules":
            if text == "all-linear":
                return text
            return [m.strip() for m in text.split(",") if m.strip()]
        if o.kind not in (int, float):
            return o.kind(text)
        try:
            value: Any = float(text)
        except ValueError:
            value = text
        if isinstance(value, float) and o.kind is int and value.is_integer():
            value = int(value)
        if not in_range(o, value):
            default = "" if o.default is None else f" (the default is {value_text(o.default)})"
            allowed = allowed_values(o, unset="'none'")
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}{default}")
        return value


def _shared_help(texts: list[str]) -> str:
    """One help line for a flag that sets several fields (--seed): "Seed for X, and for Y."
    rather than "Seed for X. Seed for Y."."""
    merged = texts[0]
    for text in texts[1:]:
        first, words = merged.split(), text.split()
        same = 0
        while same < min(len(first), len(words)) - 1 and first[same] == words[same]:
            same += 1
        rest = " ".join(words[max(same - 1, 0) :] if same else words)
        merged = f"{merged.rstrip('.')}, and {rest}"
    return merged


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option, with its docstring and default as help."""
    seen: set[str] = set()
    for o in options():
        if o.flag in seen:  # --seed, shared by data and train
            continue
        seen.add(o.flag)
        dest = o.flag[2:].replace("-", "_")
        # a shared flag (--seed) says what each of its fields does
        text = _shared_help(list(dict.fromkeys(x.help for x in options() if x.flag == o.flag)))
        if o.kind is bool:
            action = argparse.BooleanOptionalAction if o.default else "store_true"
            parser.add_argument(
                o.flag,
                action=action,
                default=o.default,
                dest=dest,
                help=f"{text} (default: {'on' if o.default else 'off'})",
            )
            continue
        shown = "not set" if o.default is None else o.default
        parser.add_argument(
            o.flag,
            dest=dest,
            type=_Parser(o),
            default=o.default,
            choices=o.choices,
            metavar=None if o.choices else _METAVARS.get(o.kind, "VALUE"),
            help=f"{text} (default: {shown})",
        )


def config_from_args(namespace: argparse.Namespace) -> RunConfig:
    """The RunConfig that `add_arguments`' flags describe; ConfigError says what to fix."""
    values: dict[str, dict[str, Any]] = {section: {} for section, _ in SECTIONS}
    for o in options():
        values[o.section][o.name] = getattr(namespace, o.flag[2:].replace("-", "_"))
    return RunConfig.from_dict(values)


def command_line(config: dict[str, Any]) -> list[str]:
    """The flags that reproduce `config` (a RunConfig.to_dict()), defaults left out except
    the approach, which a reader wants to see first."""
    parts: list[str] = []
    seen: set[str] = set()
    approach_first = sorted(options(), key=lambda o: o.name != "approach")
    for o in approach_first:
        if o.flag in seen:
            continue
        seen.add(o.flag)
        value = (config.get(o.section) or {}).get(o.name, o.default)
        if o.name != "approach" and (value is None or value == o.default):
            continue
        if o.kind is bool:
            parts.append(o.flag if value else f"--no-{o.flag[2:]}")
        elif isinstance(value, list):
            parts += [o.flag, ",".join(value)]
        else:
            parts += [o.flag, str(value)]
    return parts
