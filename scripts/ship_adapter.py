"""Ship a finished run's adapter into `adapters/<name>/` with bf16 weights, a model card
(README.md) and card.json, including the CI check figure when the real data file is present.

    python scripts/ship_adapter.py runs/<run_id> adapters/generative-smollm2-135m \
        --command "python scripts/train.py --approach generative --data ... --quantize 4bit"
    python scripts/ship_adapter.py runs/<run_id> adapters/classifier-smollm2-135m --data ../shared/data/KaggleV2-May-2016.csv

The CI check scores a fixed 200-row subsample of the time-split test set on the CPU (the
card records how long it took). Everything happens in a hidden staging folder that is
renamed into place at the end. See noshow/inference/ship.py (shipping) and
noshow/inference/model_card.py (the card).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noshow.inference.ship import CI_ROWS, CI_SEED, MAX_FILE_BYTES, MIB  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dir", help="a completed run folder (runs/<run_id>)")
    p.add_argument("dest", help="where the adapter goes, e.g. adapters/generative-smollm2-135m")
    p.add_argument(
        "--command", default=None, help="the command that trained it (default: from config.json)"
    )
    p.add_argument(
        "--data", default=None, help="the real Kaggle CSV for the CI check (default: found)"
    )
    p.add_argument("--skip-ci-check", action="store_true", help="ship without the CI figure")
    p.add_argument("--ci-rows", type=int, default=CI_ROWS)
    p.add_argument("--ci-seed", type=int, default=CI_SEED)
    p.add_argument(
        "--max-file-mib", type=float, default=MAX_FILE_BYTES / MIB, help="largest file allowed"
    )
    p.add_argument("--allow-synthetic", action="store_true", help="demo: synthetic training data")
    p.add_argument("--allow-local-base", action="store_true", help="tests: a local base model")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from noshow.data.clean import DataError
    from noshow.inference.predict import PredictError
    from noshow.inference.ship import ShipError, ship_adapter

    a = parse_args(argv)
    try:
        ship_adapter(
            a.run_dir,
            a.dest,
            command=a.command,
            data_path=None if a.skip_ci_check else a.data,
            find_data=not a.skip_ci_check,
            ci_rows=a.ci_rows,
            ci_seed=a.ci_seed,
            max_file_bytes=int(a.max_file_mib * MIB),
            allow_synthetic=a.allow_synthetic,
            allow_local_base=a.allow_local_base,
            log=lambda m: print(m, file=sys.stderr),
        )
    except (ShipError, DataError, PredictError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(Path(a.dest) / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
