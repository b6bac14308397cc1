"""Is "metric depth makes dents worse" more than run-to-run noise? Gasket, `lite`, the `paper` training preset at
800 steps, one depth encoding and one training seed per run. Needs
`python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python research/seed_run.py height 67 --work runs/seed      # one JSON line per run
    python research/seed_run.py metric 67 --work runs/seed

Results: results/seeds.json (seeds 66-68 of both encodings; results/gasket.json is `metric` with seed 66).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import runner

from easynet.config import DEPTH_ENCODINGS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("encoding", choices=DEPTH_ENCODINGS)
    p.add_argument("seed", type=int)
    p.add_argument("--work", default="runs/seed")
    p.add_argument("--data", default=runner.DATA)
    p.add_argument("--device", default="cpu")
    runner.add_out(p)
    a = p.parse_args()
    settings = [f"depth_encoding={a.encoding}", "steps=800", f"seed={a.seed}"]
    model_cfg, train_cfg = runner.configs(settings, train_preset="paper")
    out = Path(a.work) / f"gasket_{a.encoding}_{a.seed}.pt"
    summary, seconds = runner.train(a.data, "gasket", out, model_cfg, train_cfg, device=a.device)
    row = {"encoding": a.encoding, "seed": a.seed, "s": seconds, "validation": summary.validation}
    runner.record({**row, "test": runner.test_table(out, a.data, "gasket", device=a.device)}, a.out)


if __name__ == "__main__":
    main()
