"""Issue 10: what the one call costs a TRL script: `SFTTrainer` + `TwoTier` against `SFTTrainer` alone.

Both variants train the chat demo model (byte-level BPE, ChatML, random Qwen2) on `messages` rows with TRL's fused
LM head, in this one process, one right after the other in alternating order (ABBA), so that a slow moment of a
shared machine hits both; the figure is the median of the per-repetition ratios of their training times. The one
call runs its fast log every 10 steps (the default) and no full eval, whose cost the eval section measures: what is
left is the forward hook, the one host read per log step, the event and the ledger's writer thread.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from .stats import Row, judged, ratios
from .workload import scratch_dir

SECTION = "11 one call"
GOAL = 1.02
LOG_STEPS = 10


def _trainer(model_dir: Path, out: Path, rows: Any, steps: int) -> Any:
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback

    args = trl.SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        max_length=128,
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=LOG_STEPS,
        disable_tqdm=True,
        seed=0,
    )
    trainer = trl.SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    for noisy in (PrinterCallback, ProgressCallback):  # the same quiet loop for both variants
        trainer.remove_callback(noisy)
    return trainer


def _train_seconds(model_dir: Path, folder: Path, rows: Any, steps: int, joined: bool) -> tuple[float, float]:
    """Wall and CPU seconds of `trainer.train()` (CPU: every thread of this process, the ledger's writer too)."""
    from twotier.engine import TwoTier

    trainer = _trainer(model_dir, folder / "out", rows, steps)
    if joined:
        trainer.add_callback(TwoTier(trainer, ledger=folder / "ledger.db", log_steps=LOG_STEPS, eval_steps=0))
    started, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    return time.perf_counter() - started, time.process_time() - cpu


def measure(quick: bool) -> list[Row]:
    try:
        import trl  # noqa: F401
    except ImportError:
        return [Row(SECTION, "SFTTrainer + TwoTier / SFTTrainer alone", None, "x", f"<= {GOAL}", note="trl missing")]
    from datasets import Dataset
    from transformers.utils import logging as hf_logging

    from twotier.engine.chat_demo import chat_rows, write_chat_model

    hf_logging.set_verbosity_error()
    logging.getLogger("twotier.engine").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    steps, repetitions = (40, 3) if quick else (100, 9)
    alone: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as scratch:
        folder = Path(scratch)
        model_dir = write_chat_model(folder / "model", 0)
        rows = Dataset.from_list(chat_rows(steps * 8, 0))
        _train_seconds(model_dir, folder, rows, 5, joined=True)  # warm-up: imports, kernels, the first ledger
        for repetition in range(repetitions):
            order = (False, True) if repetition % 2 == 0 else (True, False)
            for joined in order:
                seconds = _train_seconds(model_dir, folder, rows, steps, joined)
                (ours if joined else alone).append(seconds)
    step_ms = 1000 * statistics.median(wall for wall, _ in alone) / steps
    return [
        judged(
            Row(
                SECTION,
                "SFTTrainer + TwoTier / SFTTrainer alone",
                ratios([wall for wall, _ in ours], [wall for wall, _ in alone]),
                "x",
                f"<= {GOAL}",
                note=f"wall time of train(): {repetitions} ABBA-interleaved pairs of {steps}-step runs, fast log every "
                f"{LOG_STEPS} steps, full evals off; a step alone {step_ms:.0f} ms (batch 8, fused LM head)",
            ),
            lambda ratio: ratio <= GOAL,
        ),
        Row(
            SECTION,
            "  the same pairs in CPU time",
            ratios([cpu for _, cpu in ours], [cpu for _, cpu in alone]),
            "x",
            note="process CPU time, the ledger's writer thread included: what other processes on a shared machine "
            "do not change",
        ),
    ]
