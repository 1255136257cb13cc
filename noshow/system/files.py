"""File-system helpers every module that writes shares: atomic writes, folder swaps, and
whether a process still runs. One home each, so a fix to one (fsync, a reused pid) reaches
every writer.

    from noshow.system.files import write_atomic, replace_folder, pid_alive
    write_atomic(path, lambda f: f.write(text))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(
    path: str | Path,
    write: Callable[[Any], None],
    *,
    binary: bool = False,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> Path:
    """Write through a temporary file in the same folder, fsync, then rename over `path`:
    a reader sees the old file or the whole new one, never half of it."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if binary:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """`data` as indented JSON at `path`, written atomically (`write_atomic`)."""
    import json

    return write_atomic(path, lambda f: json.dump(data, f, indent=2))


def read_json_object(path: str | Path, error: type[Exception], what: str) -> dict | None:
    """The JSON object stored at `path`, or None when there is no file; `error` (a message
    naming the file) when it cannot be read or does not hold an object (`what`)."""
    import json

    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{path} does not hold {what}.")
    return data


def replace_folder(new: str | Path, target: str | Path) -> None:
    """Rename the finished folder `new` onto `target`. A folder cannot be renamed over a
    non-empty one, so an existing target first moves aside (and comes back if the second
    rename fails); it is deleted only after the swap."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, scratch / "previous")
    try:
        os.replace(new, target)
    except OSError:
        os.replace(scratch / "previous", target)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    shutil.rmtree(scratch, ignore_errors=True)


def process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks (Linux /proc), to tell a reused pid from ours."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of stat; fields[0] is field 3 (state)
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool | None:
    """True/False when this host can tell, None when it cannot. `start` (from
    `process_start` when the process was recorded) catches a pid reused by another process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except (OSError, OverflowError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):  # exited but not yet reaped by its parent
            return False
    except (OSError, IndexError):
        pass
    if start is not None:
        now_start = process_start(pid)
        if now_start is not None and now_start != start:
            return False  # the pid now belongs to another process
    return True


# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_spreadsheet_cell(text: str) -> str:
    """Prefix an apostrophe to text a spreadsheet would run as a formula. Text that already
    starts with an apostrophe gets one more, so `unescape_spreadsheet_cell` is exact."""
    if text.startswith((*_FORMULA_STARTS, "'")):
        return "'" + text
    return text


def unescape_spreadsheet_cell(text: str) -> str:
    return text[1:] if text.startswith("'") else text
