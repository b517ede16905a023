"""The full eval's work: validation loss, batched greedy answers, and the probe set's verdicts.

In a multi-process run every rank takes part: each scores and answers its share of the examples and
prompts (padded, so that every rank runs as many forwards and `generate` calls as the others, which a
sharded model needs), and the results are gathered in order: the figures one process would get.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..store.errors import first_line
from ..store.records import ProbeResult
from .capture import token_losses
from .chat import RowReader
from .data import IGNORE_INDEX, Example, collate
from .distributed import RankFailed, generation_ready, sharded
from .matching import DEFAULT_MATCH, MatchRule, parse_match_rule
from .probes import Probe, probe_of


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int


@dataclass(frozen=True)
class EvalResult:
    """What one full eval found, before it is joined with the step's fast-log fields."""

    example_answer: Answer
    val_loss: float
    probes: tuple[ProbeResult, ...]
    probe_accuracy: float | None
    probe_score: float | None
    probe_token_accuracy: float | None
    seconds: float


@dataclass(frozen=True)
class EvalFailure:
    """A full eval that raised: the event keeps why, and training goes on."""

    error: str


log = logging.getLogger("twotier.engine")


class Evaluator:
    """Scores a fixed slice of the validation set; its first `probe_size` examples are the probe set, and
    `extra_probes` (a probe file's rows) are asked after them, in the same batched generation. `rule` makes
    the verdicts (the run's `match`); beside each, the chrF score.

    Goldens and outputs are compared as content: a chat template's markers around the answer are left out
    (the `RowReader` knows them). `covers_prompt` scores the validation loss over every token, prompt
    included, for a run whose training loss covers the prompt too, so that the gap compares like with like.
    """

    def __init__(
        self,
        tokenizer: Any,
        validation: list[Example],
        *,
        eval_samples: int,
        probe_size: int,
        max_new_tokens: int,
        batch_size: int,
        reader: RowReader | None = None,
        rule: MatchRule | None = None,
        extra_probes: list[Probe] | tuple[Probe, ...] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.rule = rule or parse_match_rule(DEFAULT_MATCH)
        self.reader = reader or RowReader(tokenizer, None)
        self.scored = validation[:eval_samples]
        self.probes = self.scored[:probe_size]
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.covers_prompt = False
        self.asked = [probe_of(e) for e in self.probes] + list(extra_probes)
        # Generation ends at the EOS or at the template's end of turn, when that is a token of its own.
        self._stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        turn_end = self.reader.suffix[:1]
        if turn_end and turn_end[0] in getattr(tokenizer, "all_special_ids", []) and turn_end[0] not in self._stops:
            self._stops += turn_end

    def run_guarded(self, model: torch.nn.Module, example_prompt_ids: list[int], step: int) -> EvalResult | EvalFailure:
        """The full eval, or why it failed: an eval that runs out of memory must not end the training."""
        try:
            return self.run(model, example_prompt_ids)
        except RankFailed as err:  # already "rank N: Error: ...", and the same on every rank
            failure = str(err)
        except Exception as err:  # noqa: BLE001 - any failure of the eval alone; training errors pass elsewhere
            failure = f"{type(err).__name__}: {first_line(err)}"
        # Out of the except block, the traceback and the tensors its frames held are gone.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning(
            "the full eval at step %d failed (%s); it is recorded without its results and training goes on",
            step,
            failure,
        )
        return EvalFailure(failure)

    def run(self, model: torch.nn.Module, example_prompt_ids: list[int]) -> EvalResult:
        """Evaluate in no-grad eval mode; the model is back in train mode afterwards, whatever happens."""
        started = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            # Under DDP, FSDP or ZeRO-3, the module generate can be called on (parameters gathered where needed).
            with torch.no_grad(), generation_ready(model) as target:
                val_loss, probe_losses, token_accuracy = self._score(target.module, lockstep=target.lockstep)
                prompts = [example_prompt_ids] + [p.prompt_ids for p in self.asked]
                answers = sharded(
                    prompts, self.batch_size, list, partial(self.generate, target), _same, lockstep=target.lockstep
                )
        finally:
            model.train(was_training)
        losses: list[float | None] = [*probe_losses, *[None] * (len(self.asked) - len(probe_losses))]
        probes = tuple(
            self._probe_result(index, probe, answer.text, loss)
            for index, (probe, answer, loss) in enumerate(zip(self.asked, answers[1:], losses))
        )
        judged = [p for p in probes if p.match is not None]
        accuracy = sum(bool(p.match) for p in judged) / len(judged) if judged else None
        score = sum(p.score or 0.0 for p in judged) / len(judged) if judged else None
        seconds = time.perf_counter() - started
        return EvalResult(answers[0], val_loss, probes, accuracy, score, token_accuracy, seconds)

    def _probe_result(self, index: int, probe: Probe, output: str, loss: float | None) -> ProbeResult:
        match, score = self.rule.judge(output, probe.golden)
        return ProbeResult(
            probe_id=index,
            prompt=probe.prompt,
            golden=probe.golden,
            model_output=output,
            match=match,
            loss=loss,
            score=score,
        )

    def _score(self, model: Any, *, lockstep: bool = False) -> tuple[float, list[float], float | None]:
        """Token-weighted validation loss, each probe's mean loss, and the probes' teacher-forced token accuracy."""
        prepare = partial(self._scoring_batch, device=model.device)
        rows = sharded(self.scored, self.batch_size, prepare, partial(_logits, model), _row_figures, lockstep=lockstep)
        tokens = sum(count for _, count, _ in rows)
        val_loss = sum(total for total, _, _ in rows) / tokens if tokens else float("nan")
        probes = rows[: len(self.probes)]
        counted = sum(count for _, count, _ in probes)
        token_accuracy = sum(correct for _, _, correct in probes) / counted if counted else None
        return val_loss, [total / max(count, 1) for total, count, _ in probes], token_accuracy

    def _scoring_batch(self, chunk: list[Example], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [{"input_ids": e.input_ids, "labels": self._labels(e)} for e in chunk]
        return {key: value.to(device) for key, value in collate(rows, self.tokenizer.pad_token_id).items()}

    def _labels(self, example: Example) -> list[int]:
        return example.input_ids if self.covers_prompt else example.labels

    def generate(self, model: Any, prompts: list[list[int]]) -> list[Answer]:
        """Greedy answers for many prompts, left-padded in batches; the prompt is stripped from each, and the
        answer's content kept (the text a template wraps around it left out)."""
        pad = self.tokenizer.pad_token_id
        answers: list[Answer] = []
        for start in range(0, len(prompts), max(self.batch_size, 1)):
            chunk = prompts[start : start + self.batch_size]
            width = max(len(p) for p in chunk)
            input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=model.device)
            attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=model.device)
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=self._stops or None,
            )
            for row in output[:, width:].tolist():
                end = next((i for i, token in enumerate(row) if token in self._stops), len(row))
                row = row[:end]
                while row and row[-1] == pad:
                    row.pop()
                start, stop = self.reader.content(row)
                answers.append(Answer(self.reader.decode(row[start:stop]), stop - start))
        return answers


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return batch, model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _row_figures(
    chunk: list[Example], output: tuple[dict[str, torch.Tensor], torch.Tensor]
) -> list[tuple[float, int, int]]:
    """Per example: summed token loss, tokens scored, tokens the argmax got right (teacher-forced)."""
    batch, logits = output
    losses, mask = token_losses(logits, batch["labels"])
    shifted = torch.nn.functional.pad(batch["labels"], (0, 1), value=IGNORE_INDEX)[..., 1:]
    hits = (logits.argmax(-1) == shifted) & mask
    figures = torch.stack([losses.sum(dim=1).double(), mask.sum(dim=1).double(), hits.sum(dim=1).double()], dim=1)
    return [(total, int(count), int(correct)) for total, count, correct in figures.tolist()]


def _same(chunk: list[list[int]], answers: list[Answer]) -> list[Answer]:
    return answers
