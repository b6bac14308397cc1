"""Multi-process training: `torchrun --nproc_per_node=2 -m easynet train` (DistributedDataParallel, gloo on CPU)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from easynet.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_processes_train_one_checkpoint(tmp_path):
    from helpers import make_mvtec3d_tree

    make_mvtec3d_tree(tmp_path / "data", "toy", size=64, n_train=4, n_val=2)
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "easynet", "train", "--data", str(tmp_path / "data"), "--category", "toy", "--out", str(out),
        "--preset", "lite", "--image-size", "32", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("saved ") == 1  # only rank 0 calibrates and writes
    ckpt = load_checkpoint(out)
    assert ckpt.provenance["steps"] == 2
    assert ckpt.provenance["world_size"] == 2  # really two DDP ranks, not two independent runs
    assert ckpt.provenance["global_batch_size"] == 4
    model = ckpt.build_model()
    assert all(p.isfinite().all() for p in model.parameters())
