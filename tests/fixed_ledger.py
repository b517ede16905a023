"""Ledgers with fixed events and times, written through the real writer: for snapshots and long runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from twotier.store import Kind, LedgerWriter, ProbeResult, RunInfo, RunStatus, StepEvent, create_run, open_ledger

START = 1_700_000_000.0
RUN_ID = "5nap5hot0001"
PROBE_WORDS = ("alpha", "delta", "kilo", "tango")


def write_run(path: Path, events: Sequence[StepEvent], *, run_id: str = RUN_ID, name: str = "demo-fixed",
              status: RunStatus = RunStatus.RUNNING, max_steps: int = 100) -> Path:  # fmt: skip
    """Record a run and its events through the real writer; `status` RUNNING leaves it live."""
    ledger = open_ledger(path)
    create_run(ledger, RunInfo(id=run_id, name=name, status=RunStatus.RUNNING, model="demo", dataset="demo",
                               config={"log_steps": 5, "eval_steps": 20}, started_at=START,
                               heartbeat_at=START, max_steps=max_steps))  # fmt: skip
    writer = LedgerWriter(ledger, run_id, flush_interval=0.01)
    for event in events:
        writer.submit(event)
    writer.close(status)
    ledger.close()
    return path


def fast(step: int, prompt: str | None = None, golden: str | None = None, run_id: str = RUN_ID) -> StepEvent:
    word = f"word{step:03d}"
    return StepEvent(
        run_id=run_id, step=step, kind=Kind.FAST, wall_time=START + 2 * step, elapsed_s=2.0 * step,
        prompt=prompt if prompt is not None else f"reverse {word}", golden=golden if golden is not None else word[::-1],
        loss=2.0 / math.sqrt(step), prompt_tokens=16, golden_tokens=8, batch_loss=3.0 / math.sqrt(step),
        learning_rate=3e-3, grad_norm=1.5, tokens_per_s=1234.0, epoch=step / 100,
    )  # fmt: skip


def full(step: int, output: str, match: bool, prompt: str | None = None, golden: str | None = None,
         run_id: str = RUN_ID) -> StepEvent:  # fmt: skip
    base = fast(step, prompt, golden, run_id)
    probes = tuple(
        ProbeResult(probe_id=i, prompt=f"reverse {w}", golden=w[::-1], model_output=w[::-1] if (i + step // 20) % 2 else w,
                    match=bool((i + step // 20) % 2), loss=0.5)
        for i, w in enumerate(PROBE_WORDS)
    )  # fmt: skip
    return StepEvent(
        **{**base.__dict__, "kind": Kind.FULL, "probes": probes, "model_output": output,
           "output_tokens": len(output) + 1, "match": match, "train_loss_mean": 3.3 / math.sqrt(step),
           "val_loss": 3.6 / math.sqrt(step), "gap": 0.3 / math.sqrt(step), "gap_ok": step > 20,
           "probe_accuracy": sum(p.match for p in probes) / len(probes),
           "probe_token_accuracy": 0.75, "eval_seconds": 1.25},
    )  # fmt: skip


def fixed_events() -> list[StepEvent]:
    events = []
    for step in range(5, 65, 5):
        if step % 20:
            events.append(fast(step))
        else:
            word = f"word{step:03d}"
            events.append(full(step, word[::-1] if step >= 40 else word[::-1][:-2] + "xx", step >= 40))
    return events
