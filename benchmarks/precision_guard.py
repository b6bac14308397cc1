"""The bf16 accuracy guard (benchmark code, not part of the library): a checkpoint's test metrics and its sample
verdicts in bf16 against fp32.

bf16 is only worth its speed if it does not change what the model finds. For one checkpoint the guard
evaluates the test split twice (fp32, then the network under bf16 autocast, as the bf16 runner runs it) and
predicts each given sample twice; it passes when I-AUROC and AUPRO of every gate mode move by at most
TOLERANCE and every sample keeps its verdict. Where the CPU has no native bf16 the same rounding is emulated
(slower, same numbers up to the order of accumulation), so the guard can be checked on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from easynet.card import ModelCard
from easynet.checkpoint import load_checkpoint
from easynet.gate import MODES
from easynet.pipeline import evaluate_category
from easynet.runtime import native_bf16, resolve_device

TOLERANCE = 0.005  # largest allowed change of a guarded metric (issue 17)
GUARDED = ("i_auroc", "aupro")
PRECISIONS = ("fp32", "bf16")


@dataclass
class GuardResult:
    """fp32 and bf16 side by side for one checkpoint."""

    checkpoint: str
    category: str
    native: bool  # whether bf16 ran natively here (else emulated)
    metrics: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # gate -> metric -> (fp32, bf16)
    verdicts: dict[str, dict[str, tuple[bool, bool]]] = field(default_factory=dict)  # sample -> gate -> (fp32, bf16)

    def failures(self) -> list[str]:
        """One sentence per guarded number that moved too far or verdict that changed; empty when it passes."""
        out = []
        for gate, values in self.metrics.items():
            for name, (a, b) in values.items():  # undefined in both is fine; in one only (nan) fails
                if not (math.isnan(a) and math.isnan(b)) and not abs(a - b) <= TOLERANCE:
                    out.append(f"{self.category} {gate} {name}: fp32 {a:.4f}, bf16 {b:.4f} (allowed {TOLERANCE})")
        for sample, gates in self.verdicts.items():
            for gate, (a, b) in gates.items():
                if a != b:
                    out.append(f"{sample} {gate}: fp32 says {_word(a)}, bf16 says {_word(b)}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()

    def max_change(self) -> float:
        changes = [abs(a - b) for v in self.metrics.values() for a, b in v.values() if math.isfinite(a - b)]
        return max(changes, default=0.0)

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "category": self.category,
            "native_bf16": self.native,
            "tolerance": TOLERANCE,
            "passed": self.passed,
            "max_change": round(self.max_change(), 5),
            "metrics": {g: {k: [round(a, 5), round(b, 5)] for k, (a, b) in v.items()} for g, v in self.metrics.items()},
            "verdicts_changed": sum(a != b for v in self.verdicts.values() for a, b in v.values()),
            "verdicts": len(self.verdicts),
            "failures": self.failures(),
        }


def _word(flagged: bool) -> str:
    return "anomalous" if flagged else "good"


def guard_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    category: str | None,
    samples: Sequence[tuple[str, Path, Path | None]] = (),
    *,
    gates: Sequence[str] = MODES,
    data_format: str | None = None,
    device: str = "cpu",
) -> GuardResult:
    """Test-split metrics of ``gates`` and the verdicts on ``samples`` ((name, rgb, depth or None)) in fp32 and
    bf16. The checkpoint's calibration is used as it is for both."""
    from easynet.predict import Predictor

    dev = resolve_device(device)
    result = GuardResult(str(checkpoint), str(category), native_bf16(dev))
    reports = {
        p: evaluate_category(
            checkpoint, data, category, gates=gates, data_format=data_format, device=device, precision=p
        )[0]
        for p in PRECISIONS
    }
    for gate in reports["fp32"].gates:
        result.metrics[gate] = {
            name: (float(reports["fp32"].gates[gate][name]), float(reports["bf16"].gates[gate][name]))
            for name in GUARDED
        }
    if samples:
        ckpt = load_checkpoint(checkpoint)
        card = ModelCard.from_checkpoint(ckpt, Path(checkpoint).stem)
        predictors = {
            p: Predictor(ckpt.build_model(), ckpt.calibration, dev, card, precision=p, force_precision=True)
            for p in PRECISIONS
        }
        for name, rgb, depth in samples:
            found = {p: predictors[p].predict_gates(rgb, depth, gates) for p in PRECISIONS}
            result.verdicts[name] = {g: (found["fp32"][g].is_anomalous, found["bf16"][g].is_anomalous) for g in gates}
    return result
