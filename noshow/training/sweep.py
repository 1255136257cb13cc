"""The quality sweep: many training runs on a time budget, chosen on validation only.

Trials come in order of importance (`plan`): the defaults of both approaches on both splits,
then, on the time split, one setting changed at a time around the defaults (learning rate,
epochs, LoRA rank, batch), then the best value of each setting together. Each finished trial
is one line of the sweep's table (`sweep.jsonl` in the sweep's folder) with its VALIDATION
figures; a trial already in the table is not run again, so a sweep resumes where the last
one stopped (a preemptible machine, a short GPU lease). The choice per approach and split is
made on validation ROC-AUC alone; only the chosen trial's test figures are read (each run's
final evaluation scores the test rows too, but the sweep looks at them once, for the choice).

    from noshow.training.sweep import choose, read_table, run_sweep
    run_sweep("data/KaggleV2-May-2016.csv", Path("runs-sweep"), budget_s=900)
    choose(read_table(out), out)   # {(approach, split): the chosen trial, its test figures}
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noshow.config import APPROACHES, RunConfig

TABLE = "sweep.jsonl"
SPLITS = ("time", "patient")
# One setting changed at a time around the defaults (time split): the values tried.
SEARCH: dict[str, tuple[Any, ...]] = {
    "lr": (5e-4, 2e-3),
    "epochs": (2.0, 3.0),
    "lora_r": (8, 64),
    "batch_size": (128, 512),
}


@dataclass(frozen=True)
class Trial:
    """One training run of the sweep: an approach, a split and what differs from the
    defaults."""

    approach: str
    split: str
    changes: tuple[tuple[str, Any], ...] = ()
    stage: str = "defaults"

    @property
    def key(self) -> str:
        """A stable name: the same trial always has the same key (the table is keyed by it)."""
        parts = [self.approach, self.split] + [f"{k}={v:g}" if isinstance(v, float) else
                                               f"{k}={v}" for k, v in self.changes]  # fmt: skip
        return "/".join(parts)

    def config(self, data: str, out: Path, base: RunConfig | None = None) -> RunConfig:
        """The run's config: `base` (default: the project's defaults) with the changes."""
        d = (base or RunConfig()).to_dict()
        d["data"].update(source=data, split=self.split)
        d["train"].update(approach=self.approach, output_dir=str(out / "runs"))
        for name, value in self.changes:
            if name == "lora_r":  # alpha follows r at the defaults' ratio (the seed's scale)
                ratio = d["lora"]["alpha"] / d["lora"]["r"]
                d["lora"].update(r=value, alpha=int(value * ratio))
            else:
                d["train"][name] = value
        return RunConfig.from_dict(d)


def plan(table: Iterable[dict[str, Any]] = ()) -> list[Trial]:
    """Trials most important first. The last stage combines, per approach, the best value
    of each setting found so far on validation (so it grows as the table fills)."""
    trials = [Trial(a, s) for s in SPLITS for a in APPROACHES]
    for name, values in SEARCH.items():  # both approaches advance together on a budget
        for value in values:
            trials += [Trial(a, "time", ((name, value),), "search") for a in APPROACHES]
    rows = [r for r in table if r.get("state") == "completed"]
    for approach in APPROACHES:
        best = best_changes(rows, approach)
        if len(best) > 1:  # two or more settings beat the defaults: try them together
            combined = tuple(sorted(best.items()))
            trials.append(Trial(approach, "time", combined, "combined"))
            trials.append(Trial(approach, "patient", combined, "combined"))
    return trials


def best_changes(rows: list[dict[str, Any]], approach: str) -> dict[str, Any]:
    """{setting: value} of each one-setting trial that beat the defaults on validation."""
    default = _validation_auc(rows, f"{approach}/time")
    best: dict[str, tuple[float, Any]] = {}
    for r in rows:
        if r["approach"] != approach or r["split"] != "time" or len(r["changes"]) != 1:
            continue
        (name, value), auc = r["changes"][0], r["validation"].get("roc_auc")
        if auc is None or default is None or auc <= default:
            continue
        if name not in best or auc > best[name][0]:
            best[name] = (auc, value)
    return {name: value for name, (_, value) in best.items()}


def _validation_auc(rows: list[dict[str, Any]], key: str) -> float | None:
    for r in rows:
        if r["key"] == key:
            return r["validation"].get("roc_auc")
    return None


def read_table(out: Path) -> list[dict[str, Any]]:
    path = out / TABLE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(out: Path, row: dict[str, Any]) -> None:
    with (out / TABLE).open("a") as f:  # one line per trial: a crash loses at most the line
        f.write(json.dumps(row) + "\n")


def trial_row(trial: Trial, result, seconds: float, out: Path) -> dict[str, Any]:
    """The table's line for a finished trial: its validation figures and where its run is
    (relative to the sweep's folder, so a table copied off the GPU machine still finds it)."""
    m = result.metrics or {}
    run_dir = Path(result.run_dir)
    with contextlib.suppress(ValueError):
        run_dir = run_dir.resolve().relative_to(out.resolve())
    val = m.get("validation") or {}
    return {
        "key": trial.key,
        "approach": trial.approach,
        "split": trial.split,
        "changes": [list(c) for c in trial.changes],
        "stage": trial.stage,
        "state": result.state,
        "error": result.error,
        "run_dir": str(run_dir),
        "seconds": round(seconds, 1),
        "validation": {
            "roc_auc": (val.get("model") or {}).get("roc_auc"),
            "ece": (val.get("model") or {}).get("ece"),
            "baseline_roc_auc": (val.get("baseline") or {}).get("roc_auc"),
        },
    }


@dataclass
class SweepProgress:
    """What the sweep did this time (the table holds everything)."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)


def run_sweep(
    data: str,
    out: Path,
    *,
    budget_s: float,
    stages: tuple[str, ...] = ("defaults", "search", "combined"),
    base: RunConfig | None = None,
    train: Callable | None = None,
    log: Callable[[str], None] = print,
) -> SweepProgress:
    """Run the plan's trials that are not in the table yet, in order, while the budget
    allows one more (judged by the slowest trial so far)."""
    if train is None:
        from noshow.training.recipe import train
    out.mkdir(parents=True, exist_ok=True)
    progress = SweepProgress()
    started, slowest = time.time(), 0.0
    while True:
        table = read_table(out)
        done = {r["key"] for r in table}
        todo = [t for t in plan(table) if t.stage in stages and t.key not in done]
        progress.skipped = sorted(done)
        if not todo:
            return progress
        trial = todo[0]
        if time.time() - started + slowest > budget_s:
            progress.not_started = [t.key for t in todo]
            log(f"[sweep] budget reached: {len(todo)} trials not started ({todo[0].key} next)")
            return progress
        log(f"[sweep] {trial.key} ({trial.stage})")
        t0 = time.time()
        result = train(trial.config(data, out, base))
        seconds = time.time() - t0
        slowest = max(slowest, seconds)
        row = trial_row(trial, result, seconds, out)
        _append(out, row)
        progress.ran.append(trial.key)
        auc = row["validation"]["roc_auc"]
        log(f"[sweep] {trial.key}: {result.state}, validation ROC-AUC {auc}, {seconds:.0f} s")


def choose(table: list[dict[str, Any]], out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (approach, split): the completed trial with the best validation ROC-AUC, with
    its test figures read from its run's eval.json (the only test figures the sweep reads).
    `out` is the sweep's folder, where relative run folders are found."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in table:
        auc = r["validation"].get("roc_auc")
        if r["state"] != "completed" or auc is None:
            continue
        slot = (r["approach"], r["split"])
        if slot not in chosen or auc > chosen[slot]["validation"]["roc_auc"]:
            chosen[slot] = r
    for slot, r in chosen.items():
        chosen[slot] = {**r, "test": read_test_figures(run_folder(r, out))}
    return chosen


def run_folder(row: dict[str, Any], out: Path) -> Path:
    """Where a trial's run folder is: the table keeps it relative to the sweep's folder; a
    table from another machine may still hold its absolute path there (then: runs/<id>)."""
    path = Path(row["run_dir"])
    if not path.is_absolute():
        return out / path
    return path if path.exists() else out / "runs" / path.name


def read_test_figures(run_dir: Path) -> dict[str, Any]:
    """Test ROC-AUC with its interval for the adapter, the tuned baseline, the hybrid and the
    stacked model, and the calibration error (also recalibrated day by day), from a run's
    eval.json."""
    path = run_dir / "eval.json"
    if not path.exists():
        return {}
    m = json.loads(path.read_text())

    def auc(part: str) -> dict[str, Any]:
        d = m.get(part) or {}
        return {k: d.get(k) for k in ("roc_auc", "roc_auc_low", "roc_auc_high")}

    return {
        "model": auc("model"),
        "baseline": auc("baseline"),
        "hybrid": auc("hybrid"),
        "stacked": auc("stacked"),
        "ece": (m.get("model") or {}).get("ece"),
        "ece_uncalibrated": (m.get("model_uncalibrated") or {}).get("ece"),
        "ece_rolling": (
            ((m.get("recalibration") or {}).get("models") or {}).get("model", {}).get("ece", {})
        ).get("rolling"),
    }
