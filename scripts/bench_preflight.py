"""The preflight's estimate against the run it estimates: for a configuration given with
scripts/train.py's options, the preflight measures (a short run of the recipe, scaled to the
run), then the run itself trains, and the two are printed side by side: minutes, the phases,
peak memory. The goal (BENCHMARKS.md) is an estimate within 1.5x of the run.

    python scripts/bench_preflight.py --data ../shared/data/KaggleV2-May-2016.csv
    python scripts/bench_preflight.py --model llama-3.1-8b-random --approach generative \
        --max-steps 60 --batch-size 16 --max-eval-rows 512 --data ...

The preflight's cache is bypassed (a fresh measurement every time); the run trains into a
scratch folder. Prints one Markdown row; --write appends it to BENCHMARKS.md with the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noshow.config import add_arguments, config_from_args  # noqa: E402

COLUMNS = (
    "model",
    "approach",
    "steps x batch",
    "estimated min",
    "took min",
    "took / estimated",
    "estimated peak GB",
    "measured peak GB",
)


def measure(config) -> dict:
    """The preflight's answer (measured now) and the run's wall time and peak memory."""
    import torch

    from noshow.data.load import load_data
    from noshow.data.splits import choose_split
    from noshow.training import preflight
    from noshow.training.loop import total_steps_for
    from noshow.training.recipe import train

    rows = choose_split(load_data(config.data.source), config.data.split).frame["split"]
    counts = rows.value_counts().to_dict()
    estimate = preflight.estimate_resources(config, counts, measure=True, fresh=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    started = time.perf_counter()
    result = train(config)
    took = time.perf_counter() - started
    if result.state != "completed":
        raise SystemExit(f"The run ended {result.state}: {result.error}")
    peak = (torch.cuda.max_memory_allocated() - before) / 1e9 if cuda else None
    n_train = min(counts.get("train", 0), config.data.max_train_rows or 10**12)
    return {
        "estimate": estimate,
        "took_s": took,
        "peak_gb": peak,
        "steps": total_steps_for(config, n_train),
        "run_timing": (result.metrics or {}).get("timing") or {},
    }


def table_row(config, m: dict) -> list[str]:
    est = m["estimate"]
    minutes = est.get("minutes")
    ratio = m["took_s"] / (minutes * 60) if minutes else None
    return [
        config.train.model,
        config.train.approach,
        f"{m['steps']} x {config.train.batch_size}",
        "-" if minutes is None else f"{minutes:.2f}",
        f"{m['took_s'] / 60:.2f}",
        "-" if ratio is None else f"{ratio:.2f}x",
        f"{est.get('gpu_mem_gb') or est.get('mem_gb') or 0:.1f}",
        "-" if m["peak_gb"] is None else f"{m['peak_gb']:.1f}",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    p.add_argument("--write", action="store_true", help="append the row to BENCHMARKS.md")
    args = p.parse_args(argv)
    config = config_from_args(args)
    with tempfile.TemporaryDirectory(prefix="noshow-preflight-run-") as out:
        config.train.output_dir = out
        m = measure(config)
    from bench_common import append_benchmarks, describe_machine, format_table

    phases = ", ".join(f"{k} {v:.0f} s" for k, v in (m["estimate"].get("phases_s") or {}).items())
    table = format_table(COLUMNS, [table_row(config, m)])
    print(table)
    print(f"estimated phases: {phases}")
    timing = m["run_timing"]  # what the run's own evaluation measured, beside the estimate
    print(
        "the run: "
        + ", ".join(f"{k} {v:.1f}" for k, v in timing.items() if isinstance(v, (int, float)))
    )
    if args.write:
        import torch

        machine = describe_machine(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = "python scripts/bench_preflight.py " + " ".join(argv or sys.argv[1:])
        append_benchmarks(
            Path(__file__).resolve().parents[1] / "BENCHMARKS.md",
            f"\n### Preflight estimate vs the run ({machine['device']}, {stamp})\n\n"
            f"`{command}`\n\n{table}\n\nEstimated phases: {phases}.\n",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
