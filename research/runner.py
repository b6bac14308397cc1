"""What the research scripts share: build a run's configs from `key=value` settings, train it, evaluate it, and
record one JSON row per run (printed, and appended to a .jsonl file under research/results/).

Only the library's public API: `easynet.config.apply_overrides`, `easynet.pipeline.train_category` and
`evaluate_category`, `easynet.calibrate.calibration_set`. An experiment that needs more than these changes
settings by name; it never patches the library.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from easynet.calibrate import calibration_set
from easynet.checkpoint import Checkpoint, load_checkpoint
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS, ModelConfig, TrainConfig, apply_overrides
from easynet.data.registry import Split, open_dataset
from easynet.gate import MODES
from easynet.pipeline import evaluate_category, loader_options, train_category
from easynet.results import TrainSummary

RESULTS = Path(__file__).resolve().with_name("results")
DATA = "data/synthetic"  # `python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0`


def configs(
    settings: Sequence[str] = (), model_preset: str = "lite", train_preset: str | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """The presets (training: the model preset's own by default) with ``key=value`` settings applied, e.g.
    ``["depth_encoding=metric", "synth.depth_amplitude=0.2,1.0", "seed=67"]`` (`easynet.config.apply_overrides`)."""
    model_cfg = MODEL_PRESETS[model_preset]
    train_cfg = TRAIN_PRESETS[train_preset or model_preset]
    model_cfg, train_cfg, _ = apply_overrides(model_cfg, train_cfg, list(settings))
    return model_cfg, train_cfg


def train(
    data: str | Path,
    category: str,
    out: str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    preset: str = "lite",
    device: str = "cpu",
) -> tuple[TrainSummary, int]:
    """Train, calibrate on validation and save ``out``; returns (summary, seconds taken)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    summary = train_category(
        data, category, out, preset=preset, model_cfg=model_cfg, train_cfg=train_cfg, device=device, progress=False
    )
    return summary, round(time.time() - start)


def test_table(
    checkpoint: str | Path, data: str | Path, category: str, *, device: str = "cpu", gates: Sequence[str] = MODES
) -> dict[str, list[Any]]:
    """{gate: [I-AUROC, {defect kind: I-AUROC}]} of a checkpoint on ``data``'s test split (a dev root's too)."""
    report, _, _ = evaluate_category(checkpoint, data, category, gates=gates, device=device)
    return report.i_auroc_table()


def calibration_items(checkpoint: str | Path, data: str | Path, category: str, synth: Any = None) -> tuple:
    """(checkpoint, eval model, items, labels, source) of a checkpoint's calibration set on ``data``'s validation
    split: clean images and their synthetic anomalies, as `calibrate` builds them (``synth``: the checkpoint's
    training recipe unless given). Validation only, never test."""
    ckpt: Checkpoint = load_checkpoint(checkpoint)
    model = ckpt.build_model().eval()
    validation = open_dataset(data, category, Split.VALIDATION, **loader_options(ckpt.model_config))
    if synth is None and ckpt.train_config is not None:
        synth = ckpt.train_config.synth
    items, labels, source = calibration_set(model, validation, synth)
    return ckpt, model, items, labels, source


def runs(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``CATEGORY=CHECKPOINT`` arguments -> [(category, checkpoint)]."""
    out = []
    for pair in pairs:
        category, sep, path = pair.partition("=")
        if not sep or not category or not path:
            raise SystemExit(f"expected CATEGORY=CHECKPOINT, got {pair!r}")
        out.append((category, path))
    return out


def short_name(path: str | Path) -> str:
    """A checkpoint's folder and file name: enough to tell runs of one name apart in a results file."""
    return "/".join(Path(path).parts[-2:])


def checkpoints_cli(doc: str) -> argparse.Namespace:
    """The command line of a script measured per trained checkpoint: CATEGORY=CHECKPOINT ... [--data] [--out]."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="CATEGORY=CHECKPOINT")
    p.add_argument("--data", default=DATA)
    add_out(p)
    return p.parse_args()


def add_out(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The ``--out`` option: the .jsonl file under research/results/ that each row is appended to."""
    where = f"default: results/{default}" if default else "default: print only"
    parser.add_argument(
        "--out", default=default, help=f"append each JSON row to this .jsonl file ({where}; - prints only)"
    )


def record(row: dict[str, Any], out: str | Path | None = None) -> None:
    """Print ``row`` as one JSON line and append it to ``out`` (a bare name is taken under research/results/).
    One ``write`` of one line in append mode, so runs side by side do not interleave their rows."""
    line = json.dumps(row)
    print(line, flush=True)
    if out and str(out) != "-":
        path = Path(out) if Path(out).parent != Path() else RESULTS / out
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line + "\n")
