"""Atomic writes: a process SIGKILLed while saving checkpoints and job states leaves an old or new one, never half."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from easynet.checkpoint import load_checkpoint
from easynet.store import DB_NAME

REPO = Path(__file__).resolve().parents[1]
KILLS = 4
WRITER = """
import sys, torch
from pathlib import Path
from app.jobs import Job, JobRunner
from easynet.checkpoint import Checkpoint, save_checkpoint
from easynet.config import MODEL_PRESETS

folder = Path(sys.argv[1])
runner = JobRunner(folder / "jobs", train_fn=None)
job = Job("0001", "toy", "data", steps=10**6)
cfg = MODEL_PRESETS["lite"]
print("ready", flush=True)
i = int(sys.argv[2])
while True:
    i += 1
    weights = {"w": torch.full((1_000_000,), float(i))}  # 4 MB: the write takes a while
    save_checkpoint(Checkpoint(cfg, weights, provenance={"i": i}), folder / "model.pt")
    job.step, job.loss = i, [{"step": s, "total": 1.0} for s in range(i % 500 + 1)]
    runner._save(job)
"""


@pytest.mark.slow
def test_killed_writer_leaves_old_or_new_files(tmp_path):
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EASYNET_WORKSPACE": str(tmp_path / "ws")}
    last = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(last)], stdout=subprocess.PIPE, env=env, cwd=REPO
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

        ckpt = load_checkpoint(tmp_path / "model.pt")  # always a whole file under the final name
        i = ckpt.provenance["i"]
        assert (ckpt.state_dict["w"] == float(i)).all() and i >= last
        rows = sqlite3.connect(tmp_path / DB_NAME).execute("SELECT data FROM jobs WHERE id = '0001'").fetchall()
        record = json.loads(rows[0][0])  # the database holds the last committed state of the job, whole
        assert record["id"] == "0001" and len(record["loss"]) == record["step"] % 500 + 1
        last = i
    assert last > 0  # the writer did get through saves
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert all(name.startswith(".") for name in leftovers)  # only hidden temp files, never under a final name


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    from easynet.atomic import atomic_write, atomic_write_bytes

    target = tmp_path / "sub" / "report.json"
    atomic_write_bytes(target, b"old")  # creates the folder

    def half_then_fail(handle):
        handle.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]
    assert atomic_write_bytes(target, b"new", durable=False) == target and target.read_bytes() == b"new"


def test_written_files_get_the_mode_of_a_plain_open_not_mkstemps_0600(tmp_path):
    import stat

    from easynet.atomic import FILE_MODE, atomic_write_bytes
    from easynet.visualize import write_png

    umask = os.umask(0)
    os.umask(umask)
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")  # what open() gives a new file under this umask
    for path in (
        atomic_write_bytes(tmp_path / "report.csv", b"x"),
        write_png(tmp_path / "o.png", np.zeros((2, 2), np.uint8)),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == FILE_MODE
    if umask == 0o022:  # the usual default: readable by a web server or a colleague
        assert FILE_MODE == 0o644
