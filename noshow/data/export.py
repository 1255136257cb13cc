"""Write the prepared data set in the seed project's "modified" form (record_id, Statement,
NoShow Yes/No, split) for people, spreadsheets and `datasets`.

    from noshow.data.export import export_statements, format_export_summary
    summary = export_statements(loaded, "time", "data/prepared")
    print(format_export_summary(summary))

The folder is written atomically (temporary folder, then rename). Its CSV is for people and
spreadsheets: a text cell that a spreadsheet would run as a formula (starting with =, +, -,
@, tab or CR) gets a leading apostrophe, as in every CSV the app writes; the Parquet file and
`hf/` keep the exact text.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from noshow.data.clean import SPLIT_NAMES, DataError
from noshow.data.load import LoadedData
from noshow.data.splits import split_data
from noshow.data.statements import TEMPLATE_VERSION
from noshow.system.files import escape_spreadsheet_cell, replace_folder

EXPORT_FORMATS = ("parquet", "csv")
_EXPORT_MARKER = "summary.json"


def export_statements(
    loaded: LoadedData,
    split: Literal["time", "patient", "random"],
    out_dir: str | Path,
    *,
    formats: Sequence[str] = EXPORT_FORMATS,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the seed's "modified" data set (record_id, Statement, NoShow Yes/No, split) as
    statements.parquet / statements.csv plus a `datasets.DatasetDict` in `hf/` (one split
    per part) and `summary.json`, all into `out_dir` at once: files go to a temporary folder
    that replaces `out_dir` only when complete. Returns the summary dict.

    An existing `out_dir` is replaced only if it is empty or was written by this function,
    so a mistyped path never wipes unrelated files."""
    import datasets

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise DataError(
            f"Unknown export format(s) {', '.join(unknown) or '(none given)'}: choose from "
            f"{', '.join(EXPORT_FORMATS)}."
        )
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    frame = split_data(loaded.frame, split, seed=seed)
    table = pd.DataFrame(
        {
            "record_id": frame["record_id"].to_numpy(dtype=np.int64),
            "Statement": frame["statement"].astype(str).to_numpy(),
            "NoShow": np.where(frame["no_show"].to_numpy() == 1, "Yes", "No"),
            "split": frame["split"].astype(str).to_numpy(),
        }
    )
    parts = {name: table[table["split"] == name] for name in SPLIT_NAMES}
    files = [f"statements.{f}" for f in formats] + ["hf/", _EXPORT_MARKER]
    summary: dict[str, Any] = {
        "written_by": "noshow.data.export.export_statements",
        "source": loaded.source,
        "kind": loaded.kind,
        "is_synthetic": loaded.is_synthetic,
        "split_method": split if "split" not in loaded.frame.columns else "file",
        "seed": seed,
        "template_version": TEMPLATE_VERSION if loaded.has_features else None,
        "rows": {name: len(part) for name, part in parts.items()},
        "no_show_rate": {
            name: (float((part["NoShow"] == "Yes").mean()) if len(part) else None)
            for name, part in parts.items()
        },
        "cleaning": loaded.report.to_dict(),
        "files": files,
        "out_dir": str(out_dir),
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    progress_was_off = datasets.are_progress_bars_disabled()
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
        if "parquet" in formats:
            table.to_parquet(tmp / "statements.parquet", index=False)
        if "csv" in formats:
            _csv_safe(table).to_csv(tmp / "statements.csv", index=False)
        dataset = datasets.DatasetDict(
            {
                name: datasets.Dataset.from_pandas(
                    part.drop(columns="split").reset_index(drop=True), preserve_index=False
                )
                for name, part in parts.items()
            }
        )
        datasets.disable_progress_bars()  # one bar per split is noise in a CLI summary
        dataset.save_to_disk(str(tmp / "hf"))
        (tmp / _EXPORT_MARKER).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if not progress_was_off:
            datasets.enable_progress_bars()
    return summary


def _csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas (leading apostrophe)."""
    out = table.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype(str).map(escape_spreadsheet_cell)
    return out


def _check_replaceable(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is a file; choose a folder path for --out.")
    if any(out_dir.iterdir()) and not (out_dir / _EXPORT_MARKER).is_file():
        raise DataError(
            f"{out_dir} already holds files that prepare_data did not write; refusing to "
            "replace them. Choose another --out folder or empty this one."
        )


def format_export_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of an `export_statements` summary, for the CLI."""
    rows, rates = summary["rows"], summary["no_show_rate"]
    total = sum(rows.values())
    lines = []
    if summary["is_synthetic"]:
        lines.append("NOTE: SYNTHETIC demo data, not real patients.")
    lines.append(
        f"Prepared {total:,} statements from {summary['source']} -> {summary['out_dir']} "
        f"(split: {summary['split_method']}, template: {summary['template_version'] or 'n/a'})"
    )
    lines.append(f"{'split':<12}{'rows':>10}{'no-show rate':>15}")
    for name in SPLIT_NAMES:
        rate = "-" if rates[name] is None else f"{rates[name]:.1%}"
        lines.append(f"{name:<12}{rows[name]:>10,}{rate:>15}")
    cleaning = summary["cleaning"]
    overall = cleaning["no_show_rate"]
    lines.append(f"{'all':<12}{total:>10,}{overall:>15.1%}")
    lines.append(
        f"Rows read {cleaning['rows_read']:,}; dropped {cleaning['dropped_negative_age']:,} "
        f"with Age < 0 and {cleaning['dropped_negative_lead']:,} booked after the "
        f"appointment day; kept {cleaning['rows_kept']:,}."
    )
    lines.extend(f"Note: {note}" for note in cleaning["notes"])
    lines.append(f"Files: {', '.join(summary['files'])}")
    return "\n".join(lines)
