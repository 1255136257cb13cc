"""Where the clinician label database lives: `NOSHOW_LABELS_DB`, else under `NOSHOW_HOME`, else
a Hugging Face Space's persistent storage (/data), else the repository's `.noshow/` folder.

    from noshow.labels.location import default_label_db
    LabelStore(default_label_db())
"""

from __future__ import annotations

import os
from pathlib import Path

from noshow.system.paths import REPO


def space_data_dir(root: str | Path = "/data") -> Path | None:
    """`<root>/noshow` when `root` is a writable folder (a Hugging Face Space's persistent
    storage is mounted at /data), else None."""
    root = Path(root)
    if root.is_dir() and os.access(root, os.W_OK | os.X_OK):
        return root / "noshow"
    return None


def default_label_db(*, space_root: str | Path = "/data") -> Path:
    """Where the label store lives unless told otherwise.

    `NOSHOW_LABELS_DB` > `$NOSHOW_HOME/labels/labels.sqlite` > `/data/noshow/labels/...` on a
    Space with persistent storage > `<repo>/.noshow/labels/labels.sqlite`. Explicit settings
    win over detection so a Space can still choose its own path.
    """
    explicit = os.environ.get("NOSHOW_LABELS_DB", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("NOSHOW_HOME", "").strip()
    if home:
        return Path(home).expanduser() / "labels" / "labels.sqlite"
    space = space_data_dir(space_root)
    if space is not None:
        return space / "labels" / "labels.sqlite"
    return REPO / ".noshow" / "labels" / "labels.sqlite"
