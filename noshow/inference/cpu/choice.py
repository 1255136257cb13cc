"""Which engine scores on this CPU: decided from the CPU's features and a measured table,
never from a few timings at load (timed under a passing load, that choice picked fp32 on a
CPU where bf16 was twice as fast).

The CPU's kind comes from its flags (`cpu_kind`): `amx` (AMX tiles), `avx512_bf16` (native
bf16 dot products, no AMX: AMD Zen 4, Intel Cooper Lake), `avx512_vnni` (int8 dot products,
no bf16), `avx512`, `avx2` (e.g. AMD Zen 2/3 VMs), `other`. `engine_table.json` beside this
module holds, per kind and approach, each engine's measured p50 per statement and drift
against fp32 (written by `scripts/bench_engines.py --write-table`). `choose_engine` keeps
the engines within the drift bound (`MAX_DP`, `MAX_AUC_DRIFT`) that can run here and takes
the fastest, an exact (fp32) engine winning within `TIE`; a kind the table lacks gets the
hand-written fp32 path, the exact reference, and the log says how to measure it.
`NOSHOW_CPU_ENGINE` names an engine and skips the table (`NOSHOW_CPU_WEIGHTS`, the older
name, still maps float32 / bfloat16 to the hand-written forms).

    from noshow.inference.cpu.choice import choose_engine
    choice = choose_engine("generative")
    choice.engine, choice.reason    # 'onnxruntime-fp32', 'fastest within the drift bound ...'
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noshow.inference.cpu.engines import ENGINES, why_unavailable
from noshow.inference.cpu.features import cpu_flags, cpu_kind

log = logging.getLogger("noshow.inference")
TABLE = Path(__file__).with_name("engine_table.json")
ENV_VAR = "NOSHOW_CPU_ENGINE"
MAX_DP = 0.01  # largest change in P(no-show) against fp32 that an engine may make
MAX_AUC_DRIFT = 0.002  # largest change in ROC-AUC against fp32
TIE = 0.05  # an exact engine wins unless a faster one beats it by more than this
FALLBACK = "fused-fp32"
OLD_NAMES = {
    "float32": "fused-fp32",
    "fp32": "fused-fp32",
    "float32-onednn": "fused-fp32",
    "bfloat16": "fused-bf16",
    "bf16": "fused-bf16",
}


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    kind: str
    reason: str

    def describe(self) -> str:
        """One line for the log and the Compare tab's details."""
        return f"{ENGINES[self.engine].label} on this {self.kind} CPU: {self.reason}"


def load_table(path: Path = TABLE) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def within_bound(row: dict[str, Any]) -> bool:
    dp, auc = row.get("max_dp"), row.get("auc_drift")
    return dp is not None and dp <= MAX_DP and (auc is None or abs(auc) <= MAX_AUC_DRIFT)


def pick(
    rows: list[dict[str, Any]],
    available: Callable[[str], str | None] = why_unavailable,
    tie: float = TIE,
) -> tuple[str, str] | None:
    """(engine, reason) from one kind's measured rows for one approach, or None when no row
    is usable: within the drift bound, can run here, fastest at one statement; an exact
    engine within `tie` of the fastest wins."""
    bounded = [
        r for r in rows if r.get("engine") in ENGINES and r.get("p50_ms") and within_bound(r)
    ]
    missing = {r["engine"]: why for r in bounded if (why := available(r["engine"]))}
    usable = [r for r in bounded if r["engine"] not in missing]
    if not usable:
        return None
    best = min(r["p50_ms"] for r in usable)
    ranked = sorted(usable, key=lambda r: (not ENGINES[r["engine"]].exact, r["p50_ms"]))
    exact = [r for r in ranked if ENGINES[r["engine"]].exact and r["p50_ms"] <= best * (1 + tie)]
    row = exact[0] if exact else min(usable, key=lambda r: r["p50_ms"])
    reason = (
        f"fastest within the drift bound in the measured table ({row['p50_ms']:.0f} ms per "
        f"statement there, max |dP| {row['max_dp']:.4f} against fp32; {row.get('measured', '')})"
    )
    return row["engine"], reason + skipped(bounded, missing, row["p50_ms"])


def skipped(rows: list[dict[str, Any]], missing: dict[str, str], than: float) -> str:
    """'; faster in the table but cannot run here: ...' naming the engines within the bound
    that the table ranks faster than `than` ms and that cannot run here (a package missing),
    so the log says what this machine loses; '' when none."""
    lost = [
        f"{r['engine']} ({missing[r['engine']]})"
        for r in rows
        if r["engine"] in missing and r["p50_ms"] < than
    ]
    return f"; faster in the table but cannot run here: {', '.join(lost)}" if lost else ""


def choose_engine(
    approach: str,
    *,
    requested: str | None = None,
    flags: Iterable[str] | None = None,
    table: dict[str, Any] | None = None,
    available: Callable[[str], str | None] = why_unavailable,
) -> EngineChoice:
    """The engine for `approach` on this CPU (see the module docstring). `requested` (else
    NOSHOW_CPU_ENGINE, else NOSHOW_CPU_WEIGHTS) names one; 'auto' or nothing consults the
    table. ValueError for an unknown name or one that cannot run here."""
    kind = cpu_kind(cpu_flags() if flags is None else flags)
    value = requested or os.environ.get(ENV_VAR) or os.environ.get("NOSHOW_CPU_WEIGHTS") or "auto"
    value = OLD_NAMES.get(value.strip().lower(), value.strip().lower())
    if value != "auto":
        if value not in ENGINES:
            raise ValueError(f"{ENV_VAR}={value!r}: use auto or one of {', '.join(ENGINES)}.")
        why = why_unavailable(value, emulated_ok=True)
        if why:
            raise ValueError(f"{ENV_VAR}={value}: {why}.")
        return EngineChoice(value, kind, "set by name")
    rows = (load_table() if table is None else table).get(kind, {}).get(approach, [])
    chosen = pick(rows, available)
    if chosen is None:
        bounded = [r for r in rows if r.get("engine") in ENGINES and r.get("p50_ms")]
        bounded = [r for r in bounded if within_bound(r)]
        missing = {r["engine"]: why for r in bounded if (why := available(r["engine"]))}
        chosen = (
            FALLBACK,
            f"no measured row for {kind} CPUs fits here: the exact fp32 path (measure this "
            f"CPU with python scripts/bench_engines.py --write-table)"
            + skipped(bounded, missing, float("inf")),
        )
    if "cannot run here" in chosen[1]:  # a package missing: say so where people look
        log.warning("%s: %s", approach, chosen[1].split("; ")[-1])
    return EngineChoice(chosen[0], kind, chosen[1])
