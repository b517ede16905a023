"""Issue 11: what the fast log adds to a step with 2 processes (torchrun, gloo on CPU), against no logging.

`measure` launches `torchrun --nproc-per-node 2 -m bench.distfastlog OUT`; every rank trains the same
interleaved variants (the fast log's all-reduce is a collective) and rank 0 writes its step times to OUT.
Each repetition's ratio is taken between runs that ran side by side, as in the one-process section.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twotier.engine.cadence import TierSettings
from twotier.engine.distributed import rank, trainer_needs_use_cpu

from .fastlog import WARMUP_STEPS, StepClock
from .stats import Row, Sample, judged, ratios
from .workload import Workload, ledger_sink, load_workload, scratch_dir, two_tier_trainer

SECTION = "11 fast log, 2 processes"
VARIANTS = {"off": 0, "every step": 1, "every 10": 10}  # log_steps
LAUNCH_S = 900


def measure(quick: bool) -> list[Row]:
    steps, repeats = (30, 3) if quick else (50, 5)
    torchrun = Path(sys.executable).with_name("torchrun")
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        found = Path(folder) / "times.json"
        command = ["timeout", str(LAUNCH_S), str(torchrun), "--standalone", "--nproc-per-node", "2"]
        command += ["-m", "bench.distfastlog", str(found), str(steps), str(repeats)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0 or not found.exists():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return [Row(SECTION, "2-process run", None, note=f"torchrun exited {done.returncode}: {tail}")]
        times: dict[str, list[float]] = json.loads(found.read_text())
    off = times["off"]
    per_step = f"median of {steps - WARMUP_STEPS} steps per run on rank 0, {repeats} interleaved runs per variant"
    return [
        Row(SECTION, "step, no logging (eval off)", Sample.of(off).scaled(1000), "ms/step", note=per_step),
        Row(SECTION, "step, fast log every step", Sample.of(times["every step"]).scaled(1000), "ms/step"),
        judged(
            Row(SECTION, "overhead ratio: log_steps=1 / off", ratios(times["every step"], off), "x", "<= 1.03"),
            lambda ratio: ratio <= 1.03,
        ),
        judged(
            Row(SECTION, "overhead ratio: log_steps=10 / off", ratios(times["every 10"], off), "x", "<= 1.03"),
            lambda ratio: ratio <= 1.03,
        ),
    ]


def _seconds_per_step(work: Workload, log_steps: int, steps: int) -> float:
    """One run of the runner's trainer on every rank; rank 0 alone publishes into a real ledger, as in a run."""
    clock = StepClock()
    with ledger_sink() as publish, tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        trainer = two_tier_trainer(
            work,
            settings=TierSettings(log_steps=log_steps, eval_steps=0),
            max_steps=steps,
            publish=publish if rank() == 0 else (lambda event: None),
            run_dir=Path(folder),
            callbacks=[clock],
        )
        trainer.train()
    return clock.seconds_per_step()


def main(out: Path, steps: int, repeats: int) -> int:
    """A worker: the same variants in the same order on every rank (each training is a collective)."""
    import torch
    from transformers import TrainingArguments

    torch.set_num_threads(1)
    scratch_dir()
    # The arguments open the process group (gloo: `use_cpu` when launched without an accelerator).
    arguments = TrainingArguments(output_dir=str(scratch_dir()), use_cpu=trainer_needs_use_cpu())
    with arguments.main_process_first(local=True):
        work = load_workload()
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    _seconds_per_step(work, 1, WARMUP_STEPS + 2)  # the first run in a process pays one-time set-up
    names = list(VARIANTS)
    for rep in range(repeats):
        for variant in names[rep % len(names) :] + names[: rep % len(names)]:
            times[variant].append(_seconds_per_step(work, VARIANTS[variant], steps))
    if rank() == 0:
        out.write_text(json.dumps(times), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
