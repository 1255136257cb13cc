"""Clinician label store: an append-only SQLite log of label events, plus agreement and export.

Every action a clinician takes in the Label tab (No-show, Shows up, Skip, a correction after
Back) becomes one event row; nothing is ever updated or deleted, so no click is lost and the
history stays auditable. The *current* label of a (record, annotator) pair is its latest event.
The file lives in a data folder that survives app restarts (see `default_label_db`).

    from noshow.labels.store import LabelStore, default_label_db, labels_fingerprint
    store = LabelStore(default_label_db(), valid_record_ids=lambda: set(frame.record_id))
    store.submit(5642903, "no_show", "Dr Ana", statement=text, seconds_spent=4.2)
    store.skip(5642904, "Dr Ana", statement=text2)
    store.current_labels()                       # latest event per (record_id, annotator)
    labels = store.consensus_labels()            # {record_id: 1 (no-show) | 0 (shows up)}
    labels_fingerprint(labels)                   # {"count": ..., "hash": ...} for run configs
    store.export_csv("labels.csv", statements={5642903: text})   # label names + statement text
    LabelStore("other.sqlite").import_events("labels.csv")
    cohen_kappa_table(store, dataset_labels); disagreements(store, dataset_labels)

Reliability rules, each covered by tests/test_labels.py:
- WAL mode, one connection per thread with a busy timeout, every write in its own
  `BEGIN IMMEDIATE` transaction: many annotators can submit at once and none is lost.
- A client-generated `submission_id` is unique: a double click stores one event.
- A locked, corrupt, foreign or newer-version database raises `LabelError` with the file's
  path and is never modified or recreated; the store only ever creates a file that does not
  exist yet (atomically, so a half-initialised file never appears).
- Exports are for people: labels as "No-show" / "Shows up", the annotator, and the
  statement's text when the caller passes the loaded data's statements (the store keeps only
  a hash of what was shown; a text whose hash differs is left out, never guessed).
  `import_events` reads these files and the older ones with 1/0 labels.
- Exports are written to a temporary file and moved into place. CSV text cells that a
  spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) get a leading
  apostrophe; so that the escape can be undone exactly, a cell that already starts with an
  apostrophe gets one more. `import_events` strips exactly one leading apostrophe from those
  text columns of a CSV, so export -> import round-trips byte for byte. JSONL keeps raw text.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from noshow.system.files import escape_spreadsheet_cell, unescape_spreadsheet_cell, write_atomic
from noshow.system.paths import REPO

SCHEMA_VERSION = 1
NO_SHOW, SHOWS_UP = 1, 0
LABEL_NAMES = {NO_SHOW: "no_show", SHOWS_UP: "shows_up"}
# What people read: exports, the agreement and disagreement tables, the Label tab.
LABEL_DISPLAY = {NO_SHOW: "No-show", SHOWS_UP: "Shows up"}
_LABEL_ALIASES: dict[Any, int] = {"no_show": NO_SHOW, "shows_up": SHOWS_UP}
ALLOWED_LABELS_TEXT = "'no_show' or 1 (misses the appointment), 'shows_up' or 0 (attends)"
STATUSES = ("submitted", "skipped")
MAX_ANNOTATOR_CHARS = 100
MAX_NOTE_CHARS = 10_000
_SQLITE_MAGIC = b"SQLite format 3\x00"

COLUMNS = (
    "id",
    "record_id",
    "statement_hash",
    "label",
    "status",
    "annotator",
    "created_at",
    "seconds_spent",
    "note",
    "previous_label",
    "submission_id",
)
# The export's columns: what a reader needs first, then the audit fields. `statement` is the
# text the annotator read (from the loaded data, checked against statement_hash).
EXPORT_COLUMNS = (
    "id",
    "record_id",
    "annotator",
    "label",
    "status",
    "statement",
    "note",
    "previous_label",
    "seconds_spent",
    "created_at",
    "statement_hash",
    "submission_id",
)
# Columns holding free or client-supplied text: the only ones escaped for spreadsheets.
_TEXT_COLUMNS = (
    "statement",
    "statement_hash",
    "status",
    "annotator",
    "created_at",
    "note",
    "submission_id",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id INTEGER NOT NULL,
    statement_hash TEXT NOT NULL,
    label INTEGER CHECK (label IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('submitted', 'skipped')),
    annotator TEXT NOT NULL CHECK (length(trim(annotator)) > 0),
    created_at TEXT NOT NULL,
    seconds_spent REAL NOT NULL CHECK (seconds_spent >= 0),
    note TEXT NOT NULL DEFAULT '',
    previous_label INTEGER CHECK (previous_label IN (0, 1)),
    submission_id TEXT NOT NULL UNIQUE,
    CHECK ((status = 'submitted') = (label IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS label_events_by_annotator
    ON label_events (annotator, record_id, id);
CREATE INDEX IF NOT EXISTS label_events_by_record ON label_events (record_id, id);
-- The log is append-only: refuse edits even from other tools, so history cannot be rewritten.
CREATE TRIGGER IF NOT EXISTS label_events_no_update BEFORE UPDATE ON label_events
    BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS label_events_no_delete BEFORE DELETE ON label_events
    BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END;
INSERT INTO schema_version (version) SELECT {SCHEMA_VERSION}
    WHERE NOT EXISTS (SELECT 1 FROM schema_version);
"""


