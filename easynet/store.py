"""The workspace's state store: one SQLite database (stdlib ``sqlite3``, WAL mode) beside the files it indexes.

Everything that must outlive a server process lives here: settings (the browser-session secret), sessions, fine-tuning
jobs, the model registry (versions, the active one per category), the annotation index, the review queue and the
append-only audit trail of human verdicts. Files (images, masks, checkpoints) stay on disk in their folders; the
database says whose they are and what they mean.

One ``Store`` per database file and process; each thread gets its own connection. Writes go through
``transaction()`` (BEGIN IMMEDIATE: one writer at a time, readers never blocked under WAL); ``busy_timeout`` makes a
second writer wait instead of failing.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "easynet.sqlite3"
BUSY_TIMEOUT_MS = 10_000
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    owner TEXT PRIMARY KEY, client TEXT, created REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_client ON sessions (client, created);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, client TEXT, token TEXT NOT NULL, state TEXT NOT NULL,
    created REAL NOT NULL, finished REAL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, state);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, version INTEGER NOT NULL, owner TEXT NOT NULL,
    category TEXT, path TEXT NOT NULL, parent TEXT, created REAL NOT NULL, worse INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 0, facts TEXT NOT NULL DEFAULT '{}', UNIQUE (owner, name, version)
);
CREATE TABLE IF NOT EXISTS annotations (
    owner TEXT NOT NULL, category TEXT NOT NULL, entry TEXT NOT NULL, split TEXT NOT NULL, defect TEXT NOT NULL,
    files TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (owner, category, entry)
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, batch TEXT, image_hash TEXT NOT NULL,
    image TEXT NOT NULL, depth TEXT, name TEXT NOT NULL, model TEXT NOT NULL, version INTEGER, category TEXT,
    gate TEXT NOT NULL, head TEXT NOT NULL, score REAL NOT NULL, threshold REAL NOT NULL, head_threshold REAL NOT NULL,
    model_verdict TEXT NOT NULL, reason TEXT, picture TEXT, mask TEXT, priority REAL NOT NULL, created REAL NOT NULL,
    human_verdict TEXT, decided REAL, entry TEXT
);
CREATE INDEX IF NOT EXISTS reviews_queue ON reviews (owner, human_verdict, priority, id);
CREATE INDEX IF NOT EXISTS reviews_by_model ON reviews (owner, model, human_verdict);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, review INTEGER, image_hash TEXT NOT NULL, image TEXT NOT NULL,
    model TEXT NOT NULL, version INTEGER, gate TEXT NOT NULL, score REAL NOT NULL, threshold REAL NOT NULL,
    model_verdict TEXT NOT NULL, human_verdict TEXT NOT NULL, mask TEXT, defect TEXT, who TEXT NOT NULL,
    at REAL NOT NULL, batch TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_model ON audit (model, at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
AUDIT_COLUMNS = (
    "id", "review", "image_hash", "image", "model", "version", "gate", "score", "threshold", "model_verdict",
    "human_verdict", "mask", "defect", "who", "at", "batch",
)  # fmt: skip


class Store:
    """A workspace database: ``Store(folder)`` opens (and creates) ``folder/easynet.sqlite3``."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._create()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _create(self) -> None:
        self.db.executescript(SCHEMA)
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    # --- settings ---
    def setting(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else default

    def setting_once(self, key: str, make: Any) -> str:
        """The stored value of ``key``, created by ``make()`` on first use (atomically: two processes agree)."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            if row:
                return row["value"]
            value = str(make())
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))
            return value

    # --- audit trail ---
    def audit(self, row: dict[str, Any]) -> int:
        """Append one human decision (the columns of AUDIT_COLUMNS but id); returns its id."""
        values = {k: row.get(k) for k in AUDIT_COLUMNS if k != "id"}
        values["at"] = values["at"] or time.time()
        with self.transaction() as db:
            cur = db.execute(
                f"INSERT INTO audit ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            return int(cur.lastrowid)

    def audit_rows(self, model: str | None = None, batch: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if batch:
            where.append("batch = ?")
            args.append(batch)
        sql = f"SELECT * FROM audit {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id"
        return [dict(r) for r in self.query(sql, args)]


def audit_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The audit rows as CSV text (a header, one line per decision, times as ISO 8601 UTC)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(AUDIT_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["at"])) if row.get("at") else ""
        writer.writerow({**row, "at": at})
    return text.getvalue()


def dumps(value: Any) -> str:
    """JSON for a TEXT column."""
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None
