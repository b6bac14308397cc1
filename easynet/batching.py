"""Micro-batching: the network calls of concurrent requests to one model run as one batch.

A request that finds the network idle runs at once, alone (no waiting window, so a single user waits for nothing).
Requests that arrive while it runs queue up; when it ends, the next queued request leads: it takes every queued
request that can share its batch (same gate mode, alpha and input shapes, at most MAX_BATCH) and runs them in one
call, and so on. Each request gets exactly its own rows of the batch's output.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from easynet.fastpath import Runner
from easynet.model import GatedOutput

MAX_BATCH = 8


@dataclass(eq=False)
class _Request:
    rgb: Tensor
    depth: Tensor | None
    gate: str
    alpha: float
    lead: bool = False
    result: GatedOutput | None = None
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple[Any, ...]:
        depth = None if self.depth is None else tuple(self.depth.shape[1:])
        return self.gate, self.alpha, tuple(self.rgb.shape[1:]), depth


class BatchingRunner:
    """A Runner that groups concurrent calls into batches of the runner it wraps (see the module doc)."""

    def __init__(self, runner: Runner, max_batch: int = MAX_BATCH) -> None:
        self.runner, self.max_batch = runner, max_batch
        self.backend, self.device = runner.backend, runner.device
        self.batch_sizes: list[int] = []  # every batch run, in order (for tests and benchmarks; kept short)
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._busy = False

    def __call__(self, rgb: Tensor, depth: Tensor | None, gate: str, alpha: float) -> GatedOutput:
        req = _Request(rgb, depth, gate, alpha)
        with self._lock:
            self._pending.append(req)
            if not self._busy:  # idle: this request leads (and the queue was empty, so it is first)
                self._busy = req.lead = True
        if not req.lead:
            req.ready.wait()  # answered by a batch, or made the next leader
        if req.lead:
            self._run(self._take())  # the first queued request is this one, so this batch answers it
            with self._lock:  # hand over to the oldest waiting request, or go idle
                if self._pending:
                    self._pending[0].lead = True
                    self._pending[0].ready.set()
                else:
                    self._busy = False
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _take(self) -> list[_Request]:
        """The first queued request and every later one that can share its batch."""
        with self._lock:
            key = self._pending[0].key
            group = [r for r in self._pending if r.key == key][: self.max_batch]
            self._pending = [r for r in self._pending if r not in group]
        return group

    def _run(self, group: list[_Request]) -> None:
        first = group[0]
        try:
            rgb = torch.cat([r.rgb for r in group]) if len(group) > 1 else first.rgb
            depth = None
            if first.depth is not None:
                depth = torch.cat([r.depth for r in group]) if len(group) > 1 else first.depth
            out = self.runner(rgb, depth, first.gate, first.alpha)
            for i, r in enumerate(group):
                r.result = out if len(group) == 1 else _rows(out, i)
        except BaseException as err:  # every request of the batch gets the error
            for r in group:
                r.error = err
        self.batch_sizes = [*self.batch_sizes[-999:], len(group)]
        for r in group:
            if r is not first:
                r.ready.set()


def _rows(out: GatedOutput, i: int) -> GatedOutput:
    """Row i of a batched output, as a batch of one."""
    return GatedOutput(*(None if v is None else v[i : i + 1] for v in out))
