"""Prompt/answer data through `datasets`: loading, checking each row, tokenizing with the prompt masked."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.errors import first_line
from .config import DEMO, Config
from .demo import write_demo_dataset
from .errors import DataError

log = logging.getLogger("twotier.engine")

IGNORE_INDEX = -100
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Pair:
    """One prompt and its golden answer, as text."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Encoded:
    """One example as the model sees it: prompt tokens, then answer tokens and EOS (the labels)."""

    prompt_ids: list[int]
    answer_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.answer_ids

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt_ids) + self.answer_ids


@dataclass(frozen=True)
class Splits:
    train: list[Encoded]
    validation: list[Encoded]
    dataset_name: str


def load_splits(config: Config, tokenizer: Any, workdir: Path) -> Splits:
    """Training and validation examples, tokenized; raises DataError naming the file and row."""
    source, validation = config.dataset, config.validation
    if source == DEMO:
        train_path, validation_path = write_demo_dataset(workdir / "demo-data", config.seed)
        source, validation = str(train_path), validation or str(validation_path)
    train_pairs = load_pairs(source, config.prompt_field, config.answer_field)
    if validation is not None:
        validation_pairs = load_pairs(validation, config.prompt_field, config.answer_field)
    else:
        train_pairs, validation_pairs = split_pairs(train_pairs, config.validation_split, config.seed, source)
    train = encode_pairs(tokenizer, train_pairs, config, source)
    held_out = encode_pairs(tokenizer, validation_pairs, config, validation or source)
    return Splits(train=train, validation=held_out, dataset_name=config.dataset)


def load_pairs(source: str, prompt_field: str, answer_field: str) -> list[Pair]:
    """Rows of a JSONL, JSON, CSV or Parquet file, or of a hub dataset's train split."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    path = Path(source)
    builder = FILE_BUILDERS.get(path.suffix.lower())
    try:
        if builder is not None:
            if not path.is_file():
                raise DataError(f"{source}: dataset file not found")
            if builder != "parquet" and not _has_rows(path, skip=1 if builder == "csv" else 0):
                raise DataError(f"{source}: the dataset is empty")
            table = datasets.load_dataset(builder, data_files=str(path), split="train")
        elif path.exists():
            raise DataError(f"{source}: unsupported dataset file; use .jsonl, .json, .csv or .parquet")
        else:
            table = datasets.load_dataset(source, split="train")
    except DataError:
        raise
    except Exception as err:  # datasets raises many kinds; all mean "cannot read this source"
        raise DataError(f"{source}: cannot load the dataset: {first_line(err)}") from err
    for field_name, key in ((prompt_field, "prompt_field"), (answer_field, "answer_field")):
        if field_name not in table.column_names:
            raise DataError(
                f"{source}: no '{field_name}' field (set '{key}'); the rows have: {', '.join(table.column_names)}"
            )
    if len(table) == 0:
        raise DataError(f"{source}: the dataset is empty")
    try:
        prompts, answers = list(table[prompt_field]), list(table[answer_field])
    except UnicodeDecodeError as err:  # datasets decodes text columns lazily
        raise DataError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    pairs = []
    for row, (prompt, answer) in enumerate(zip(prompts, answers), start=1):
        for value, field_name in ((prompt, prompt_field), (answer, answer_field)):
            if value is None:
                raise DataError(f"{source}: row {row} has no '{field_name}'")
            if not isinstance(value, str):
                raise DataError(f"{source}: row {row}: '{field_name}' must be text, got {type(value).__name__}")
        if not answer.strip():
            raise DataError(f"{source}: row {row}: '{answer_field}' is empty; there is nothing to learn")
        pairs.append(Pair(prompt, answer))
    return pairs


def _has_rows(path: Path, skip: int) -> bool:
    """Whether a text file holds a non-blank line past its first `skip` (a CSV header)."""
    with path.open("rb") as handle:
        lines = (line for line in handle if line.strip())
        return sum(1 for _, _ in zip(range(skip + 1), lines)) > skip


def split_pairs(pairs: list[Pair], fraction: float, seed: int, source: str) -> tuple[list[Pair], list[Pair]]:
    """Hold out a seeded random `fraction` of the rows for validation."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(pairs) * fraction))
    if held >= len(pairs):
        raise DataError(f"{source}: {len(pairs)} rows are too few to hold out a validation split")
    return [pairs[i] for i in order[held:]], [pairs[i] for i in order[:held]]


def encode_pairs(tokenizer: Any, pairs: list[Pair], config: Config, source: str) -> list[Encoded]:
    """Tokenize prompt and answer apart so the prompt can be masked out of the labels."""
    prompts = [pair.prompt for pair in pairs]
    if config.chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(f"model: 'chat_template' is on but the tokenizer of '{config.model}' has none")
        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        prompt_ids = _ids(tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True))
    else:
        prompt_ids = _ids(tokenizer(prompts))
    answer_ids = _ids(tokenizer([pair.answer for pair in pairs], add_special_tokens=False))
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded, truncated = [], 0
    for prompt, answer in zip(prompt_ids, answer_ids):
        answer = answer + eos
        room = config.max_length - len(prompt)
        if room < len(answer):
            truncated += 1
            answer = answer[: max(room, 0)]
        if answer:
            encoded.append(Encoded(list(prompt), list(answer)))
    if truncated:
        log.warning(
            "%s: %d of %d examples are longer than max_length=%d and were cut (%d dropped entirely)",
            source,
            truncated,
            len(pairs),
            config.max_length,
            len(pairs) - len(encoded),
        )
    if not encoded:
        raise DataError(f"{source}: no example fits in max_length={config.max_length} tokens")
    return encoded


def _ids(batch: Any) -> list[list[int]]:
    return batch["input_ids"] if hasattr(batch, "keys") else batch


def collate(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; padded positions are masked from attention and labels."""
    import torch

    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        labels[row, :length] = torch.tensor(example["labels"])
        attention[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
