"""Atomic writes: a process SIGKILLed while saving checkpoints and job files leaves an old or new file, never half."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from easynet.checkpoint import load_checkpoint

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
        record = json.loads((tmp_path / "jobs" / "0001.json").read_text())
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
