"""Your own probe prompts (`probes: probes.jsonl`): rows in the dataset's formats, with or without a golden,
encoded exactly as training encodes rows, so a probe is asked as the validation probes are."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import Config
from .data import Example, examples_from_rows
from .errors import DataError
from .sources import detect_format, open_rows

# Stands in for the missing golden of a prompt-only row, so the row goes through the one encoder: the prompt
# a template renders does not depend on the answer, and the stand-in is never shown or compared.
NO_GOLDEN = "TWOTIERNOGOLDEN"
PROBE_FORMATS = ("prompt_answer", "prompt_completion", "messages")


@dataclass(frozen=True)
class Probe:
    """A prompt asked at every full eval; `golden` None for one only answered (no verdict, no score)."""

    prompt_ids: list[int]
    prompt: str
    golden: str | None


def probe_of(example: Example) -> Probe:
    """A validation example asked as a probe (the built-in probe set)."""
    return Probe(example.prompt_ids, example.prompt_text, example.golden_text)


def load_probes(path: str, config: Config, tokenizer: Any, template: str | None) -> list[Probe]:
    """Every row of `path` as a probe; a row that cannot be asked raises DataError naming the file and row.

    `template` is the chat template the training data was encoded with (None: none), so prompt/answer rows
    are asked as the model was trained; `messages` rows always use one, as in the dataset."""
    rows = [dict(row) for row in open_rows(path, cache_dir=config.cache_dir)]
    # The probe file's own columns decide its format, whatever `data_format` says of the dataset.
    settings = dataclasses.replace(config, data_format=None)
    columns = list(rows[0])
    answer = _answer_column(columns, settings)
    kind, fields = detect_format([*columns, answer] if answer not in columns else columns, settings, path)
    if kind not in PROBE_FORMATS:
        raise DataError(
            f"{path}: probe rows need a prompt: 'prompt' (and optionally '{config.answer_field}'), 'prompt' (and"
            f" optionally 'completion') or 'messages'; got {kind} rows with: {', '.join(columns)}"
        )
    filled, goldens = [], []
    for number, row in enumerate(rows, 1):
        row, has_golden = _with_golden(row, kind, fields, path, number)
        filled.append(row)
        goldens.append(has_golden)
    examples, _ = examples_from_rows(settings, tokenizer, filled, path, template)
    if len(examples) < len(filled):
        _name_dropped(settings, tokenizer, filled, path, template)
    return [
        Probe(e.prompt_ids, e.prompt_text, e.golden_text if has_golden else None)
        for e, has_golden in zip(examples, goldens)
    ]


def _answer_column(columns: list[str], config: Config) -> str:
    """The golden's column for prompt/answer rows, which a file of prompts only may lack altogether."""
    if "messages" in columns or "completion" in columns:
        return "completion" if "completion" in columns else "messages"
    return config.answer_field if config.prompt_field in columns else "completion"


def _with_golden(
    row: dict[str, Any], kind: str, fields: tuple[str, ...], path: str, number: int
) -> tuple[dict[str, Any], bool]:
    """The row with a stand-in where it has no golden, and whether it has one. A blank golden is none."""
    if kind == "messages":
        messages = row.get(fields[0])
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise DataError(f"{path}: row {number}: '{fields[0]}' must be a list of {{role, content}} messages")
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and _text(last.get("content")):
            return row, True
        if last is not None and last["role"] == "assistant":
            messages = messages[:-1]  # an empty last answer: ask what comes before it
        if not messages:
            raise DataError(f"{path}: row {number}: '{fields[0]}' has no prompt to ask")
        return {**row, fields[0]: [*messages, {"role": "assistant", "content": NO_GOLDEN}]}, False
    prompt, golden = fields
    value = row.get(golden)
    if isinstance(row.get(prompt), list):  # conversational prompt/completion
        if isinstance(value, list) and any(_text(m.get("content")) for m in value if isinstance(m, dict)):
            return row, True
        return {**row, golden: [{"role": "assistant", "content": NO_GOLDEN}]}, False
    if _text(value):
        return row, True
    if value is not None and not isinstance(value, str):
        raise DataError(f"{path}: row {number}: '{golden}' must be text, got {type(value).__name__}")
    return {**row, golden: NO_GOLDEN}, False


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _name_dropped(config: Config, tokenizer: Any, rows: list[dict[str, Any]], path: str, template: str | None) -> None:
    """A probe whose prompt leaves no room in max_length is refused by its row, not dropped in silence."""
    for number, row in enumerate(rows, 1):
        try:
            examples_from_rows(config, tokenizer, [row], path, template)
        except DataError:
            raise DataError(
                f"{path}: row {number}: the prompt does not fit in max_length={config.max_length} tokens"
            ) from None
