"""Write the seed project's "modified" data set: one statement and a Yes/No label per row.

    python scripts/prepare_data.py                                   # discovery order, time split
    python scripts/prepare_data.py --source ../shared/data/KaggleV2-May-2016.csv \
        --split patient --out data/prepared --format parquet,csv
    python scripts/prepare_data.py --source synthetic --out /tmp/demo

Writes into --out (replaced as a whole once complete; never a half-written folder):
statements.parquet / statements.csv (record_id, Statement, NoShow, split), hf/ (a
`datasets.DatasetDict` with train/validation/test; `datasets.load_from_disk`) and
summary.json, then prints rows and no-show rate per split. The logic lives in
`noshow.data.export.export_statements`, which the app calls too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from noshow.data.clean import DataError  # noqa: E402
from noshow.data.export import (  # noqa: E402
    EXPORT_FORMATS,
    export_statements,
    format_export_summary,
)
from noshow.data.load import load_data  # noqa: E402
from noshow.data.splits import SPLIT_METHODS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--source",
        default=None,
        help="Kaggle CSV, Statement/NoShow CSV/Parquet, or 'synthetic' "
        "(default: NOSHOW_DATA > data/KaggleV2-May-2016.csv > synthetic)",
    )
    p.add_argument("--split", choices=SPLIT_METHODS, default="time")
    p.add_argument("--out", default="data/prepared", help="output folder (default data/prepared)")
    p.add_argument(
        "--format",
        default="parquet,csv",
        help=f"comma-separated, from {', '.join(EXPORT_FORMATS)} (the hf/ folder is always written)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the patient and random splits")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    try:
        loaded = load_data(args.source)
        summary = export_statements(loaded, args.split, args.out, formats=formats, seed=args.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_export_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
