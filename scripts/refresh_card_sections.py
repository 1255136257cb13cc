"""Give shipped adapters the clinical sections of their model card (net benefit, capacity,
subgroups: noshow.inference.card_clinical) from rows scored after shipping: each adapter's
raw P on sampled time-split test rows, as `scripts/bench_quality.py --cache` writes them
(<cache>/scores_<adapter folder name>.csv: record_id, p). Only rows scored by every adapter
given are used, so the cards describe the same appointments. Rewrites card.json's
`clinical`, README.md (the card) and net_benefit.png, and records calibration.json's base
rate where it predates it; the weights and their hashes stay.

    python scripts/refresh_card_sections.py adapters/classifier-smollm2-135m \
        adapters/generative-smollm2-135m --cache /tmp/noshow-cards
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "KaggleV2-May-2016.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("adapters", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="folder of scores_<name>.csv")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--note", default="", help="how the rows were chosen and scored")
    args = parser.parse_args(argv)
    from noshow.data.load import load_data
    from noshow.data.splits import split_data
    from noshow.inference.card_refresh import record_base_rate, refresh_clinical_sections

    frame = split_data(load_data(args.data).frame, "time")
    test_ids = set(frame.loc[frame["split"] == "test", "record_id"])
    scored = {}
    for adapter in args.adapters:
        table = pd.read_csv(args.cache / f"scores_{adapter.name}.csv").drop_duplicates("record_id")
        scored[adapter] = dict(zip(table["record_id"].astype(int), table["p"], strict=True))
    common = set.intersection(*(set(s) for s in scored.values())) & test_ids
    note = args.note or (
        "a random sample of the time-split test appointments, scored on the CPU after shipping"
    )
    baselines: dict = {}
    for adapter in args.adapters:
        if (rate := record_base_rate(adapter, frame)) is not None:
            print(f"{adapter.name}: calibration base rate {rate:.4f} recorded")
        raw = {r: scored[adapter][r] for r in common}
        card = refresh_clinical_sections(adapter, frame, raw, note, baselines=baselines)
        print(f"{adapter.name}: {card['clinical']['net_benefit']['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
