"""One interface for both adapters: `load_predictor(path).predict_proba(statements)` gives
P(no-show) per statement, whether the adapter is generative or a classifier head.

On the CPU the LoRA weights are merged into the base (no adapter overhead per layer; an
adapter trained on a 4-bit base gets that base: its weights rounded through NF4 first), and
statements run through the engine chosen for this CPU's kind from a measured table
(`noshow.inference.cpu.choice`: the hand-written fused forward in fp32 or bf16, ONNX Runtime,
...; the chat template's fixed start computed once, several statements per pass), never one
whose scores drift past the bound against fp32. `NOSHOW_CPU_ENGINE=fused-fp32` (or
`load_predictor(cpu_weights=...)`) names one. `predictor.weights` and `predictor.engine` say
which and why. On CUDA the base is loaded 4-bit (or bf16) and the adapter kept separate, as
trained.

    from noshow.inference.predict import load_predictor
    p = load_predictor("runs/<run_id>")          # or an adapter folder
    p.predict_proba(["A 25-year-old man ..."])   # -> [0.31]
    p.predict_proba(["A 25-year-old man ..."], clinic_rate=0.15)   # at a 15% no-show clinic
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noshow.inference.cpu.thread import run_on_cpu_thread

DEFAULT_MAX_LENGTH = 256


class PredictError(ValueError):
    """The adapter cannot be loaded or the input cannot be scored; says why."""


def clean_statement(text: str) -> str:
    """Something every tokenizer can read: lone surrogates replaced, blank text made a word
    (a blank statement would leave the chat template's two halves touching)."""
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text if text.strip() else "(empty)"


def resolve_adapter_dir(path: str | Path) -> Path:
    """Accept a run folder (uses its finished adapter) or an adapter folder."""
    p = Path(path)
    if not p.exists():
        raise PredictError(f"Adapter folder not found: {p}")
    if (p / "adapter" / "noshow.json").exists():
        return p / "adapter"
    if (p / "noshow.json").exists() and (p / "adapter_config.json").exists():
        return p
    if (p / "adapter.partial").exists() or (p / "status.json").exists():
        raise PredictError(f"{p} holds no finished adapter (the run did not complete).")
    raise PredictError(
        f"{p} is not a noshow adapter: expected adapter_config.json and noshow.json in it."
    )


def read_adapter_meta(adapter_dir: Path) -> dict:
    try:
        meta = json.loads((adapter_dir / "noshow.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PredictError(f"Cannot read {adapter_dir / 'noshow.json'}: {e}") from e
    from noshow.modeling.approaches import REGISTRY

    if meta.get("approach") not in REGISTRY:
        raise PredictError(f"{adapter_dir}: unknown approach {meta.get('approach')!r}.")
    return meta


@dataclass
class AdapterPredictor:
    """A loaded adapter; thread-safe (one forward at a time per predictor)."""

    approach: str
    threshold: float
    name: str
    adapter_dir: Path
    base_model: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    max_length: int = DEFAULT_MAX_LENGTH
    calibrator: Any = (
        None  # noshow.evaluation.calibration.Calibrator from calibration.json (or identity)
    )
    hybrid: Any = (
        None  # noshow.evaluation.hybrid.Hybrid from hybrid.json (None: the adapter has none)
    )
    stacked: Any = None  # noshow.evaluation.stacking.Stacked from stacked.json, to refit
    spec: Any = None  # the approach object (noshow.modeling.approaches)
    bound: Any = None  # the approach bound to this model: encode, score, answer texts
    weights: str = ""  # what scores: "float32, merged", "bf16 linears (fp32 activations)", ...
    engine: str = ""  # the CPU engine and why it was chosen (noshow.inference.cpu.choice)
    single_rows: bool = False  # one statement per forward (bf16 weights): batch == single
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict_proba(
        self,
        statements: list[str],
        *,
        calibrated: bool = True,
        clinic_rate: float | None = None,
    ) -> list[float]:
        """P(no-show) per statement, through the adapter's calibration (calibration.json,
        fitted on validation; identity for adapters without one) unless `calibrated=False`.

        `clinic_rate` (a clinic's own no-show rate, a share such as 0.15) moves every P to
        that rate (`at_clinic_rate`); the ranking does not change."""
        if clinic_rate is not None:
            if not calibrated:
                raise PredictError("clinic_rate adjusts calibrated P: leave calibrated=True.")
            self.at_clinic_rate([], clinic_rate)  # a bad rate fails before any scoring
        if isinstance(statements, str):
            statements = [statements]
        statements = [clean_statement(s) for s in statements]  # keep scores defined
        if not statements:
            return []
        raw = self._call(lambda: self._score(statements))
        p = self._calibrate(raw, calibrated)
        return (p if clinic_rate is None else self.at_clinic_rate(p, clinic_rate)).tolist()

    def at_clinic_rate(self, p: Any, clinic_rate: float) -> np.ndarray:
        """Calibrated P moved from the no-show rate of the rows it was calibrated on to a
        clinic's own rate: odds times [r/(1-r)] / [pi/(1-pi)]
        (`noshow.evaluation.recalibration.shift_prior`). PredictError when the rate is not a
        share or the adapter records no rate (a calibration.json from before noshow kept it)."""
        from noshow.evaluation.recalibration import RecalibrationError, shift_prior

        rate = getattr(self.calibrator, "base_rate", None)
        if rate is None:
            raise PredictError(
                f"{self.name} does not record the no-show rate its P is calibrated to (its "
                "calibration.json is older than that field): evaluate it again "
                "(scripts/bench_quality.py --save-to) or leave the clinic's rate out."
            )
        try:
            return shift_prior(p, rate, clinic_rate)
        except RecalibrationError as e:
            raise PredictError(str(e)) from e

    def _calibrate(self, raw, calibrated: bool = True) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        return self.calibrator.apply(raw) if calibrated and self.calibrator is not None else raw

    def _call(self, fn):
        """fn() under this predictor's lock; CPU work on the one CPU inference thread."""

        def locked():
            with self._lock:
                return fn()

        return run_on_cpu_thread(locked) if self.device.type == "cpu" else locked()

    def predict_with_answer(self, statement: str) -> tuple[float, str | None]:
        """P(no-show) for one statement and, for a generative adapter, its own answer text,
        read from the same forward pass: the greedy first token is the answer when it is
        "Yes" or "No" (what training teaches); anything else is generated out in full."""
        return self.predict_with_answers([statement])[0]

    def predict_with_answers(self, statements: list[str]) -> list[tuple[float, str | None]]:
        """`predict_with_answer` for several statements in one scoring pass (what concurrent
        Compares share): per statement P(no-show) and, for a generative adapter, its answer."""
        statements = [clean_statement(s) for s in statements]
        if not statements:
            return []
        if not self.spec.answers_in_words:
            return [(p, None) for p in self.predict_proba(statements)]
        probs, tokens = self._call(lambda: self._score(statements, answers=True))
        probs = self._calibrate(probs)
        texts = self.bound.answer_texts(tokens)
        return [
            (float(p), text if text is not None else self.generate(statement))
            for statement, p, text in zip(statements, probs, texts, strict=True)
        ]

    def _score(self, statements: list[str], answers: bool = False):
        rows = np.arange(len(statements))
        enc = self.bound.encode(statements, np.zeros(len(rows), np.int64), rows, train=False)
        return self.bound.score(enc, single_rows=self.single_rows, answers=answers)

    @torch.inference_mode()
    def generate(self, statement: str, max_new_tokens: int = 4) -> str | None:
        """The generative model's own answer text (greedy); None for a classifier."""
        if not self.spec.answers_in_words:
            return None
        from noshow.data.statements import render_generative_prompt

        text = render_generative_prompt(clean_statement(statement), self.tokenizer)
        enc = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.device)
        out = self._call(
            lambda: self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        )
        return self.tokenizer.decode(
            out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True
        ).strip()


def load_predictor(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    expected_approach: str | None = None,
    merge: bool | None = None,
    cpu_weights: str | None = None,
) -> AdapterPredictor:
    """Load base + adapter for scoring (on the CPU inference thread for a CPU predictor,
    see noshow.inference.cpu.thread). `expected_approach` refuses the wrong kind clearly;
    `cpu_weights` (auto, an engine of noshow.inference.cpu.engines, or float32/bfloat16;
    default from NOSHOW_CPU_ENGINE) applies to a merged model on the CPU."""
    dev = (
        torch.device(device)
        if device
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    kwargs = dict(expected_approach=expected_approach, merge=merge, cpu_weights=cpu_weights)
    if dev.type == "cpu":
        return run_on_cpu_thread(_load_predictor, path, dev, **kwargs)
    return _load_predictor(path, dev, **kwargs)


def _load_predictor(
    path: str | Path,
    dev: torch.device,
    *,
    expected_approach: str | None,
    merge: bool | None,
    cpu_weights: str | None,
) -> AdapterPredictor:
    from peft import PeftModel

    from noshow.evaluation.calibration import Calibrator
    from noshow.inference.cpu.forward import supported
    from noshow.inference.cpu.runtime import install_engine
    from noshow.inference.cpu.weights import hugepage_weights, nf4_round_trip
    from noshow.modeling.approaches import get_approach
    from noshow.modeling.models import load_base, scoring_quantization
    from noshow.modeling.presets import ModelError
    from noshow.system.quiet import silence_third_party

    silence_third_party()  # before peft imports bitsandbytes
    adapter_dir = resolve_adapter_dir(path)
    meta = read_adapter_meta(adapter_dir)
    approach = meta["approach"]
    spec = get_approach(approach)
    if expected_approach and approach != expected_approach:
        raise PredictError(
            f"{adapter_dir} is a {approach} adapter, not a {expected_approach} one: "
            f"pick it in the {approach} slot."
        )
    quantize = scoring_quantization(meta.get("quantize"), dev)
    try:
        base, tokenizer = load_base(meta["base_model"], spec, quantize, device=dev)
    except ModelError as e:
        raise PredictError(f"Base model of {adapter_dir.name} unavailable: {e}") from e
    nf4_base = quantize == "none" and meta.get("quantize") == "4bit"
    if nf4_base:
        try:
            nf4_round_trip(base.get_decoder())  # the base the adapter was trained against
        except ImportError as e:
            raise PredictError(
                f"{adapter_dir.name} was trained on a 4-bit base; scoring it on the CPU rounds "
                f"the base the same way, which needs bitsandbytes "
                f"(pip install bitsandbytes==0.50.2): {e}"
            ) from e
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    merged = merge if merge is not None else quantize == "none"
    if merged:
        model = model.merge_and_unload()  # plain weights: no LoRA branch per layer at inference
    model.eval()
    weights = "4-bit NF4" if quantize == "4bit" else str(next(model.parameters()).dtype)[6:]
    weights += ", merged" if merged else ", adapter separate"
    if nf4_base:
        weights += ", NF4-rounded base"
    if merged and dev.type == "cpu" and hugepage_weights(model):
        weights += ", huge pages"  # TLB-bound weight reads; NOSHOW_HUGEPAGES=0 turns it off
    max_length = int(meta.get("max_length", DEFAULT_MAX_LENGTH))
    bound = spec.bind(model, tokenizer, max_length=max_length, device=dev)
    single_rows = False
    engine = ""
    if merged and dev.type == "cpu" and supported(model.get_decoder()) is None:
        # the engine for this CPU's kind from the measured table (noshow.inference.cpu.choice);
        # the chat template's fixed start is computed once, whatever the engine
        try:
            installed = install_engine(
                model.get_decoder(),
                tuple(bound.prefix_ids),
                adapter_dir,
                approach,
                requested=cpu_weights,
            )
        except ValueError as e:
            raise PredictError(str(e)) from e
        weights = weights.replace(weights.split(",")[0], installed.label, 1)
        engine = installed.describe()
        # where bf16 products round differently for different row counts, one statement
        # per forward keeps a statement's score the same in a batch as alone
        single_rows = installed.single_rows
    return AdapterPredictor(
        approach=approach,
        threshold=float(meta.get("threshold", 0.5)),
        name=meta.get("name")
        or (adapter_dir.parent.name if adapter_dir.name == "adapter" else adapter_dir.name),
        adapter_dir=adapter_dir,
        base_model=meta["base_model"],
        model=model,
        tokenizer=tokenizer,
        device=dev,
        max_length=max_length,
        spec=spec,
        bound=bound,
        calibrator=Calibrator.load(adapter_dir),
        hybrid=_load_hybrid(adapter_dir),
        stacked=_load_stacked(adapter_dir),
        weights=weights,
        engine=engine,
        single_rows=single_rows,
    )


def _load_hybrid(adapter_dir: Path) -> Any:
    """The adapter's hybrid, or None: an unreadable hybrid.json costs the hybrid card only,
    never the adapter (its P does not depend on it)."""
    from noshow.evaluation.hybrid import Hybrid, HybridError

    try:
        return Hybrid.load(adapter_dir)
    except HybridError as e:
        warnings.warn(f"{adapter_dir}: hybrid left out: {e}", stacklevel=2)
        return None


def _load_stacked(adapter_dir: Path) -> Any:
    """The adapter's stacked model (unfitted: the app refits it), or None, as `_load_hybrid`."""
    from noshow.evaluation.stacking import Stacked, StackingError

    try:
        return Stacked.load(adapter_dir)
    except StackingError as e:
        warnings.warn(f"{adapter_dir}: stacked model left out: {e}", stacklevel=2)
        return None


_CACHE: dict[tuple[str, str | None], AdapterPredictor] = {}
_CACHE_LOCK = threading.Lock()


def get_predictor(path: str | Path, expected_approach: str | None = None) -> AdapterPredictor:
    """Load once per process and reuse (the app calls this on every Compare)."""
    key = (str(resolve_adapter_dir(path).resolve()), expected_approach)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_predictor(path, expected_approach=expected_approach)
        return _CACHE[key]


def list_adapters(
    runs_dir: str | Path = "runs", shipped_dir: str | Path = "adapters"
) -> list[dict]:
    """Finished adapters from run folders and the shipped ones: name, path, approach, source."""
    found: list[dict] = []
    for source, root in (("shipped", Path(shipped_dir)), ("run", Path(runs_dir))):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir(), reverse=source == "run"):
            try:
                adapter_dir = resolve_adapter_dir(folder)
                meta = read_adapter_meta(adapter_dir)
            except PredictError:
                continue
            found.append(
                {
                    "name": folder.name,
                    "path": str(folder),
                    "approach": meta["approach"],
                    "source": source,
                    "base_model": meta.get("base_model"),
                    "threshold": meta.get("threshold"),
                }
            )
    return found
