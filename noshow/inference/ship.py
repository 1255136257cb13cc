"""Ship a finished run's adapter: copy it into `adapters/<name>/` with bf16 weights, a Hugging
Face model card (`README.md`) and a machine-readable `card.json` (both from
`noshow.inference.model_card`), so the app, the tests and the Hub all read the same folder.

    from noshow.inference.ship import ship_adapter
    ship_adapter("runs/<run_id>", "adapters/generative-smollm2-135m", command="python scripts/train.py ...")

    python scripts/ship_adapter.py runs/<run_id> adapters/generative-smollm2-135m --command "..."

What shipping does, in order, inside a hidden staging folder beside the destination (renamed
into place only when everything succeeded, so the app never lists a half-written adapter):
1. checks the run finished and has config.json and eval.json, and refuses synthetic data and
   local base models unless allowed (a shipped adapter must reload anywhere);
2. copies the PEFT files, tokenizer and `noshow.json`; converts every adapter weight to bf16
   (half the size; the CPU predictor casts back to fp32 when it merges) and refuses any file
   over 16 MiB: the repository and a Space carry these files without Git LFS; records each
   file's SHA-256, so a later edit of a shipped file shows;
3. computes the CI check figure (below) when the real Kaggle file is present;
4. writes `README.md` (the model card) and `card.json`.

The CI check figure is the shipped adapter's ROC-AUC on a fixed, small subsample of the
time-split test set of the real file, scored on the CPU through `load_predictor`:
`CI_ROWS` rows stratified by label, chosen in each class as the rows with the smallest
blake2b hash of `f"{seed}:{record_id}"` (independent of file order, pandas and numpy versions).
It is a fingerprint that catches a broken adapter, template or predictor, not an evaluation
(use the test metrics from training for that); tests/test_shipped_adapters.py recomputes it.
Each card records how long its scoring took on how many threads (`score_s`, `threads`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.inference.card_clinical import NET_BENEFIT_PNG, write_net_benefit
from noshow.inference.model_card import (
    RELIABILITY_PNG,
    base_model_info,
    build_card,
    render_model_card,
)
from noshow.system.files import replace_folder
from noshow.system.paths import REPO

SHIPPED_DIR = REPO / "adapters"
CARD_JSON = "card.json"
CARD_README = "README.md"
MIB = 1024 * 1024
MAX_FILE_BYTES = 16 * MIB
"""Largest file a shipped adapter may hold: a SmolLM2-135M adapter (r16, all linear layers)
fits with room to spare; each card records its weights' size (`weights.bytes`)."""
CI_ROWS = 200
CI_SEED = 0
CI_BATCH = 16
CI_TOLERANCE = 0.005
"""How far a recomputed CI figure may drift (CPU math differs slightly between machines)."""
REAL_DATA_NAME = "KaggleV2-May-2016.csv"


class ShipError(RuntimeError):
    """The run cannot be shipped as it is; the message says why and what to do."""


# ----------------------------------------------------------------------------- CI check


def find_real_data() -> Path | None:
    """The real Kaggle file: NOSHOW_DATA (when it names that file), `<repo>/data/`, then
    `../shared/data/` beside the repository; None when absent."""
    candidates = []
    env = os.environ.get("NOSHOW_DATA", "").strip()
    if env and Path(env).name == REAL_DATA_NAME:
        candidates.append(Path(env).expanduser())
    candidates += [REPO / "data" / REAL_DATA_NAME, REPO.parent / "shared" / "data" / REAL_DATA_NAME]
    return next((p for p in candidates if p.is_file()), None)


def _hash_key(seed: int, record_id: Any) -> str:
    return hashlib.blake2b(f"{seed}:{int(record_id)}".encode(), digest_size=8).hexdigest()


