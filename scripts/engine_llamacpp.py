"""llama.cpp as a CPU engine for scripts/bench_engines.py: the merged generative adapter
saved as a Hugging Face folder, converted to GGUF by llama.cpp's own converter
(`convert_hf_to_gguf.py`, in F32 and Q8_0), and scored through llama-cpp-python: the
[No, Yes] logits at the answer position, as the app scores them, one full prompt per call.

The converter ships in llama.cpp's source, not in the llama-cpp-python wheel: point
`LLAMA_CPP_DIR` at a llama.cpp checkout, or unpack the one vendored in llama-cpp-python's
source release into `<cache>/engines/llama.cpp` (the bench says how when it is missing):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz --strip-components=2 -C <cache>/engines/llama.cpp \
        llama_cpp_python-0.3.36/vendor/llama.cpp

Helpers beside the script; no CLI of their own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

OUTTYPES = ("f32", "q8_0")


def converter() -> Path | None:
    from noshow.system.paths import cache_dir

    for root in (os.environ.get("LLAMA_CPP_DIR"), cache_dir() / "engines" / "llama.cpp"):
        if root and (Path(root) / "convert_hf_to_gguf.py").is_file():
            return Path(root) / "convert_hf_to_gguf.py"
    return None


def why_unavailable() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install llama-cpp-python builds llama.cpp)"
    if converter() is None:
        return "llama.cpp's convert_hf_to_gguf.py not found (see scripts/engine_llamacpp.py)"
    return None


def build_gguf(predictor, folder: Path, outtype: str) -> Path:
    """The merged generative model as GGUF (`outtype` f32 or q8_0), cached in `folder`."""
    out = folder / f"merged-{outtype}.gguf"
    if out.exists():
        return out
    hf = folder / "merged-hf"
    if not (hf / "config.json").exists():
        from noshow.inference.cpu.forward import uninstall_fast_forward

        uninstall_fast_forward(predictor.model.get_decoder())  # plain module for saving
        predictor.model.save_pretrained(hf, safe_serialization=True)
        predictor.tokenizer.save_pretrained(hf)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    command = [sys.executable, str(converter()), str(hf), "--outfile", str(tmp)]
    subprocess.run([*command, "--outtype", outtype], check=True, capture_output=True)
    tmp.rename(out)
    return out


class LlamaCppScorer:
    """P(no-show) = softmax([No, Yes]) at the answer position, through llama.cpp."""

    def __init__(self, gguf: Path, layout, tokenizer, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=str(gguf), n_ctx=512, n_batch=512, n_threads=threads, verbose=False
        )
        self.layout, self.tokenizer = layout, tokenizer

    def ids(self, statement: str) -> list[int]:
        body = self.tokenizer(statement, add_special_tokens=False)["input_ids"]
        return [*self.layout.prefix_ids, *body, *self.layout.suffix_ids]

    def p(self, statement: str) -> float:
        import numpy as np

        self.llm.reset()
        self.llm.eval(self.ids(statement))
        logits = np.asarray(self.llm.scores[self.llm.n_tokens - 1])
        pair = logits[[self.layout.no_id, self.layout.yes_id]].astype(np.float64)
        pair = np.exp(pair - pair.max())
        return float(pair[1] / pair.sum())

    def timed(self, statements: list[str]) -> list[float]:
        times = []
        for s in statements:
            t0 = time.perf_counter()
            self.p(s)
            times.append((time.perf_counter() - t0) * 1000)
        return times
