"""The clinician label store: an append-only SQLite log of label events.

Every action a clinician takes in the Label tab (No-show, Shows up, Skip, a correction after
Back) becomes one event row; nothing is ever updated or deleted, so no click is lost and the
history stays auditable. The *current* label of a (record, annotator) pair is its latest event.
The file lives in a data folder that survives app restarts (`noshow.labels.location.default_label_db`).

    from noshow.labels.store import LabelStore, default_label_db
    store = LabelStore(default_label_db(), valid_record_ids=lambda: set(frame.record_id))
    store.submit(5642903, "no_show", "Dr Ana", statement=text, seconds_spent=4.2)
    store.skip(5642904, "Dr Ana", statement=text2)
    store.current_labels()                       # latest event per (record_id, annotator)
    labels = store.consensus_labels()            # {record_id: 1 (no-show) | 0 (shows up)}

What an event holds and the checks on its fields are in `noshow.labels.events`; exports and
imports in `noshow.labels.export`; Cohen's kappa and disagreements in `noshow.labels.agreement`.

Reliability rules, each covered by tests/test_labels.py:
- WAL mode, one connection per thread with a busy timeout, every write in its own
  `BEGIN IMMEDIATE` transaction: many annotators can submit at once and none is lost.
- A client-generated `submission_id` is unique: a double click stores one event.
- A press names the showing of the item it answers (`showing_id`): one that repeats the
  latest event of its (record, annotator) from the same showing stores nothing (the same key
  pressed twice while the item was on screen), one that differs is a new event (two answers
  in quick succession are both kept, the later one counts).
- A locked, corrupt, foreign or newer-version database raises `LabelError` with the file's
  path and is never modified or recreated; the store only ever creates a file that does not
  exist yet (atomically, so a half-initialised file never appears).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

import pandas as pd

from noshow.labels.events import (
    COLUMNS,
    MAX_NOTE_CHARS,
    LabelError,
    LabelEvent,
    hash_statement,
    normalize_annotator,
    normalize_label,
    normalize_record_id,
)
from noshow.labels.location import default_label_db, space_data_dir  # noqa: F401 - re-exported

SCHEMA_VERSION = 1
# A press's stored submission id is "<showing id><SHOWING_MARK><press id>" when it names the
# showing of the item it answers (see `LabelStore.submit`).
SHOWING_MARK = "/"
_SQLITE_MAGIC = b"SQLite format 3\x00"

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


# ---------------------------------------------------------------- the store

ValidIds = Collection[int] | Callable[[], Collection[int]] | None


class PressDetails(TypedDict, total=False):
    """What `submit` and `skip` take as keywords besides the record and the annotator: the
    statement shown (required), the seconds spent on it, a note, the press's ids (see the
    module's rules) and `valid_record_ids` for this call."""

    statement: Required[str]
    seconds_spent: float
    note: str
    submission_id: str | None
    showing_id: str | None
    valid_record_ids: ValidIds


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
        self, record_id: Any, label: Any, annotator: str, **press: Unpack[PressDetails]
    ) -> LabelEvent | None:
        """Store a label (1/'no_show' or 0/'shows_up'). Returns the event, or None when it
        repeats a stored press: an event with this `submission_id`, or (with `showing_id`, the
        id of one showing of the item) the same answer as the latest event of this record and
        annotator from the same showing (a key pressed twice submits once)."""
        return self._append(record_id, normalize_label(label), "submitted", annotator, **press)

    def skip(
        self, record_id: Any, annotator: str, **press: Unpack[PressDetails]
    ) -> LabelEvent | None:
        """Record that the annotator skipped this statement (the current label becomes none);
        None for a repeated press, as in `submit`."""
        return self._append(record_id, None, "skipped", annotator, **press)

    def _append(
        self,
        record_id: Any,
        label: int | None,
        status: str,
        annotator: str,
        *,
        statement: str,
        seconds_spent: float = 0.0,
        note: str = "",
        submission_id: str | None = None,
        showing_id: str | None = None,
        valid_record_ids: ValidIds = None,
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
        if showing_id is not None:
            if (
                not isinstance(showing_id, str)
                or not showing_id.strip()
                or SHOWING_MARK in showing_id
            ):
                raise LabelError(f"showing_id must be a non-empty string without {SHOWING_MARK!r}.")
            sid = f"{showing_id}{SHOWING_MARK}{sid}"
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
                "SELECT label, status, submission_id FROM label_events "
                "WHERE annotator = ? AND record_id = ? ORDER BY id DESC LIMIT 1",
                (name, rid),
            ).fetchone()
            same_showing = prev and prev[2].partition(SHOWING_MARK)[0] == showing_id
            if same_showing and showing_id is not None and (prev[0], prev[1]) == (label, status):
                return None  # the same answer again while the same showing was on screen
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

    # ------------------------------------------------ importing

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Append events that already carry their ids and submission ids (an import), in id
        order and in one transaction: all or nothing. An event whose submission id is already
        stored is skipped (adding twice adds nothing); one whose id is taken by a different
        event gets a new id. Returns the number added. The caller checks the fields first
        (`noshow.labels.export.import_events` does)."""
        ordered = sorted(events, key=lambda e: e["id"])

        def insert(conn: sqlite3.Connection) -> int:
            added = 0
            for event in ordered:
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
