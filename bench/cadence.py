"""Issue 4, item 3: a whole run with two tiers against evaluating at every log step, ours and the library's.

Total wall time of `trainer.train()` for the same seeded run; the variants are interleaved and
each repetition's ratios are taken between its own runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from transformers import Trainer

from twotier.engine.cadence import TierSettings

from .stats import Row, Sample, ratios
from .workload import Workload, ledger_sink, quiet, scratch_dir, two_tier_trainer

SECTION = "3 two tiers"
LOG_STEPS = 10


def _ours(work: Workload, steps: int, eval_steps: int) -> float:
    with ledger_sink() as publish, tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        settings = TierSettings(log_steps=LOG_STEPS, eval_steps=eval_steps)
        trainer = two_tier_trainer(work, settings=settings, max_steps=steps, publish=publish, run_dir=Path(folder))
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def _library(work: Workload, steps: int) -> float:
    """Plain `Trainer`, no two-tier callback, evaluating the same validation examples every LOG_STEPS."""
    validation = [{"input_ids": e.input_ids, "labels": e.labels} for e in work.evaluator().scored]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        arguments = work.arguments(
            steps,
            Path(folder),
            eval_strategy="steps",
            eval_steps=LOG_STEPS,
            per_device_eval_batch_size=max(work.config.batch_size, 16),
        )
        trainer = Trainer(
            model=work.model(),
            args=arguments,
            train_dataset=work.train_rows(),
            eval_dataset=validation,
            data_collator=work.collator(),
            processing_class=work.tokenizer,
        )
        quiet(trainer)
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def measure(work: Workload, quick: bool) -> list[Row]:
    steps, eval_steps, repeats = (100, 50, 2) if quick else (400, 200, 3)
    two_tier: list[float] = []
    every_log: list[float] = []
    library: list[float] = []
    for rep in range(repeats):
        runs = [
            lambda: two_tier.append(_ours(work, steps, eval_steps)),
            lambda: every_log.append(_ours(work, steps, LOG_STEPS)),
            lambda: library.append(_library(work, steps)),
        ]
        for run in runs[rep % 3 :] + runs[: rep % 3]:
            run()
    shape = f"{steps} steps, log_steps={LOG_STEPS}"
    return [
        Row(SECTION, f"two tiers (eval_steps={eval_steps})", Sample.of(two_tier), "s", note=shape),
        Row(SECTION, f"full eval every log (eval_steps={LOG_STEPS})", Sample.of(every_log), "s"),
        Row(
            SECTION,
            f"library eval_strategy=steps, {LOG_STEPS}",
            Sample.of(library),
            "s",
            note="plain transformers Trainer, eval_dataset = the same validation examples, loss only",
        ),
        Row(SECTION, "every-log eval / two tiers", ratios(every_log, two_tier), "x"),
        Row(SECTION, "library eval / two tiers", ratios(library, two_tier), "x"),
    ]
