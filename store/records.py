"""The records that cross the ledger boundary, and the single declaration of what the ledger stores.

`StepEvent`, `ProbeResult` and `RunInfo` are the schema: `store/schema.py` derives the tables, the
writer's rows, the reader's columns and the export fields from their fields. Adding a field here (with
a default) is the whole change: it gets a column, existing ledgers get it on open, and it is written,
read and exported. The field's metadata says how it is stored when that is not a plain value.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# How a field is stored, when not as a plain column of its own type (see store/schema.py).
TEXT = {"store": "text"}  # stored once in the `text` table; the column holds its id
JSON = {"store": "json"}  # a dict kept as JSON text
KEY = {"store": "key"}  # the row id
NOT_STORED = {"store": "none"}  # kept elsewhere (an event's probes are rows of their own)
RUN = {"store": "run"}  # the run this row belongs to (a foreign key)


def stored(how: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Field metadata: `how` (one of the constants above) plus options: `column` (the column's name when
    it differs from the field's), `index` (index the column), `nan` (a NaN survives storage: SQLite turns
    NaN into NULL, so a flag column `<name>_nonfinite` keeps "not finite" apart from "absent")."""
    return {**(how or {}), **options}


class Kind(str, Enum):
    """Which tier produced an event."""

    FAST = "fast"
    FULL = "full"


class RunStatus(str, Enum):
    QUEUED = "queued"  # submitted to the daemon, not started yet
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    CANCELLED = "cancelled"  # taken off the queue before it started

    @property
    def is_live(self) -> bool:
        return self in (RunStatus.RUNNING, RunStatus.PAUSED)


class Action(str, Enum):
    """What a control request asks of a run."""

    PAUSE = "pause"
    UNPAUSE = "unpause"
    STOP = "stop"


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """One probe's answer at one full eval. A probe without a golden (a prompt of your own, only answered)
    has no golden, verdict, score or loss."""

    probe_id: int
    prompt: str = field(metadata=stored(TEXT))
    golden: str | None = field(metadata=stored(TEXT))
    model_output: str = field(metadata=stored(TEXT, column="output"))
    match: bool | None
    loss: float | None
    score: float | None = None  # chrF of the answer against the golden, 0 to 1 (engine/matching.py)


@dataclass(frozen=True, kw_only=True)
class StepEvent:
    """A fast log or a full eval. The fields a fast log does not have stay None; the order is the export's."""

    id: int | None = field(default=None, metadata=stored(KEY))
    run_id: str = field(metadata=stored(RUN))
    step: int
    kind: Kind
    prompt: str = field(metadata=stored(TEXT))
    golden: str = field(metadata=stored(TEXT))
    loss: float | None = field(metadata=stored(nan=True))  # this example's, from the step's own logits
    prompt_tokens: int
    golden_tokens: int
    model_output: str | None = field(default=None, metadata=stored(TEXT, column="output"))
    output_tokens: int | None = None
    match: bool | None = None
    match_rule: str | None = None  # the rule the verdicts of this full eval used (the run's `match`)
    score: float | None = None  # chrF of the output against the golden, 0 to 1
    train_loss_mean: float | None = None
    val_loss: float | None = None
    gap: float | None = None
    gap_ok: bool | None = None
    probe_accuracy: float | None = None  # MATCH rate over the probes with a golden
    probe_score: float | None = None  # their mean chrF: it moves before the verdicts do
    probe_token_accuracy: float | None = None
    eval_seconds: float | None = None
    # A full eval that failed (say, out of memory in generation) keeps why; its results stay None.
    eval_error: str | None = None
    batch_loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    epoch: float | None = None
    # In a multi-process run, the rank whose batch the example came from (the losses are over every rank's).
    example_rank: int | None = None
    # Every other number the trainer logged at this step, by its key (TRL's entropy, mean_token_accuracy...).
    metrics: dict[str, float] = field(default_factory=dict, metadata=stored(JSON))
    wall_time: float
    elapsed_s: float
    probes: tuple[ProbeResult, ...] = field(default=(), metadata=stored(NOT_STORED))

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


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """One run as the ledger knows it."""

    id: str = field(metadata=stored(KEY))
    name: str = field(metadata=stored(index=True))
    status: RunStatus = field(metadata=stored(index=True))
    model: str
    dataset: str
    config: dict[str, Any] = field(metadata=stored(JSON, column="config_json"))
    started_at: float
    heartbeat_at: float
    ended_at: float | None = None
    max_steps: int | None = None
    last_step: int = 0
    error: str | None = None
    # The process writing the run, so a viewer on the same host knows at once when it died.
    host: str | None = None
    pid: int | None = None
    # When a process last took the run up (started or resumed it): a viewer following the newest run follows this.
    opened_at: float | None = None
    # Ended by a signal (the daemon stopping, a hangup), not by a request: the daemon resumes it when it starts again.
    interrupted: bool = False
    # The daemon's queue: what launches the run, its place in the queue, and the working directory and
    # environment it was submitted from (only the variables that matter: CUDA_*, HF_*, PYTORCH_*).
    launcher: str | None = None
    queue_position: float | None = None
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict, metadata=stored(JSON))
    # What a run does before its first step (loading the model, tokenizing...), for a viewer in another process:
    # {"name": ..., "done": rows so far, "total": rows or None, "since": when it began}; None once training.
    phase: dict[str, Any] | None = field(default=None, metadata=stored(JSON))
    trained_from: float | None = None  # when training began: started_at to here was loading
    # A run launched as several processes (torchrun, accelerate launch, srun torchrun): how many, on how many
    # nodes, the collective backend (gloo, nccl), accelerate's distributed type (NO, MULTI_CPU, MULTI_GPU, FSDP,
    # DEEPSPEED), the examples of one optimizer step over every rank, and the nodes' host names.
    world_size: int = 1
    node_count: int = 1
    backend: str | None = None
    distributed_type: str | None = None
    global_batch_size: int | None = None
    hosts: list[str] = field(default_factory=list, metadata=stored(JSON))

    @property
    def opened(self) -> float:
        return self.opened_at if self.opened_at is not None else self.started_at

    def is_stale(self, now: float, after_s: float) -> bool:
        """A live run whose process is gone: its writer has not beaten for `after_s` seconds, or it ran
        on this host under a process id that no longer exists (known at once, without waiting)."""
        if not self.status.is_live:
            return False
        return now - self.heartbeat_at > after_s or self._process_gone()

    def _process_gone(self) -> bool:
        if self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, under another user
            return False
        return False


@dataclass(frozen=True, kw_only=True)
class ControlRequest:
    """A request to pause, unpause or stop a run, made from any terminal through the ledger; the run acts
    on it at its next step end and marks it done."""

    id: int | None = field(default=None, metadata=stored(KEY))
    run_id: str = field(metadata=stored(RUN))
    action: Action
    requested_at: float
    requested_by: str
    done_at: float | None = None
