"""Score a CSV of statements with an adapter: P(no-show) per row through the adapter's
calibration, optionally at your clinic's own no-show rate, and the prediction at the
adapter's threshold.

    python scripts/score.py adapters/classifier-smollm2-135m statements.csv -o scored.csv
    python scripts/score.py runs/<run_id> statements.csv --clinic-rate 0.15 -o scored.csv

The CSV needs a `statement` (or `Statement`) column; its other columns are kept. Adds
`p_no_show` and `predicted_no_show` (1 when P reaches the adapter's threshold, which moves with
the clinic's rate, so the predictions do not change). Writes to -o, or to stdout.
--clinic-rate: your clinic's no-show rate rescales every P(no-show) so that on average it
matches your clinic instead of the appointments the model was calibrated on; who ranks above
whom does not change (noshow.evaluation.recalibration.shift_prior).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHUNK = 64  # statements per scoring call: progress on stderr between them


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("adapter", help="an adapter folder or a finished run folder")
    p.add_argument("csv", help="a CSV file with a statement (or Statement) column")
    p.add_argument("-o", "--out", help="where to write the scored CSV (default: stdout)")
    p.add_argument(
        "--clinic-rate",
        type=float,
        default=None,
        help="your clinic's no-show rate as a share (e.g. 0.15): every P is moved to it",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd

    from noshow.inference.predict import PredictError, load_predictor

    a = parse_args(argv)
    try:
        table = pd.read_csv(a.csv)
    except (OSError, ValueError) as e:
        print(f"error: cannot read {a.csv}: {e}", file=sys.stderr)
        return 2
    column = next((c for c in ("statement", "Statement") if c in table.columns), None)
    if column is None:
        print(f"error: {a.csv} has no statement (or Statement) column.", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(a.adapter, device=a.device)
        threshold = predictor.threshold
        if a.clinic_rate is not None:  # refused before scoring when the rate is not a share
            threshold = float(predictor.at_clinic_rate([threshold], a.clinic_rate)[0])
        statements = table[column].fillna("").astype(str).tolist()
        p: list[float] = []
        for first in range(0, len(statements), CHUNK):
            chunk = statements[first : first + CHUNK]
            p += predictor.predict_proba(chunk, clinic_rate=a.clinic_rate)
            print(f"scored {len(p):,}/{len(statements):,}", file=sys.stderr)
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table["p_no_show"] = np.round(p, 6)
    table["predicted_no_show"] = (np.asarray(p) >= threshold).astype(int)
    if a.out:
        table.to_csv(a.out, index=False)
        print(a.out)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
