"""Issue 4, item 4: what one full eval costs, how it grows with eval and probe samples, and where its time goes."""

from __future__ import annotations

import cProfile
import pstats
import time
from typing import Any

from .stats import Row, Sample, ratios
from .workload import Workload

SECTION = "4 full eval"
EVAL_SIZES = (64, 256, 1024)
PROBE_SIZES = (1, 16, 64)
GENERATED = 16


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(work: Workload, quick: bool) -> list[Row]:
    repeats = 2 if quick else 5
    model = work.model()
    first = work.splits.train[0]
    example = work.splits.reader.split(first["input_ids"], first["labels"])[0]
    by_samples: dict[int, list[float]] = {size: [] for size in EVAL_SIZES}
    by_probes: dict[int, list[float]] = {size: [] for size in PROBE_SIZES}
    batched: list[float] = []
    single: list[float] = []
    prompts = [e.prompt_ids for e in work.splits.validation[:GENERATED]]
    one_batch, one_at_a_time = work.evaluator(), work.evaluator(batch_size=1)
    evaluators = {size: work.evaluator(eval_samples=size) for size in EVAL_SIZES}
    probe_evaluators = {size: work.evaluator(eval_samples=max(64, size), probe_size=size) for size in PROBE_SIZES}
    evaluators[EVAL_SIZES[0]].run(model, example)  # warm-up: first calls pay lazy initialisation
    for _ in range(repeats):
        for size, evaluator in evaluators.items():
            by_samples[size].append(_timed(lambda e=evaluator: e.run(model, example)))
        for size, evaluator in probe_evaluators.items():
            by_probes[size].append(_timed(lambda e=evaluator: e.run(model, example)))
        batched.append(_timed(lambda: one_batch.generate(model, prompts)))
        single.append(_timed(lambda: one_at_a_time.generate(model, prompts)))
    probe_default = work.config.probe_size
    rows = [
        Row(SECTION, f"full eval, eval_samples={size}, probes={probe_default}", Sample.of(values), "s")
        for size, values in by_samples.items()
    ]
    rows += [
        Row(SECTION, f"full eval, eval_samples=64, probes={size}", Sample.of(values), "s")
        for size, values in by_probes.items()
    ]
    small, large = by_samples[EVAL_SIZES[0]], by_samples[EVAL_SIZES[-1]]
    rows += [
        Row(
            SECTION,
            f"growth: {EVAL_SIZES[-1]} / {EVAL_SIZES[0]} eval_samples",
            ratios(large, small),
            "x",
            note=f"{EVAL_SIZES[-1] // EVAL_SIZES[0]}x the samples",
        ),
        Row(
            SECTION,
            f"growth: {PROBE_SIZES[-1]} / {PROBE_SIZES[0]} probes",
            ratios(by_probes[PROBE_SIZES[-1]], by_probes[PROBE_SIZES[0]]),
            "x",
        ),
        Row(
            SECTION,
            f"generate {GENERATED} prompts, batched",
            Sample.of(batched),
            "s",
            note=f"untrained demo model: every answer runs to max_new_tokens={work.config.max_new_tokens}",
        ),
        Row(SECTION, f"generate {GENERATED} prompts, one at a time", Sample.of(single), "s"),
        Row(SECTION, "one at a time / batched", ratios(single, batched), "x"),
        _profile(work, model, example),
    ]
    return rows


def _profile(work: Workload, model: Any, example: list[int]) -> Row:
    """One full eval under cProfile; the note says which parts its time goes to."""
    evaluator = work.evaluator()
    profile = cProfile.Profile()
    profile.enable()
    evaluator.run(model, example)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    cumulative = {f"{_file_name(key[0])}:{key[2]}": value[3] for key, value in stats.items()}
    total = cumulative.get("evaluate.py:run", 0.0)
    parts = {
        "scoring forward": cumulative.get("evaluate.py:_score", 0.0),
        "generation": cumulative.get("evaluate.py:generate", 0.0),
        "of which model.generate": cumulative.get("utils.py:generate", 0.0),
        "decode": cumulative.get("tokenization_utils_base.py:decode", 0.0),
    }
    shares = ", ".join(f"{name} {100 * seconds / total:.0f}%" for name, seconds in parts.items()) if total else "-"
    return Row(
        SECTION,
        f"profiled eval (64 samples, {work.config.probe_size} probes)",
        Sample.of([total]),
        "s",
        note=f"cProfile: {shares}",
    )


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
