"""The Data tab's server-side store of loaded data sets, shared by every tab: a small LRU
keyed by source and split, so several visitors browsing one file share one copy and a
browser session holds only the key. No Gradio here.

    cache = DataCache()
    entry = cache.get(key) or cache.put(DataEntry(...))
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SYNTHETIC_SOURCE = "synthetic"
DEFAULT_SOURCE = "default"


def file_fingerprint(path: str | Path) -> str:
    """A short content hash, so an upload and a re-upload of the same file share a cache key."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class RecordNotFound(LookupError):
    """A record id that is missing or not in the loaded data (`data_views.find_record`); the
    message is written for users, so `common.user_message` shows it as it is."""


@dataclass
class DataEntry:
    """One loaded data set with its split applied, as the tabs use it."""

    key: str
    loaded: Any  # noshow.data.load.LoadedData
    frame: pd.DataFrame  # loaded.frame plus a `split` column
    split_method: str
    label: str  # what to call it on screen (file name or "synthetic")


class DataCache:
    """A small server-side LRU of loaded data sets, keyed by source and split method.

    Data frames stay on the server (a browser session holds only the key), so several
    visitors browsing the same file share one copy.
    """

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, DataEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None) -> DataEntry | None:
        if not key:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, entry: DataEntry) -> DataEntry:
        with self._lock:
            self._entries[entry.key] = entry
            self._entries.move_to_end(entry.key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry
