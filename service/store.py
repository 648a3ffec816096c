"""The durable job store: SQLite in WAL mode, the source of truth for tokens and jobs.

Every state change of a job is one committed transaction (and one row in `events`), so a
job accepted with 202 survives a crash of the server at any point after that answer.
One connection, guarded by a lock, serves the API threads and the runner threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigasynth.errors import GigasynthError
from gigasynth_service.paths import private_dir, private_file

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
RETRYABLE_STATES = ("failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL UNIQUE,
    max_megapixels REAL NOT NULL,
    max_concurrent INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    token_id TEXT NOT NULL REFERENCES tokens(id),
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_token ON jobs(token_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE TABLE IF NOT EXISTS layouts (
    token_id TEXT NOT NULL REFERENCES tokens(id),
    id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (token_id, id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    message TEXT
);
"""


@dataclass(frozen=True)
class TokenRecord:
    """An API token's identity and quotas (the secret itself is never stored)."""

    id: str
    name: str
    max_megapixels: float
    max_concurrent: int
    created: float
    expires: float | None = None  # Unix seconds; None: never
    revoked: float | None = None  # when it was revoked; None: it was not


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: the accepted request, its state and what the runner reported."""

    seq: int
    id: str
    token_id: str
    state: str
    request: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    cancel_requested: bool
    attempts: int
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class LayoutRecord:
    """An uploaded layout image of one token: its id (the sha256 of its bytes) and size."""

    token_id: str
    id: str
    media_type: str
    width: int
    height: int
    bytes: int
    created: float


def _job(row: sqlite3.Row) -> JobRecord:
    def doc(text: str | None) -> dict[str, Any] | None:
        return json.loads(text) if text else None

    return JobRecord(
        seq=row["seq"],
        id=row["id"],
        token_id=row["token_id"],
        state=row["state"],
        request=json.loads(row["request"]),
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        cancel_requested=bool(row["cancel_requested"]),
        attempts=row["attempts"],
        progress=doc(row["progress"]),
        result=doc(row["result"]),
        error=row["error"],
    )


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        row["id"],
        row["name"],
        row["max_megapixels"],
        row["max_concurrent"],
        row["created"],
        row["expires"],
        row["revoked"],
    )


class StoreUnavailable(Exception):
    """The store cannot be written now (a full disk, an I/O error): nothing was changed."""


class ActiveLimit(Exception):
    """A token already has `active` jobs queued or running, its limit."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} jobs queued or running")
        self.active = active


class LayoutLimit(Exception):
    """A token already keeps `kept` layouts, its limit."""

    def __init__(self, kept: int) -> None:
        super().__init__(f"{kept} layouts kept")
        self.kept = kept


class StateConflict(Exception):
    """A job is not in a state the change applies to (its state is the message)."""


@contextmanager
def _writable() -> Iterator[None]:
    """SQLite's operational errors on a write (disk full, I/O, locked) as StoreUnavailable."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"the job store cannot be written: {exc}") from exc


def _active_count(db: sqlite3.Connection, token_id: str, uncounted: Collection[str]) -> int:
    ids = sorted(uncounted)
    sql = "SELECT COUNT(*) FROM jobs WHERE token_id = ? AND state IN ('queued', 'running')" + (
        f" AND id NOT IN ({', '.join('?' * len(ids))})" if ids else ""
    )
    return int(db.execute(sql, (token_id, *ids)).fetchone()[0])


def _check_active(
    db: sqlite3.Connection, token_id: str, max_active: int | None, uncounted: Collection[str]
) -> None:
    if max_active is not None:
        active = _active_count(db, token_id, uncounted)
        if active >= max_active:
            raise ActiveLimit(active)


class JobStore:
    """Tokens, jobs and their state history in one SQLite file."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        self._lock = threading.Lock()
        try:
            private_file(path)  # 0600 before SQLite opens it; its WAL files copy the mode
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._add_token_columns()
        except sqlite3.DatabaseError as exc:
            raise GigasynthError(f"job store {path} is unusable: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock, _writable():
            return self._db.execute(sql, args)

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): committed on success, else rolled back."""
        with self._lock, _writable():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        with self._immediate() as db:
            for sql, args in statements:
                db.execute(sql, args)

    def _add_token_columns(self) -> None:
        """Stores made before tokens could expire or be revoked lack those columns."""
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(tokens)")}
        for column in ("expires", "revoked"):
            if column not in have:
                self._db.execute(f"ALTER TABLE tokens ADD COLUMN {column} REAL")

    # --- tokens ---------------------------------------------------------------------

    def add_token(
        self,
        token_id: str,
        name: str,
        token_hash: str,
        max_megapixels: float,
        max_concurrent: int,
        expires: float | None = None,
    ) -> TokenRecord:
        try:
            self._write(
                "INSERT INTO tokens (id, name, hash, max_megapixels, max_concurrent, created, "
                "expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, name, token_hash, max_megapixels, max_concurrent, time.time(), expires),
            )
        except sqlite3.IntegrityError:
            raise GigasynthError(f"a token named {name!r} already exists") from None
        return self.token_by_id(token_id)

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        rows = self._read("SELECT * FROM tokens WHERE hash = ?", (token_hash,))
        return _token(rows[0]) if rows else None

    def token_by_id(self, token_id: str) -> TokenRecord:
        return _token(self._read("SELECT * FROM tokens WHERE id = ?", (token_id,))[0])

    def tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""
        return [_token(r) for r in self._read("SELECT * FROM tokens ORDER BY created, id")]

    def revoke_token(self, token_id: str) -> None:
        """Mark a token revoked (once: a second revocation keeps the first time)."""
        self._write(
            "UPDATE tokens SET revoked = COALESCE(revoked, ?) WHERE id = ?", (time.time(), token_id)
        )

    # --- jobs -----------------------------------------------------------------------

    def add_job(
        self,
        job_id: str,
        token_id: str,
        request: dict[str, Any],
        max_active: int | None = None,
        uncounted: Collection[str] = (),
    ) -> JobRecord:
        """Insert a queued job; with `max_active`, only while the token has fewer jobs
        queued or running (else ActiveLimit), checked and inserted in one transaction.

        `uncounted`: ids of jobs that ended but whose end is not recorded yet.
        """
        now = time.time()
        with self._immediate() as db:
            _check_active(db, token_id, max_active, uncounted)
            db.execute(
                "INSERT INTO jobs (id, token_id, state, request, created) VALUES (?, ?, ?, ?, ?)",
                (job_id, token_id, "queued", json.dumps(request, sort_keys=True), now),
            )
            db.execute(
                "INSERT INTO events (job_id, at, state) VALUES (?, ?, ?)", (job_id, now, "queued")
            )
        job = self.job(job_id)
        assert job is not None
        return job

    def requeue(
        self, job_id: str, max_active: int | None = None, uncounted: Collection[str] = ()
    ) -> JobRecord:
        """Queue a failed or cancelled job again (a retry), under the same limit as add_job.

        Raises StateConflict when the job is in another state by now.
        """
        now = time.time()
        with self._immediate() as db:
            row = db.execute("SELECT token_id, state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] not in RETRYABLE_STATES:
                raise StateConflict(row["state"] if row is not None else "deleted")
            _check_active(db, row["token_id"], max_active, uncounted)
            db.execute(
                "UPDATE jobs SET state = 'queued', cancel_requested = 0, finished = NULL, "
                "progress = NULL, result = NULL, error = NULL WHERE id = ?",
                (job_id,),
            )
            db.execute(
                "INSERT INTO events (job_id, at, state, message) VALUES (?, ?, ?, ?)",
                (job_id, now, "queued", "retry"),
            )
        job = self.job(job_id)
        assert job is not None
        return job

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs_of(self, token_id: str, limit: int, before_seq: int | None = None) -> list[JobRecord]:
        """A token's jobs, newest first, `limit` of them from below `before_seq`."""
        rows = self._read(
            "SELECT * FROM jobs WHERE token_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (token_id, before_seq if before_seq is not None else 1 << 62, limit),
        )
        return [_job(r) for r in rows]

    def active_count(self, token_id: str, uncounted: Collection[str] = ()) -> int:
        """The token's jobs queued or running, less those in `uncounted`."""
        with self._lock:
            return _active_count(self._db, token_id, uncounted)

    def unfinished(self) -> list[JobRecord]:
        """Jobs left queued or running (by a crash or a stop), oldest first."""
        rows = self._read("SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY seq")
        return [_job(r) for r in rows]

    def answers(self) -> bool | None:
        """Whether the store answers a read, without waiting: None when another thread is
        using the connection now (ask again shortly), else the outcome of a one-page read
        (False on an SQLite error). Cheap enough for the event loop: no lock wait, and
        the read does not grow with the number of jobs."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._db.execute("SELECT 1 FROM tokens LIMIT 1").fetchall()
            return True
        except sqlite3.Error:
            return False
        finally:
            self._lock.release()

    def counts_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for row in self._read("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            counts[row[0]] = int(row[1])
        return counts

    def set_state(
        self,
        job_id: str,
        state: str,
        *,
        message: str | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record a state change (and its event) in one transaction."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        now = time.time()
        sets = ["state = ?"]
        args: list[Any] = [state]
        if state == "running":  # a new attempt: its progress starts afresh
            sets += ["started = COALESCE(started, ?)", "attempts = attempts + 1", "progress = NULL"]
            args.append(now)
        if state in ("succeeded", "failed", "cancelled"):
            sets.append("finished = ?")
            args.append(now)
        if result is not None:
            sets.append("result = ?")
            args.append(json.dumps(result, sort_keys=True))
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        self._transaction(
            [
                (f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id)),
                (
                    "INSERT INTO events (job_id, at, state, message) VALUES (?, ?, ?, ?)",
                    (job_id, now, state, message or error),
                ),
            ]
        )

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self._write(
            "UPDATE jobs SET progress = ? WHERE id = ?",
            (json.dumps(progress, sort_keys=True), job_id),
        )

    def request_cancel(self, job_id: str) -> None:
        self._transaction(
            [
                ("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,)),
                (
                    "INSERT INTO events (job_id, at, state, message) "
                    "SELECT id, ?, state, 'cancel requested' FROM jobs WHERE id = ?",
                    (time.time(), job_id),
                ),
            ]
        )

    def delete_job(self, job_id: str) -> None:
        self._transaction(
            [
                ("DELETE FROM jobs WHERE id = ?", (job_id,)),
                (
                    "INSERT INTO events (job_id, at, state, message) VALUES (?, ?, ?, ?)",
                    (job_id, time.time(), "deleted", None),
                ),
            ]
        )

    # --- layouts --------------------------------------------------------------------

    def add_layout(self, layout: LayoutRecord, max_kept: int) -> tuple[LayoutRecord, bool]:
        """Record a token's upload, unless it keeps `max_kept` already (LayoutLimit);
        checked and inserted in one transaction. (the record, whether it is new): the
        same bytes uploaded again are the record kept before."""
        with self._immediate() as db:
            row = db.execute(
                "SELECT * FROM layouts WHERE token_id = ? AND id = ?", (layout.token_id, layout.id)
            ).fetchone()
            if row is not None:
                return LayoutRecord(**dict(row)), False
            kept = int(
                db.execute(
                    "SELECT COUNT(*) FROM layouts WHERE token_id = ?", (layout.token_id,)
                ).fetchone()[0]
            )
            if kept >= max_kept:
                raise LayoutLimit(kept)
            db.execute(
                "INSERT INTO layouts (token_id, id, media_type, width, height, bytes, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    layout.token_id,
                    layout.id,
                    layout.media_type,
                    layout.width,
                    layout.height,
                    layout.bytes,
                    layout.created,
                ),
            )
        return layout, True

    def layout(self, token_id: str, layout_id: str) -> LayoutRecord | None:
        rows = self._read(
            "SELECT * FROM layouts WHERE token_id = ? AND id = ?", (token_id, layout_id)
        )
        return LayoutRecord(**dict(rows[0])) if rows else None

    def layouts_of(self, token_id: str) -> list[LayoutRecord]:
        """A token's layouts, newest first."""
        rows = self._read(
            "SELECT * FROM layouts WHERE token_id = ? ORDER BY created DESC, id", (token_id,)
        )
        return [LayoutRecord(**dict(r)) for r in rows]

    def delete_layout(self, token_id: str, layout_id: str) -> None:
        self._write("DELETE FROM layouts WHERE token_id = ? AND id = ?", (token_id, layout_id))

    def events(self, job_id: str) -> list[tuple[float, str, str | None]]:
        rows = self._read(
            "SELECT at, state, message FROM events WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [(r[0], r[1], r[2]) for r in rows]
