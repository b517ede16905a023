"""Issue 4, items 1–2: what a fast log every step adds to a step, against no log and the naive extra forward.

The three variants train the same seeded model on the same batches, interleaved and repeated, and
each repetition's ratios are taken between runs that ran side by side.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from twotier.engine.cadence import TierSettings
from twotier.engine.data import IGNORE_INDEX
from twotier.engine.loss import LossTap
from twotier.store import Kind, StepEvent

from .stats import Row, Sample, judged, ratios
from .workload import RUN_ID, Workload, ledger_sink, scratch_dir, two_tier_trainer

SECTION = "1-2 fast log"
WARMUP_STEPS = 10


class StepClock(TrainerCallback):
    """Time at each step's start, placed after the tiers: an interval holds a step, its logs and its event."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.marks.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        """The median step: other processes' bursts on a shared machine hit a few steps, not the median."""
        steps = [b - a for a, b in zip(self.marks, self.marks[1:])][WARMUP_STEPS:]
        return statistics.median(steps)


class NaiveFastLog(TrainerCallback):
    """The first implementation one would write: after the step, one more no-grad forward on the example."""

    def __init__(self, tap: LossTap, tokenizer: Any, publish: Any) -> None:
        self.tap = tap
        self.tokenizer = tokenizer
        self.publish = publish

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        assert self.tap.last is not None and model is not None
        ids, labels = self.tap.last.input_ids[:1], self.tap.last.labels[:1]
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        ids_list, labels_list = ids[0].tolist(), labels[0].tolist()
        prompt = [
            t for t, label in zip(ids_list, labels_list) if label == IGNORE_INDEX and t != self.tokenizer.pad_token_id
        ]
        golden = [label for label in labels_list if label != IGNORE_INDEX]
        decode = self.tokenizer.decode
        self.publish(
            StepEvent(
                run_id=RUN_ID,
                step=state.global_step,
                kind=Kind.FAST,
                wall_time=time.time(),
                elapsed_s=0.0,
                prompt=decode(prompt, skip_special_tokens=True),
                golden=decode(golden, skip_special_tokens=True),
                loss=loss,
                prompt_tokens=len(prompt),
                golden_tokens=len(golden),
            )
        )


def _seconds_per_step(work: Workload, variant: str, steps: int) -> float:
    clock = StepClock()
    with ledger_sink() as publish, tempfile.TemporaryDirectory(dir=scratch_dir()) as folder:
        settings = TierSettings(log_steps=1 if variant == "ours" else 0, eval_steps=0)
        trainer = two_tier_trainer(work, settings=settings, max_steps=steps, publish=publish, run_dir=Path(folder))
        if variant == "naive":
            trainer.add_callback(NaiveFastLog(trainer.loss_tap, work.tokenizer, publish))
        trainer.add_callback(clock)
        trainer.train()
    return clock.seconds_per_step()


def measure(work: Workload, quick: bool) -> list[Row]:
    steps, repeats = (30, 3) if quick else (70, 7)
    variants = ("off", "ours", "naive")
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    _seconds_per_step(work, "ours", WARMUP_STEPS + 2)  # the first run in a process pays one-time set-up
    for rep in range(repeats):
        for variant in variants[rep % 3 :] + variants[: rep % 3]:
            times[variant].append(_seconds_per_step(work, variant, steps))
    off = times["off"]
    ours_cost = [(a - b) * 1000 for a, b in zip(times["ours"], off)]
    naive_cost = [(a - b) * 1000 for a, b in zip(times["naive"], off)]
    per_step = f"median of {steps - WARMUP_STEPS} steps per run, {repeats} interleaved runs per variant"
    return [
        Row(SECTION, "step, no logging (eval off)", Sample.of(off).scaled(1000), "ms/step", note=per_step),
        Row(SECTION, "step, fast log every step", Sample.of(times["ours"]).scaled(1000), "ms/step"),
        judged(
            Row(SECTION, "overhead ratio: log_steps=1 / off", ratios(times["ours"], off), "x", "<= 1.02"),
            lambda ratio: ratio <= 1.02,
        ),
        Row(SECTION, "cost per fast log (ours)", Sample.of(ours_cost), "ms"),
        Row(SECTION, "  as share of a step", ratios(ours_cost, [t * 1000 for t in off]).scaled(100), "%"),
        Row(SECTION, "cost per naive fast log (extra fwd)", Sample.of(naive_cost), "ms"),
        Row(
            SECTION,
            "  as share of a step",
            ratios(naive_cost, [t * 1000 for t in off]).scaled(100),
            "%",
            note="cost per log = a variant's step time minus the no-log step time of the same repetition",
        ),
    ]
