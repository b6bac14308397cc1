"""The workspace database: WAL mode, an audit trail that cannot be rewritten, writers that lose nothing, settings
agreed between processes, and a workspace of the earlier layout imported once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

from easynet.store import AUDIT_COLUMNS, Store, audit_csv


def _row(i: int) -> dict:
    return {"review": i, "image_hash": f"h{i}", "image": f"img{i}.png", "model": "gasket", "version": 1,
            "gate": "control", "score": 0.1 * i, "threshold": 0.5, "model_verdict": "OK", "human_verdict": "NG",
            "who": "ana", "at": 1_700_000_000.0 + i}  # fmt: skip


def test_the_database_is_in_wal_mode_and_survives_reopening(tmp_path):
    db = Store(tmp_path)
    assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.audit(_row(1))
    again = Store(tmp_path)  # another process would open it the same way
    assert [r["image"] for r in again.audit_rows()] == ["img1.png"]


def test_the_audit_trail_is_append_only(tmp_path):
    db = Store(tmp_path)
    first = db.audit(_row(1))
    for sql in ("UPDATE audit SET human_verdict = 'OK' WHERE id = ?", "DELETE FROM audit WHERE id = ?"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"), db.transaction() as conn:
            conn.execute(sql, (first,))
    # a raw connection that skips the Store class is refused the same way (the triggers live in the file)
    raw = sqlite3.connect(tmp_path / "easynet.sqlite3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit")
    raw.close()
    assert db.audit_rows()[0]["human_verdict"] == "NG"


def test_concurrent_writers_lose_no_row(tmp_path):
    db = Store(tmp_path)

    def write(start: int) -> None:
        for i in range(start, start + 25):
            db.audit(_row(i))

    threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(r["review"] for r in db.audit_rows())
    assert ids == sorted(k * 100 + i for k in range(4) for i in range(25))


def test_two_processes_agree_on_a_setting_made_once(tmp_path):
    code = (
        "import secrets, sys; from easynet.store import Store; "
        "print(Store(sys.argv[1]).setting_once('secret', lambda: secrets.token_hex(8)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    values = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(values) == 1 and len(values.pop()) == 16


def test_audit_csv_has_every_column_and_utc_times(tmp_path):
    db = Store(tmp_path)
    db.audit(_row(2) | {"defect": "cut, deep"})
    lines = audit_csv(db.audit_rows()).splitlines()
    assert lines[0].split(",") == list(AUDIT_COLUMNS)
    assert "2023-11-14T22:13:22Z" in lines[1] and '"cut, deep"' in lines[1]


def test_a_workspace_of_the_earlier_layout_is_imported_once(tmp_path, monkeypatch):
    from app import workspace
    from easynet.visualize import write_png

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path))
    (tmp_path / "jobs").mkdir()
    job = {"id": "0007", "owner": "abc", "state": "done", "created": 5.0, "finished": 9.0, "category": "gasket"}
    (tmp_path / "jobs" / "0007.json").write_text(json.dumps(job))
    (tmp_path / "jobs" / "broken.json").write_text("{not json")
    rgb = tmp_path / "sessions" / "abc" / "annotations" / "gasket" / "train" / "good" / "rgb" / "000.png"
    rgb.parent.mkdir(parents=True)
    write_png(rgb, np.zeros((8, 8, 3), np.uint8))
    model = tmp_path / "sessions" / "abc" / "models" / "gasket_ft_0007.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    db = workspace.store(tmp_path)
    jobs = db.query("SELECT id, owner, state FROM jobs")
    assert [tuple(r) for r in jobs] == [("0007", "abc", "done")]
    entries = db.query("SELECT owner, category, entry FROM annotations")
    assert [tuple(r) for r in entries] == [("abc", "gasket", "train/good/000")]
    models = db.query("SELECT name, owner, category, active FROM models")
    assert [tuple(r) for r in models] == [("gasket_ft_0007", "abc", "gasket", 1)]
    # a second import (a restart) adds nothing, even when new loose files appear
    (tmp_path / "jobs" / "0008.json").write_text(json.dumps(job | {"id": "0008"}))
    workspace._imported.clear()  # a restarted process
    assert len(workspace.store(tmp_path).query("SELECT id FROM jobs")) == 1