class LabelError(ValueError):
    """Bad label input or an unusable label database; the message says how to fix it."""


@dataclass(frozen=True)
class LabelEvent:
    """One stored action: a submitted label or a skip."""

    id: int
    record_id: int
    statement_hash: str
    label: int | None
    """1 = no-show, 0 = shows up, None for a skip."""
    status: str
    """'submitted' or 'skipped'."""
    annotator: str
    created_at: str
    """UTC time in ISO 8601."""
    seconds_spent: float
    note: str
    previous_label: int | None
    """This annotator's current label for the record before this event (None if none)."""
    submission_id: str

    @property
    def label_name(self) -> str | None:
        return LABEL_NAMES.get(self.label) if self.label is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- where the file lives


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


# ---------------------------------------------------------------- input checks


def hash_statement(statement: str) -> str:
    """First 16 hex digits of the statement's SHA-256: ties a label to the exact text shown."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()[:16]


def normalize_label(label: Any) -> int:
    """Map 'no_show'/1 -> 1 and 'shows_up'/0 -> 0; anything else raises LabelError."""
    if isinstance(label, str):
        key = label.strip().lower().replace("-", "_").replace(" ", "_")
        if key in _LABEL_ALIASES:
            return _LABEL_ALIASES[key]
    # bool is an int subclass; True/False would be ambiguous, so refuse it.
    elif not isinstance(label, bool) and _is_whole_number(label) and int(label) in (0, 1):
        return int(label)
    raise LabelError(f"Label {label!r} is not allowed: use {ALLOWED_LABELS_TEXT}.")


def normalize_annotator(annotator: Any) -> str:
    if not isinstance(annotator, str) or not annotator.strip():
        raise LabelError(
            "Annotator name is empty: type your name (or initials) before labelling, so "
            "labels from different clinicians can be told apart."
        )
    name = annotator.strip()
    if len(name) > MAX_ANNOTATOR_CHARS:
        raise LabelError(
            f"Annotator name is {len(name)} characters long; use at most {MAX_ANNOTATOR_CHARS}."
        )
    return name


def _is_whole_number(value: Any) -> bool:
    try:
        as_float = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(as_float) and as_float == int(as_float)


def normalize_record_id(record_id: Any) -> int:
    """Accept ints, numpy ints, whole floats and digit strings (what UI widgets send)."""
    if isinstance(record_id, bool) or not _is_whole_number(record_id):
        raise LabelError(f"Record id {record_id!r} is not a whole number (an AppointmentID).")
    if isinstance(record_id, str):
        try:
            value = int(record_id.strip())
        except ValueError:
            value = int(float(record_id))
    else:
        value = int(record_id)
    if not 0 <= value < 2**63:  # SQLite stores signed 64-bit integers
        raise LabelError(f"Record id {record_id!r} is out of range for an AppointmentID.")
    return value


# ---------------------------------------------------------------- the store

ValidIds = Collection[int] | Callable[[], Collection[int]] | None


class LabelStore:
    """Append-only SQLite log of clinician label events; safe to share between threads.

    `valid_record_ids` is the set of record ids that may be labelled, or a zero-argument
    callable returning it (called on every submit, so the app can pass the ids of whatever
    data set is loaded right now); None accepts any whole-number id. `submit`/`skip` can
    override it per call.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        valid_record_ids: ValidIds = None,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.valid_record_ids = valid_record_ids
        self.busy_timeout_s = float(busy_timeout_s)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        if not self.path.exists():
            self._create_file()
        self._check_file_header()
        side_files = [Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]
        existed = [p.exists() for p in side_files]
        try:
            self._open_existing()
        except BaseException:
            self.close()
            self._remove_empty_side_files(side_files, existed)
            raise

    @staticmethod
    def _remove_empty_side_files(side_files: list[Path], existed: list[bool]) -> None:
        """SQLite keeps the -wal/-shm files it made when it cannot checkpoint a damaged
        database; remove them only if we created them and the WAL holds nothing."""
        wal, shm = side_files
        with contextlib.suppress(OSError):
            if not existed[0] and wal.exists() and wal.stat().st_size == 0:
                wal.unlink()
            if not existed[1] and not wal.exists():
                shm.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection; the file keeps all events."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    # ------------------------------------------------ opening

    def _create_file(self) -> None:
        """Build a fresh store in a temp file, then link it into place only if the path is
        still free, so a concurrent creator or an existing file is never overwritten."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent
            )
        except OSError as e:
            raise LabelError(
                f"Cannot create the label database at {self.path}: {e.strerror}. "
                "Choose a writable folder (set NOSHOW_LABELS_DB or NOSHOW_HOME)."
            ) from e
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another store created it first; open theirs
            except OSError:
                # Filesystems without hard links: a tiny race window is the price.
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _check_file_header(self) -> None:
        """Refuse files that are not SQLite or visibly truncated, before SQLite touches them."""
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                header = f.read(100)
        except OSError as e:
            raise LabelError(f"Cannot read the label database {self.path}: {e.strerror}.") from e
        if size == 0:
            self._raise_corrupt("the file is empty (0 bytes)")
        if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
            self._raise_corrupt("the file is not a SQLite database")
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        size_is_valid = header[24:28] == header[92:96] and pages > 0
        # With a -wal file beside it, the main file may legitimately lag behind its header.
        has_wal = Path(f"{self.path}-wal").exists()
        if size_is_valid and not has_wal and size < pages * page_size:
            self._raise_corrupt(
                f"the file is truncated ({size} bytes, its header says {pages * page_size})"
            )

    def _raise_corrupt(self, why: str) -> None:
        raise LabelError(
            f"The label database {self.path} cannot be read: {why}. It was NOT modified or "
            "recreated. Restore it from a backup or an export (import_events), or point "
            "NOSHOW_LABELS_DB at a new file."
        )

    def _open_existing(self) -> None:
        conn = self._conn()
        with self._sqlite_errors("open"):
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not tables:
                # An empty but valid SQLite file (e.g. made by `sqlite3 file ''`): nothing to lose.
                # executescript commits any open transaction first, so BEGIN inside it.
                conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
                tables = {"schema_version", "label_events"}
            if not {"schema_version", "label_events"} <= tables:
                raise LabelError(
                    f"{self.path} is a SQLite database but not a noshow label store (it has "
                    f"tables {sorted(tables)}). It was NOT modified; choose another path."
                )
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None or version > SCHEMA_VERSION:
                raise LabelError(
                    f"The label database {self.path} uses schema version {version}, but this "
                    f"noshow reads up to version {SCHEMA_VERSION}. Upgrade noshow; the file "
                    "was NOT modified."
                )
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                self._raise_corrupt(f"SQLite integrity check failed: {check}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise LabelError(f"{self!r} is closed; open a new LabelStore.")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # mode=rw: never let SQLite create an empty file if ours vanished.
            uri = self.path.as_uri() + "?mode=rw"
            with self._sqlite_errors("open"):
                conn = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=self.busy_timeout_s,
                    isolation_level=None,  # explicit BEGIN IMMEDIATE / COMMIT below
                    check_same_thread=False,  # only so close() can close it from any thread
                )
                conn.execute("PRAGMA synchronous=FULL")  # each label survives a power cut
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _sqlite_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as e:
            raise LabelError(f"The label database refused to {action}: {e}.") from e
        except sqlite3.OperationalError as e:
            text = str(e).lower()
            if "locked" in text or "busy" in text:
                raise LabelError(
                    f"The label database is busy/locked by another process or connection "
                    f"({self.path}); nothing was changed and existing labels are safe. "
                    "Try again in a moment."
                ) from e
            if "readonly" in text or "read-only" in text:
                raise LabelError(
                    f"The label database {self.path} is read-only; make the file and its "
                    "folder writable or set NOSHOW_LABELS_DB to a writable path."
                ) from e
            if "unable to open" in text:
                raise LabelError(
                    f"Cannot open the label database {self.path} (missing or not accessible). "
                    "It was NOT recreated; check the path and its permissions."
                ) from e
            raise LabelError(f"Could not {action} in the label database {self.path}: {e}.") from e
        except sqlite3.DatabaseError as e:  # "file is not a database", "malformed", ...
            self._raise_corrupt(str(e))

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work` in one BEGIN IMMEDIATE transaction: the write lock is taken up front, so
        concurrent writers queue on the busy timeout instead of failing mid-transaction."""
        conn = self._conn()
        with self._sqlite_errors("save the label"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._sqlite_errors("read labels"):
            return self._conn().execute(sql, tuple(params)).fetchall()

    # ------------------------------------------------ writing

    def submit(
        self,
        record_id: Any,
        label: Any,
        annotator: str,
        *,
        statement: str,
        seconds_spent: float = 0.0,
        note: str = "",
        submission_id: str | None = None,
        valid_record_ids: ValidIds = None,
    ) -> LabelEvent | None:
        """Store a label (1/'no_show' or 0/'shows_up'). Returns the event, or None when an
        event with this `submission_id` is already stored (a double click submits once)."""
        return self._append(
            record_id,
            normalize_label(label),
            "submitted",
            annotator,
            statement=statement,
            seconds_spent=seconds_spent,
            note=note,
            submission_id=submission_id,
            valid_record_ids=valid_record_ids,
        )

    def skip(
        self,
        record_id: Any,
        annotator: str,
        *,
        statement: str,
        seconds_spent: float = 0.0,
        note: str = "",
        submission_id: str | None = None,
        valid_record_ids: ValidIds = None,
    ) -> LabelEvent | None:
        """Record that the annotator skipped this statement (the current label becomes none)."""
        return self._append(
            record_id,
            None,
            "skipped",
            annotator,
            statement=statement,
            seconds_spent=seconds_spent,
            note=note,
            submission_id=submission_id,
            valid_record_ids=valid_record_ids,
        )

    def _append(
        self,
        record_id: Any,
        label: int | None,
        status: str,
        annotator: str,
        *,
        statement: str,
        seconds_spent: float,
        note: str,
        submission_id: str | None,
        valid_record_ids: ValidIds,
    ) -> LabelEvent | None:
        name = normalize_annotator(annotator)
        rid = normalize_record_id(record_id)
        self._check_known(rid, valid_record_ids)
        if not isinstance(statement, str):
            raise LabelError("statement must be the text shown to the annotator (a string).")
        try:
            seconds = float(seconds_spent)
        except (TypeError, ValueError):
            seconds = -1.0
        if not (math.isfinite(seconds) and seconds >= 0):
            raise LabelError(f"seconds_spent must be 0 or more, got {seconds_spent!r}.")
        note = "" if note is None else note
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise LabelError(f"note must be text of at most {MAX_NOTE_CHARS} characters.")
        sid = uuid.uuid4().hex if submission_id is None else submission_id
        if not isinstance(sid, str) or not sid.strip() or len(sid) > 200:
            raise LabelError("submission_id must be a non-empty string of at most 200 characters.")
        row = {
            "record_id": rid,
            "statement_hash": hash_statement(statement),
            "label": label,
            "status": status,
            "annotator": name,
            "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "seconds_spent": seconds,
            "note": note,
            "submission_id": sid,
        }

        def insert(conn: sqlite3.Connection) -> LabelEvent | None:
            # Inside the write lock, so the previous label cannot change under us.
            prev = conn.execute(
                "SELECT label FROM label_events WHERE annotator = ? AND record_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (name, rid),
            ).fetchone()
            row["previous_label"] = prev[0] if prev else None
            cur = conn.execute(
                f"INSERT INTO label_events ({', '.join(row)}) "
                f"VALUES ({', '.join('?' * len(row))}) "
                "ON CONFLICT(submission_id) DO NOTHING",
                tuple(row.values()),
            )
            if cur.rowcount == 0:
                return None
            return LabelEvent(id=cur.lastrowid, **row)

        return self._write(insert)

    def _check_known(self, record_id: int, override: ValidIds) -> None:
        known = override if override is not None else self.valid_record_ids
        if callable(known):
            known = known()
        if known is not None and record_id not in known:
            raise LabelError(
                f"Record id {record_id} is not in the loaded data set, so it cannot be "
                "labelled; reload the page or load the data set it came from."
            )

    # ------------------------------------------------ reading

    def events(self, annotator: str | None = None) -> pd.DataFrame:
        """All events in the order they were stored (optionally one annotator's)."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM label_events"
        params: tuple = ()
        if annotator is not None:
            sql += " WHERE annotator = ?"
            params = (normalize_annotator(annotator),)
        return _events_frame(self._query(sql + " ORDER BY id", params))

    def current_labels(self, annotator: str | None = None) -> pd.DataFrame:
        """The latest event per (record_id, annotator), skips included (label NA)."""
        where, params = "", ()
        if annotator is not None:
            where, params = "WHERE annotator = ?", (normalize_annotator(annotator),)
        rows = self._query(
            f"SELECT {', '.join('e.' + c for c in COLUMNS)} FROM label_events e JOIN ("
            f"SELECT MAX(id) AS id FROM label_events {where} GROUP BY record_id, annotator"
            ") latest ON e.id = latest.id ORDER BY e.record_id, e.annotator",
            params,
        )
        return _events_frame(rows)

    def annotators(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT annotator FROM label_events ORDER BY 1")]

    def status_for(self, annotator: str, record_ids: Iterable[Any]) -> dict[int, str]:
        """{record_id: 'pending' | 'submitted' | 'skipped'} for one annotator."""
        current = self.current_labels(annotator)
        done = dict(zip(current["record_id"].tolist(), current["status"].tolist(), strict=True))
        ids = [normalize_record_id(r) for r in record_ids]
        return {rid: done.get(rid, "pending") for rid in ids}

    def progress(self, annotator: str, record_ids: Iterable[Any]) -> dict[str, int]:
        """Counts over `record_ids`: mine_submitted, mine_skipped, mine_done (either),
        mine_pending, total, everyone_done (records with a current label from anyone),
        annotators (people with any event on these records)."""
        ids = {normalize_record_id(r) for r in record_ids}
        mine = self.status_for(annotator, ids)
        submitted = sum(s == "submitted" for s in mine.values())
        skipped = sum(s == "skipped" for s in mine.values())
        current = self.current_labels()
        current = current[current["record_id"].isin(list(ids))]
        labelled = current[current["status"] == "submitted"]
        return {
            "mine_submitted": submitted,
            "mine_skipped": skipped,
            "mine_done": submitted + skipped,
            "mine_pending": len(ids) - submitted - skipped,
            "total": len(ids),
            "everyone_done": int(labelled["record_id"].nunique()),
            "annotators": int(current["annotator"].nunique()),
        }

    def consensus_labels(self, policy: str = "majority") -> dict[int, int]:
        """One label per record from the annotators' current submitted labels.

        'majority': the most common label; a tie goes to the most recent of the tied
        annotators' labels. 'latest': the most recent current label from anyone.
        """
        if policy not in ("majority", "latest"):
            raise LabelError(f"Unknown consensus policy {policy!r}: use 'majority' or 'latest'.")
        current = self.current_labels()
        current = current[current["status"] == "submitted"]
        result: dict[int, int] = {}
        for rid, group in current.groupby("record_id", sort=True):
            group = group.sort_values("id")
            latest = int(group["label"].iloc[-1])
            if policy == "majority":
                votes = group["label"].astype(int).value_counts()
                top = votes[votes == votes.max()].index.tolist()
                result[int(rid)] = int(top[0]) if len(top) == 1 else latest
            else:
                result[int(rid)] = latest
        return result

    # ------------------------------------------------ export / import

    def export_rows(self, statements: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
        """Every event as a dict of EXPORT_COLUMNS: labels as "No-show" / "Shows up" (None
        for a skip), and `statement` the text from `statements` ({record_id: text}, usually
        the loaded data's) when its hash is the one stored with the event, else None."""
        rows = []
        for event in self.events().itertuples(index=False):
            plain = _plain(event._asdict())
            text = (statements or {}).get(plain["record_id"])
            shown = isinstance(text, str) and hash_statement(text) == plain["statement_hash"]
            plain["statement"] = text if shown else None
            for column in ("label", "previous_label"):
                if plain[column] is not None:
                    plain[column] = LABEL_DISPLAY[plain[column]]
            rows.append({c: plain[c] for c in EXPORT_COLUMNS})
        return rows

    def export_csv(self, path: str | Path, statements: Mapping[int, str] | None = None) -> Path:
        """Write all events to a CSV (UTF-8 with BOM so spreadsheets read accents right); see
        `export_rows` for the columns. Formula-looking text cells are escaped with a leading
        apostrophe (see module doc)."""
        rows = self.export_rows(statements)

        def write(f: Any) -> None:
            writer = csv.writer(f)
            writer.writerow(EXPORT_COLUMNS)
            for row in rows:
                writer.writerow(_csv_cells(row))

        return _write_atomic(Path(path), write, encoding="utf-8-sig")

    def export_jsonl(self, path: str | Path, statements: Mapping[int, str] | None = None) -> Path:
        """Write all events as JSON lines (columns of `export_rows`), text kept raw."""
        rows = self.export_rows(statements)

        def write(f: Any) -> None:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

        return _write_atomic(Path(path), write, encoding="utf-8")

    def import_events(self, path: str | Path) -> int:
        """Add events from a CSV or JSONL written by `export_csv`/`export_jsonl`.

        Events keep their ids and submission ids; an event whose submission id is already
        stored is ignored (importing twice adds nothing), and one whose id is taken by a
        different event is appended with a new id. All or nothing: a bad row adds no events.
        Returns the number of events added.
        """
        path = Path(path)
        rows = _read_export(path)
        events = [_validate_import_row(r, path, n) for n, r in enumerate(rows, start=2)]
        events.sort(key=lambda e: e["id"])

        def insert(conn: sqlite3.Connection) -> int:
            added = 0
            for event in events:
                if conn.execute(
                    "SELECT 1 FROM label_events WHERE submission_id = ?", (event["submission_id"],)
                ).fetchone():
                    continue
                taken = conn.execute(
                    "SELECT 1 FROM label_events WHERE id = ?", (event["id"],)
                ).fetchone()
                values = dict(event, id=None) if taken else event
                conn.execute(
                    f"INSERT INTO label_events ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                    tuple(values[c] for c in COLUMNS),
                )
                added += 1
            return added

        return self._write(insert)

    def to_dataset(self) -> Any:
        """All events as a `datasets.Dataset` (same columns as `events()`)."""
        import datasets

        return datasets.Dataset.from_pandas(self.events(), preserve_index=False)

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool = True) -> Any:
        """Upload the events as a (private by default) Hugging Face data set."""
        token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            raise LabelError(
                "Pushing labels to the Hugging Face Hub needs a token with write access: pass "
                "token=... or set HF_TOKEN (create one at https://huggingface.co/settings/tokens)."
            )
        if not isinstance(repo_id, str) or "/" not in repo_id.strip("/"):
            raise LabelError(f"repo_id must look like 'user/labels', got {repo_id!r}.")
        dataset = self.to_dataset()
        try:
            return dataset.push_to_hub(repo_id, token=token, private=private)
        except Exception as e:
            # Hub errors can echo request headers: never let the token reach a message or log.
            detail = f"{type(e).__name__}: {e}".replace(token, "***")
            raise LabelError(
                f"Could not push labels to {repo_id}: {detail}. Check the token's write access "
                "and the network; labels stay safe in the local database."
            ) from None


# ---------------------------------------------------------------- helpers


def _events_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    dtypes = {
        "id": "int64",
        "record_id": "int64",
        "label": "Int64",  # nullable: skips have no label
        "previous_label": "Int64",
        "seconds_spent": "float64",
    }
    for column in COLUMNS:
        frame[column] = frame[column].astype(dtypes.get(column, "str"))
    return frame


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """pandas/numpy scalars -> JSON-friendly Python values (NA -> None)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out[key] = None
        elif key in ("id", "record_id", "label", "previous_label"):
            out[key] = int(value)
        elif key == "seconds_spent":
            out[key] = float(value)
        else:
            out[key] = str(value)
    return out


def _csv_cells(row: Mapping[str, Any]) -> list[str]:
    cells = []
    for column in EXPORT_COLUMNS:
        value = row[column]
        if value is None:
            cells.append("")
        elif column in _TEXT_COLUMNS:
            cells.append(escape_spreadsheet_cell(value))
        else:
            cells.append(repr(value) if isinstance(value, float) else str(value))
    return cells


def _write_atomic(path: Path, write: Callable[[Any], None], *, encoding: str) -> Path:
    """`files.write_atomic` for an export (a reader never sees half of it), with the
    failure to create it said as a LabelError."""
    try:
        return write_atomic(path, write, encoding=encoding, newline="")
    except OSError as e:
        raise LabelError(f"Cannot write the export {path}: {e.strerror}.") from e


def _read_export(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise LabelError(
            f"Cannot import {path}: expected a .csv or .jsonl file written by export_csv or "
            "export_jsonl."
        )
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                missing = set(COLUMNS) - set(reader.fieldnames or ())
                if missing:
                    raise LabelError(
                        f"Cannot import {path}: missing column(s) {sorted(missing)}; expected "
                        f"the columns written by export_csv: {', '.join(COLUMNS)}."
                    )
                rows: list[dict[str, Any]] = []
                for raw in reader:
                    row: dict[str, Any] = {}
                    for column in COLUMNS:
                        cell = raw[column] if raw[column] is not None else ""
                        if column in _TEXT_COLUMNS:
                            row[column] = unescape_spreadsheet_cell(cell)
                        else:
                            row[column] = None if cell == "" else cell
                    rows.append(row)
                return rows
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise LabelError(
                        f"Cannot import {path}: line {n} is not JSON ({e.msg})."
                    ) from e
        return rows
    except OSError as e:
        raise LabelError(f"Cannot read {path}: {e.strerror}.") from e
    except UnicodeDecodeError as e:
        raise LabelError(f"Cannot import {path}: it is not UTF-8 text.") from e


def _validate_import_row(row: Any, path: Path, line: int) -> dict[str, Any]:
    where = f"{path} (row {line})"
    if not isinstance(row, dict) or set(COLUMNS) - set(row):
        raise LabelError(f"Cannot import {where}: expected the fields {', '.join(COLUMNS)}.")
    try:
        event = {
            "id": normalize_record_id(row["id"]),
            "record_id": normalize_record_id(row["record_id"]),
            "statement_hash": str(row["statement_hash"]),
            "label": _import_label(row["label"]),
            "status": str(row["status"]),
            "annotator": normalize_annotator(row["annotator"]),
            "created_at": str(row["created_at"]),
            "seconds_spent": float(row["seconds_spent"]),
            "note": "" if row["note"] is None else str(row["note"]),
            "previous_label": _import_label(row["previous_label"]),
            "submission_id": str(row["submission_id"]),
        }
    except (LabelError, TypeError, ValueError) as e:
        raise LabelError(f"Cannot import {where}: {e}") from e
    if event["status"] not in STATUSES or (event["status"] == "submitted") != (
        event["label"] is not None
    ):
        raise LabelError(
            f"Cannot import {where}: status must be 'submitted' with a label or 'skipped' "
            f"without one, got status {event['status']!r} and label {event['label']!r}."
        )
    if not event["submission_id"].strip() or not math.isfinite(event["seconds_spent"]):
        raise LabelError(f"Cannot import {where}: empty submission_id or bad seconds_spent.")
    return event


def _import_label(value: Any) -> int | None:
    """A label cell of an export: "No-show" / "Shows up", or 1 / 0 in older exports."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and not _is_whole_number(value):
        return normalize_label(value)
    return normalize_label(int(float(value)))


def labels_fingerprint(labels: Mapping[Any, Any]) -> dict[str, Any]:
    """{"count", "hash"} of a {record_id: label} mapping, independent of insertion order;
    stored in run configs so a result can be traced to the exact labels it used."""
    items = sorted((normalize_record_id(k), normalize_label(v)) for k, v in labels.items())
    payload = json.dumps(items, separators=(",", ":"))
    return {"count": len(items), "hash": hashlib.sha256(payload.encode("utf-8")).hexdigest()}


# ---------------------------------------------------------------- agreement

DATASET_RATER = "data set"
KAPPA_COLUMNS = ("kind", "rater_a", "rater_b", "n", "kappa", "note")
DISAGREEMENT_COLUMNS = (
    "record_id",
    "labels",
    "no_show_votes",
    "shows_up_votes",
    "dataset_label",
    "reason",
    "notes",
)


def _submitted_by_annotator(store: LabelStore) -> dict[str, dict[int, int]]:
    current = store.current_labels()
    current = current[current["status"] == "submitted"]
    by_annotator: dict[str, dict[int, int]] = {}
    for row in current.itertuples(index=False):
        by_annotator.setdefault(row.annotator, {})[int(row.record_id)] = int(row.label)
    return by_annotator


# Landis & Koch (1977), the usual words for a kappa: (kappa above this, word); 0 is slight.
KAPPA_BANDS = (
    (0.8, "almost perfect"),
    (0.6, "substantial"),
    (0.4, "moderate"),
    (0.2, "fair"),
)
FEW_RECORDS = 20  # below this many shared records a kappa swings with one label


def describe_kappa(kappa: float) -> str:
    """'moderate agreement' etc. (Landis & Koch); 'less agreement than chance' below 0."""
    if kappa < 0:
        return "less agreement than chance"
    word = next((w for bound, w in KAPPA_BANDS if kappa > bound), "slight")
    return f"{word} agreement"


def _kappa(
    a: dict[int, int], b: Mapping[int, int], name_a: str = "", name_b: str = ""
) -> tuple[int, float, str]:
    """(records in common, kappa, a sentence that says how to read it)."""
    from sklearn.metrics import cohen_kappa_score

    common = sorted(set(a) & set(b))
    if not common:
        return 0, math.nan, "no records in common"
    y1 = [a[r] for r in common]
    y2 = [int(b[r]) for r in common]
    n = len(common)
    agree = f"{sum(x == y for x, y in zip(y1, y2, strict=True))} of {n} records agree"
    if n < FEW_RECORDS:
        agree += f" (under {FEW_RECORDS} records: a rough figure)"
    if len(set(y1) | set(y2)) < 2:
        # Chance agreement is 1, so kappa is 0/0: report it as undefined, not as a crash.
        only = LABEL_DISPLAY[y1[0]]
        return n, math.nan, f"only one class ({only}) in the overlap, kappa is undefined; {agree}"
    kappa = float(cohen_kappa_score(y1, y2, labels=[0, 1]))
    for name, labels in ((name_a, y1), (name_b, y2)):
        if len(set(labels)) == 1:
            # Expected agreement then equals the observed one: kappa is 0 however many agree.
            same = LABEL_DISPLAY[labels[0]]
            note = f"{name or 'one rater'} gave every shared record the same label ({same}), "
            return n, kappa, f"{note}so kappa is 0 by definition; {agree}"
    return n, kappa, f"{describe_kappa(kappa)}; {agree}"


def cohen_kappa_table(
    store: LabelStore, dataset_labels: Mapping[int, int] | None = None
) -> pd.DataFrame:
    """Cohen's kappa for each pair of annotators with overlapping current labels, and for
    each annotator against the data set's labels (when given).

    Columns: kind ('pair' | 'vs_dataset'), rater_a, rater_b, n, kappa (NaN when undefined),
    note (how to read the kappa: Landis & Koch's word and how many records agree, or why it
    is 0 or undefined).
    """
    by_annotator = _submitted_by_annotator(store)
    names = sorted(by_annotator)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            n, kappa, note = _kappa(by_annotator[a], by_annotator[b], a, b)
            if n:
                rows.append(("pair", a, b, n, kappa, note))
    if dataset_labels is not None:
        truth = {normalize_record_id(k): int(v) for k, v in dataset_labels.items()}
        for a in names:
            n, kappa, note = _kappa(by_annotator[a], truth, a, "the data set")
            if not n:
                note = "none of these labels is on a record of the loaded data set"
            rows.append(("vs_dataset", a, DATASET_RATER, n, kappa, note))
    frame = pd.DataFrame(rows, columns=list(KAPPA_COLUMNS))
    return frame.astype({"n": "int64", "kappa": "float64"})


def disagreements(
    store: LabelStore, dataset_labels: Mapping[int, int] | None = None
) -> pd.DataFrame:
    """Records to adjudicate: annotators' current labels disagree with each other, or with
    the data set's label (when given).

    Columns: record_id, labels ('name: No-show; name: Shows up'), no_show_votes,
    shows_up_votes, dataset_label ('No-show' / 'Shows up', None if unknown), reason, notes
    (annotators' notes).
    """
    current = store.current_labels()
    current = current[current["status"] == "submitted"]
    truth = (
        {}
        if dataset_labels is None
        else {normalize_record_id(k): int(v) for k, v in dataset_labels.items()}
    )
    rows = []
    for rid, group in current.groupby("record_id", sort=True):
        labels = group["label"].astype(int)
        reasons = []
        if labels.nunique() > 1:
            reasons.append("annotators disagree")
        data_label = truth.get(int(rid))
        if data_label is not None and (labels != data_label).any():
            reasons.append("differs from data set")
        if not reasons:
            continue
        rows.append(
            {
                "record_id": int(rid),
                "labels": "; ".join(
                    f"{a}: {LABEL_DISPLAY[int(v)]}"
                    for a, v in zip(group["annotator"], group["label"], strict=True)
                ),
                "no_show_votes": int((labels == NO_SHOW).sum()),
                "shows_up_votes": int((labels == SHOWS_UP).sum()),
                "dataset_label": None if data_label is None else LABEL_DISPLAY[data_label],
                "reason": "; ".join(reasons),
                "notes": "; ".join(
                    f"{a}: {n}" for a, n in zip(group["annotator"], group["note"], strict=True) if n
                ),
            }
        )
    frame = pd.DataFrame(rows, columns=list(DISAGREEMENT_COLUMNS))
    return frame.astype({"record_id": "int64", "dataset_label": "object"})
