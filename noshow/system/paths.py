"""Where things live: the repository (shipped adapters, the bundled data folder) and the
cache folder that noshow writes to (converted models, label store, compile caches).

    from noshow.system.paths import REPO, cache_dir
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Where noshow keeps converted models and caches: `NOSHOW_HOME` or `<repo>/.noshow`."""
    home = os.environ.get("NOSHOW_HOME")
    return Path(home).expanduser() if home else REPO / ".noshow"
