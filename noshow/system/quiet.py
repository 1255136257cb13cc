"""Keep the console for what matters: third-party messages that are expected and harmless
here are silenced, nothing else.

- bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" at import
  on every CPU with AVX512-BF16 (an optional package we do not need);
- transformers prints a weight-loading progress bar and a load report that lists
  `score.weight` as MISSING for a classifier head that is about to be trained, and a
  shard-writing bar on save; peft trips a FutureWarning of transformers 5
  (`is_gradient_checkpointing`) on every LoRA attach.

    from noshow.system.quiet import silence_third_party, quiet_transformers
    silence_third_party()             # once, before peft / bitsandbytes are imported
    with quiet_transformers():
        model = AutoModel.from_pretrained(folder)
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


def silence_third_party() -> None:
    """Idempotent: lower the known-noisy loggers and ignore the known-harmless warnings."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' progress bars off and its log at errors only, restored afterwards."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
