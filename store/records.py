"""Plain records that cross the ledger boundary: what the engine writes and what readers get back."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(str, Enum):
    """Which tier produced an event."""

    FAST = "fast"
    FULL = "full"


class RunStatus(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        return self in (RunStatus.RUNNING, RunStatus.PAUSED)


@dataclass(frozen=True)
class ProbeResult:
    """One held-out probe example at one full eval."""

    probe_id: int
    prompt: str
    golden: str
    model_output: str
    match: bool
    loss: float | None


@dataclass(frozen=True)
class StepEvent:
    """A fast log or a full eval. Fields a fast log does not have stay None."""

    run_id: str
    step: int
    kind: Kind
    wall_time: float
    elapsed_s: float
    prompt: str
    golden: str
    loss: float | None
    prompt_tokens: int
    golden_tokens: int
    batch_loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    epoch: float | None = None
    model_output: str | None = None
    output_tokens: int | None = None
    match: bool | None = None
    train_loss_mean: float | None = None
    val_loss: float | None = None
    gap: float | None = None
    gap_ok: bool | None = None
    heldout_accuracy: float | None = None
    heldout_token_accuracy: float | None = None
    eval_seconds: float | None = None
    eval_error: str | None = None
    probes: tuple[ProbeResult, ...] = ()
    id: int | None = None

    @property
    def is_full(self) -> bool:
        return self.kind is Kind.FULL

    def first_nonfinite(self, fields: tuple[str, ...]) -> tuple[str, float] | None:
        """The first of `fields` holding NaN or infinity, with its value; None when all are finite or absent."""
        for name in fields:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                return name, value
        return None

    @property
    def loss_is_finite(self) -> bool:
        return self.loss is not None and math.isfinite(self.loss)


@dataclass(frozen=True)
class RunInfo:
    """One run as the ledger knows it."""

    id: str
    name: str
    status: RunStatus
    model: str
    dataset: str
    config: dict[str, Any]
    started_at: float
    heartbeat_at: float
    ended_at: float | None = None
    max_steps: int | None = None
    last_step: int = 0
    error: str | None = None

    def is_stale(self, now: float, after_s: float) -> bool:
        """A live run whose process is gone: its writer has not beaten for `after_s` seconds, or it ran
        on this host under a process id that no longer exists (known at once, without waiting)."""
        if not self.status.is_live:
            return False
        return now - self.heartbeat_at > after_s or self._process_gone()

    def _process_gone(self) -> bool:
        pid, host = self.config.get("pid"), self.config.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, under another user
            return False
        return False
