"""Finding where a stopped or crashed run can go on: its recorded config and last complete checkpoint."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store import LedgerReader, RunStatus, TwoTierError
from ..store.queue import DAEMON
from ..store.reader import STALE_AFTER_S
from .config import Config, load_config

# Written by the Trainer after the weights and optimizer state: a checkpoint without it was cut short.
TRAINER_STATE = "trainer_state.json"


@dataclass(frozen=True)
class ResumePoint:
    """A run to continue in place: same id, its own config, from `checkpoint` at `step`."""

    run_id: str
    config: Config
    checkpoint: (
        Path | None
    )  # None: from the start (a queued run, or a daemon's run cut off before its first checkpoint)
    step: int


def find_resume_point(ledger: str | Path, ref: str, overrides: dict[str, Any] | None = None) -> ResumePoint:
    """The run `ref` in `ledger` and its last complete checkpoint; refuses runs that cannot resume.

    A queued run starts from the beginning; so does a run the daemon launched that was cut off before
    its first checkpoint (the daemon must be able to take up every run it interrupted).
    """
    with LedgerReader(ledger) as reader:
        run = reader.run(ref)
    if run.status is RunStatus.QUEUED:
        return ResumePoint(
            run.id, load_config(None, {**run.config, "ledger": str(ledger), **(overrides or {})}), None, 0
        )
    if run.status in (RunStatus.FINISHED, RunStatus.CANCELLED):
        raise TwoTierError(
            f"run {run.id} {run.status.value} at step {run.last_step}; there is nothing to resume", exit_code=2
        )
    if run.status.is_live and not run.is_stale(time.time(), STALE_AFTER_S):
        raise TwoTierError(
            f"run {run.id} is still {run.status.value} (its heartbeat is recent); stop it first", exit_code=2
        )
    config = load_config(None, {**run.config, "ledger": str(ledger), **(overrides or {})})
    found = last_complete_checkpoint(Path(config.output_dir) / run.id, world_size=run.world_size)
    if found is None and run.launcher == DAEMON:
        return ResumePoint(run.id, config, None, 0)
    if found is None:
        raise TwoTierError(
            f"run {run.id} has no complete checkpoint under {Path(config.output_dir) / run.id}", exit_code=2
        )
    checkpoint, step = found
    return ResumePoint(run.id, config, checkpoint, step)


def last_complete_checkpoint(run_dir: Path, *, world_size: int = 1) -> tuple[Path, int] | None:
    """The newest `checkpoint-N` whose trainer state was written whole; half-written ones are skipped.

    A run of `world_size` processes saves each rank's random state beside the weights (`rng_state_<rank>.pth`),
    rank 0 the rest, with no barrier between: a checkpoint cut short may lack a rank's, and is skipped too."""
    candidates = []
    for folder in run_dir.glob("checkpoint-*"):
        suffix = folder.name.removeprefix("checkpoint-")
        if suffix.isdigit():
            candidates.append((int(suffix), folder))
    for step, folder in sorted(candidates, reverse=True):
        try:
            state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        ranks_saved = world_size <= 1 or all((folder / f"rng_state_{r}.pth").exists() for r in range(world_size))
        if state.get("global_step") == step and any(folder.glob("*.safetensors")) and ranks_saved:
            return folder, step
    return None