def ci_subsample(frame: pd.DataFrame, rows: int = CI_ROWS, seed: int = CI_SEED) -> pd.DataFrame:
    """The CI rows of a split frame (`split`, `record_id`, `no_show` columns): `rows` test rows,
    each class in its test-set share (largest remainder), the smallest hashes of
    `seed:record_id` within each class; ordered by record_id."""
    test = frame[frame["split"] == "test"]
    if len(test) < rows:
        raise ShipError(f"The test split has {len(test)} rows, fewer than the {rows} CI rows.")
    counts = test["no_show"].value_counts().sort_index()
    want = counts / len(test) * rows
    take = np.floor(want).astype(int)
    short = rows - int(take.sum())
    for label in (want - take).sort_values(ascending=False).index[:short]:
        take[label] += 1
    keys = test["record_id"].map(lambda r: _hash_key(seed, r))
    parts = [
        test.loc[keys[test["no_show"] == label].sort_values().index[:n]]
        for label, n in take.items()
    ]
    return pd.concat(parts).sort_values("record_id")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (card.json records one per shipped file and for the data file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_ci_rows(
    data_path: str | Path, rows: int = CI_ROWS, seed: int = CI_SEED
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(CI rows, a description of them) from the real Kaggle file, time split."""
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    loaded = load_data(data_path)
    if loaded.kind != "kaggle":
        raise ShipError(
            f"{data_path} is {loaded.kind} data; the CI check needs the Kaggle file "
            f"{REAL_DATA_NAME}."
        )
    sample = ci_subsample(split_data(loaded.frame, "time"), rows, seed)
    ids = ",".join(str(int(r)) for r in sample["record_id"])
    info = {
        "data_file": Path(data_path).name,
        "data_sha256": sha256_file(Path(data_path)),
        "split": "time",
        "subset": "test",
        "rows": len(sample),
        "positives": int(sample["no_show"].sum()),
        "seed": seed,
        "selection": "stratified by label; per class the smallest blake2b(f'{seed}:{record_id}')",
        "record_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
    }
    return sample, info


def score_ci_check(
    adapter_dir: str | Path,
    data_path: str | Path,
    rows: int = CI_ROWS,
    seed: int = CI_SEED,
    sample: tuple[pd.DataFrame, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score the CI rows with the adapter through `load_predictor` on the CPU; the CI record."""
    import torch
    from sklearn.metrics import roc_auc_score

    from noshow.inference.predict import load_predictor

    frame, info = sample or load_ci_rows(data_path, rows, seed)
    t0 = time.time()
    # fp32 weights: the card's figure must not depend on whether the CPU has native bf16.
    predictor = load_predictor(adapter_dir, device="cpu", cpu_weights="float32")
    load_s = time.time() - t0
    statements = frame["statement"].tolist()
    t0 = time.time()
    # Small batches: on a CPU one 200-row batch pads more and runs ~1.6x slower than these.
    p = np.asarray(
        [
            q
            for i in range(0, len(statements), CI_BATCH)
            for q in predictor.predict_proba(statements[i : i + CI_BATCH])
        ],
        dtype=float,
    )
    score_s = time.time() - t0
    return {
        **info,
        "roc_auc": round(float(roc_auc_score(frame["no_show"].to_numpy(), p)), 6),
        "mean_p": round(float(p.mean()), 6),
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "load_s": round(load_s, 1),
        "score_s": round(score_s, 1),
        "tolerance": CI_TOLERANCE,
    }


# ----------------------------------------------------------------------------- weights


def convert_weights_to_bf16(src: Path, dst: Path) -> dict[str, Any]:
    """Rewrite one safetensors file with every floating tensor in bf16; its size and dtypes."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    out = {
        k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
        for k, v in tensors.items()
    }
    save_file(out, str(dst), metadata={"format": "pt", **metadata})
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in out.values()})
    return {"bytes": dst.stat().st_size, "tensors": len(out), "dtypes": dtypes}


def _check_size(path: Path, limit: int | None) -> None:
    size = path.stat().st_size
    if limit is not None and size > limit:
        what = "in bf16 " if path.suffix == ".safetensors" else ""
        raise ShipError(
            f"{path.name} is {size / MIB:.1f} MiB {what}, over the {limit / MIB:.0f} MiB "
            "limit for shipped adapters (the repository and a Space carry them without Git "
            "LFS). Ship a smaller adapter (lower LoRA r, fewer target modules, or the 135M "
            "base: an 8B adapter with r16 on all linear layers is ~80 MiB), or publish it "
            "on the Hugging Face Hub instead."
        )


# ----------------------------------------------------------------------------- shipping


def _load_run(run_dir: Path) -> tuple[Path, dict, dict, dict]:
    from noshow.inference.predict import PredictError, read_adapter_meta
    from noshow.training import runs

    if not run_dir.is_dir():
        raise ShipError(f"Run folder not found: {run_dir}")
    status = runs.read_status(run_dir)
    adapter = runs.adapter_dir(run_dir)
    if adapter is None:
        raise ShipError(
            f"{run_dir} has no finished adapter (state {status.get('state')!r}): ship a "
            "completed run."
        )
    try:
        meta = read_adapter_meta(adapter)
        config = runs.read_config(run_dir)
        report = runs.read_eval(run_dir)
    except (PredictError, runs.RunError) as e:
        raise ShipError(str(e)) from e
    if not report:
        raise ShipError(f"{run_dir} has no eval.json: the model card needs its test metrics.")
    return adapter, meta, config, report


def ship_adapter(
    run_dir: str | Path,
    dest: str | Path,
    *,
    command: str | None = None,
    data_path: str | Path | None = None,
    find_data: bool = True,
    ci_rows: int = CI_ROWS,
    ci_seed: int = CI_SEED,
    max_file_bytes: int | None = MAX_FILE_BYTES,
    allow_synthetic: bool = False,
    allow_local_base: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Copy the finished adapter of `run_dir` into `dest` (see the module docstring); return
    `dest`. `data_path` is the real Kaggle file for the CI check (default: `find_real_data()`
    when `find_data`; the check is skipped with a note when there is none)."""
    run_dir, dest = Path(run_dir), Path(dest)
    adapter, meta, config, report = _load_run(run_dir)
    if report.get("synthetic") and not allow_synthetic:
        raise ShipError(
            f"{run_dir} was trained on synthetic data; shipped adapters come from the real "
            "Kaggle file (pass allow_synthetic / --allow-synthetic for a demo)."
        )
    base = base_model_info(str(meta["base_model"]))
    if not base["portable"] and not allow_local_base:
        raise ShipError(
            f"The base model {meta['base_model']!r} is a local folder, so the shipped adapter "
            "would not load elsewhere: train from a preset or a hub id (pass allow_local_base "
            "/ --allow-local-base for tests)."
        )
    if not list(adapter.glob("*.safetensors")):
        raise ShipError(f"{adapter} holds no .safetensors weights; re-save the adapter.")
    if data_path is None and find_data:
        data_path = find_real_data()

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Hidden staging root beside dest: same file system for the rename, and list_adapters
    # never takes it for an adapter (the adapter sits one level down, under dest's name).
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    staging = scratch / dest.name
    try:
        staging.mkdir()
        dtypes: set[str] = set()
        for src in sorted(adapter.iterdir()):
            if src.is_dir() or src.name in (CARD_README, CARD_JSON):
                continue  # PEFT's template README is replaced by our card
            dst = staging / src.name
            if src.suffix == ".safetensors":
                info = convert_weights_to_bf16(src, dst)
                dtypes.update(info["dtypes"])
            else:
                shutil.copyfile(src, dst)
            _check_size(dst, max_file_bytes)
        _rewrite_adapter_config(staging, base)
        _write_reliability(run_dir, staging / RELIABILITY_PNG)
        write_net_benefit(report, staging / NET_BENEFIT_PNG)
        files = {  # as shipped, so a later edit of any of them shows
            p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(staging.iterdir())
        }
        weights = {
            "dtypes": sorted(dtypes),
            "bytes": sum(v["bytes"] for k, v in files.items() if k.endswith(".safetensors")),
            "files": files,
        }
        ci = None
        if data_path is not None:
            log(f"CI check: scoring {ci_rows} test rows of {Path(data_path).name} on the CPU ...")
            ci = score_ci_check(staging, data_path, ci_rows, ci_seed)
            log(f"CI check: ROC-AUC {ci['roc_auc']:.4f} ({ci['score_s']} s)")
        else:
            log(
                f"warning: the real data file ({REAL_DATA_NAME}) was not found, so the card has "
                "no CI check figure and tests/test_shipped_adapters.py will fail for it; pass "
                "--data."
            )
        card = build_card(run_dir, dest.name, meta, config, report, base, weights, command, ci)
        (staging / CARD_JSON).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        render_model_card(card).save(staging / CARD_README)
        for path in staging.iterdir():
            path.chmod(0o644)  # save_pretrained leaves weights private (0600)
        replace_folder(staging, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"Shipped {run_dir.name} -> {dest} ({weights['bytes'] / MIB:.1f} MiB of weights)")
    return dest


def _write_reliability(run_dir: Path, path: Path) -> None:
    """The card's reliability diagram (test rows, before and after calibration) from the
    run's predictions; nothing when the run kept no uncalibrated scores."""
    from noshow.evaluation.calibration import plot_reliability
    from noshow.training import runs

    preds = runs.read_predictions(run_dir)
    if preds is None or "p_no_show_raw" not in preds.columns:
        return
    test = preds[preds["split"] == "test"]
    figure = plot_reliability(
        {"this adapter": (test["label"], test["p_no_show_raw"], test["p_no_show"])}
    )
    figure.savefig(path, dpi=90)


def _rewrite_adapter_config(folder: Path, base: Mapping[str, Any]) -> None:
    """Point adapter_config.json at the hub id instead of the training machine's cache path,
    so plain `peft` users find the base (noshow reads the base from noshow.json)."""
    path = folder / "adapter_config.json"
    if not path.exists() or not base["hub_id"]:
        return
    with contextlib.suppress(ValueError):
        cfg = json.loads(path.read_text())
        cfg["base_model_name_or_path"] = base["hub_id"]
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def shipped_adapters(root: str | Path = SHIPPED_DIR) -> list[Path]:
    """Adapter folders under `root` (hidden staging folders excluded), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_card(adapter_dir: str | Path) -> dict[str, Any]:
    """card.json of a shipped adapter; ShipError when missing or unreadable."""
    path = Path(adapter_dir) / CARD_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShipError(
            f"{path} is missing: ship adapters with scripts/ship_adapter.py, which writes it."
        ) from None
    except (OSError, ValueError) as e:
        raise ShipError(f"cannot read {path}: {e}") from e
