"""What the benchmark scripts share: where their data comes from by default, their errors
and progress lines, and how they report (Markdown tables, the machine and library versions a
figure was measured with, the command that made it, sections appended to BENCHMARKS.md), so
every script writes its figures alike.

    from bench_common import append_benchmarks, describe_machine, format_table
"""

from __future__ import annotations

import gc
import math
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_FILE = REPO / "BENCHMARKS.md"
SHARED_DATA = REPO.parent / "shared" / "data" / "KaggleV2-May-2016.csv"
BUNDLED_MODEL = "smollm2-135m-instruct"

BENCHMARKS_HEADER = """# Benchmarks

Figures written by `scripts/bench_train.py` (training) and `scripts/bench_predict.py`
(inference), newest at the bottom. Each section names its GPU or CPU, library versions and
the exact command. Ratios (speed-ups) come from one process on one machine; figures from
different machines or versions do not compare.
"""


def format_value(value: Any, digits: int = 1) -> str:
    """Table cell text: '-' for missing, fixed decimals for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])


def describe_machine(device) -> dict[str, str]:
    """GPU (or CPU) name and the library versions that decide the speed."""
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in ("peft", "bitsandbytes"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # not installed or broken for this platform: say so, do not fail
            versions[name] = "not available"
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        where = f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return {"machine": where, "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def command_line(script: str, argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in ["python", f"scripts/{script}", *argv])


def append_benchmarks(path: Path, section: str) -> None:
    """Append a section to BENCHMARKS.md (created with a header if missing), atomically."""
    old = path.read_text() if path.exists() else BENCHMARKS_HEADER
    text = old.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def bench_section(
    title: str,
    device,
    script: str,
    argv: list[str],
    facts: list[str],
    table: str,
    *,
    machine_note: str = "",
    notes: tuple[str, ...] = (),
) -> str:
    """A BENCHMARKS.md section: `title` with the time, the machine (`machine_note` after it)
    and library versions, the `facts` lines, the command that made it, the `notes` lines,
    then the table."""
    from datetime import UTC, datetime

    machine = describe_machine(device)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {title} ({stamp})",
        "",
        f"- Machine: {machine['machine']}{machine_note}",
        f"- Versions: {machine['versions']}",
        *facts,
        f"- Command: `{command_line(script, argv)}`",
        *notes,
    ]
    return "\n".join([*lines, "", table])


def report(args, table: str, section: Callable[[], str]) -> None:
    """Print the table (stdout holds only it) and, unless --no-write, append `section()`
    to the benchmarks file."""
    print(table)
    if not args.no_write:
        append_benchmarks(Path(args.benchmarks_file), section())
        say(f"appended to {args.benchmarks_file}")


class BenchError(RuntimeError):
    """A benchmark cannot run as asked; the message says how to fix it."""


def default_data_source() -> str:
    """NOSHOW_DATA, then data/KaggleV2-May-2016.csv, then the shared real file, else synthetic."""
    from noshow.data.load import DATA_ENV_VAR, DEFAULT_DATA_PATH, SYNTHETIC_SOURCE

    for candidate in (os.environ.get(DATA_ENV_VAR), DEFAULT_DATA_PATH, SHARED_DATA):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return SYNTHETIC_SOURCE


def free_memory() -> None:
    """Drop the last run's model and cached blocks so the next measurement starts clean.
    Only on CUDA: a collection takes most of a second, and CPU memory is not measured."""
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def say(message: str) -> None:
    # Progress on stderr; stdout holds only the table.
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def add_run_arguments(p, smoke_help: str) -> None:
    """The options every bench script takes: --seed, --smoke, --no-write."""
    import argparse

    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help=smoke_help)
    p.add_argument(
        "--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone"
    )
    p.add_argument("--benchmarks-file", default=str(BENCHMARKS_FILE), help=argparse.SUPPRESS)


def load_bench_data(source: str):
    """`noshow.data.load.load_data(source)` for a bench: BenchError names what is wrong."""
    from noshow.data.clean import DataError
    from noshow.data.load import load_data

    try:
        return load_data(source)
    except DataError as e:
        raise BenchError(str(e)) from e
