"""Training data through `datasets`: rows stay in Arrow, memory-mapped, checked and tokenized once in a batched map
whose result is cached, or streamed when huge. The Trainer gets a `datasets` dataset; the evaluator a few Examples.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.errors import first_line
from .chat import RowReader, own_template, probe_wrapper, resolve_template
from .config import DEMO, DEMO_CHAT, FORMATS, Config
from .encode import COLUMNS, IGNORE_INDEX, STATS, Encoder, Layout, arrow_features, check_texts
from .errors import DataError
from .sources import Progress, check_text_columns, detect_format, identity, open_rows, reporting, tokenizer_digest

__all__ = ["FORMATS", "IGNORE_INDEX", "STATS", "Example", "Splits", "collate", "load_splits", "prepare_data"]
log = logging.getLogger("twotier.engine")

# Part of every cache key: bump it whenever the tokenized columns would come out differently.
VERSION = 2
BATCH_ROWS = 1000
# From this many rows, tokenizing uses several processes; below it, starting them costs more than they save.
PARALLEL_ROWS = 200_000
MAX_PROCESSES = 8


@dataclass(frozen=True)
class Example:
    """One validation example: the prompt's ids (the generation prompt), the golden's ids (what follows, the EOS or
    the template's end-of-turn included) and where the answer's own content sits inside the golden."""

    prompt_ids: list[int]
    golden_ids: list[int]
    content: tuple[int, int]
    prompt_text: str
    golden_text: str  # the content only, decoded: what MATCH compares with
    labels: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.golden_ids

    @property
    def content_ids(self) -> list[int]:
        return self.golden_ids[self.content[0] : self.content[1]]

    @property
    def answer_ids(self) -> list[int]:
        """The golden's ids (the name the evaluator used before `golden_ids`)."""
        return self.golden_ids


Encoded = Example


@dataclass(frozen=True)
class Splits:
    """What a run trains and evaluates on.

    `train` is a `datasets.Dataset` of `input_ids` and `labels` (-100 where masked), memory-mapped from the cache;
    with `streaming` an `IterableDataset` (the Trainer then needs max_steps). `validation` is only the first
    `eval_samples` examples: the probe set is its head. `loss_covers_prompt` is True when the training loss
    covers the prompt too (plain text, or token ids without labels), so a gap against the validation loss
    (answers only) means little. `tokenized` is False when the cache served this start. `template` is the chat
    template the rows were encoded with (None: none), for a probe file to be asked the same way."""

    train: Any
    validation: list[Example]
    dataset_name: str
    format: str
    loss_covers_prompt: bool
    reader: RowReader
    tokenized: bool
    streaming: bool = False
    template: str | None = None


def load_splits(
    config: Config, tokenizer: Any, workdir: Path, progress: Progress | None = None, *, show_bars: bool = False
) -> Splits:
    """Training and validation data, tokenized (or read from the cache); raises DataError naming the file and row.

    Without a `validation` file a seeded `validation_split` fraction of the rows is held out; when streaming, the
    validation examples are the first `eval_samples` rows of the `validation` file, else of the stream itself
    (those rows are then skipped from training). `progress(phase, done, total)` hears of loading and tokenizing;
    `show_bars` lets `datasets` draw its own progress bars on stderr (headless), off as in the app."""
    import datasets

    if show_bars:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
    source, validation = _builtin(config, workdir)
    template = resolve_template(config.chat_template, tokenizer, config.model, needed=False)
    if config.streaming:
        return _streamed(config, tokenizer, source, validation, template, progress)
    if progress is not None:
        progress("loading", 0, None)
    with reporting(progress, "loading"):
        rows = open_rows(source, cache_dir=config.cache_dir)
    if progress is not None:
        progress("loading", len(rows), len(rows))
    layout = _layout(config, tokenizer, rows.column_names, rows, source, template)
    encoder = Encoder(tokenizer, layout, source)
    key = _cache_key(tokenizer, layout, identity(source, rows))
    tokenized, fresh = _tokenize(rows, encoder, key, progress)
    _warn_cuts(source, len(rows), tokenized, config.max_length)
    if validation is not None:
        held_rows = open_rows(validation, cache_dir=config.cache_dir)
        head = list(held_rows.select(range(min(len(held_rows), config.eval_samples))))
        held, _ = examples_from_rows(config, tokenizer, head, validation, template)
        train = tokenized
    else:
        train, held = _split(tokenized, config, source, tokenizer)
    return _splits(train, held, config, layout, tokenizer, tokenized=fresh)


prepare_data = load_splits


def _builtin(config: Config, workdir: Path) -> tuple[str, str | None]:
    """The dataset and validation sources; the built-in demos are written as JSONL first."""
    if config.dataset in (DEMO, DEMO_CHAT):
        if config.dataset == DEMO:
            from .demo import write_demo_dataset as write
        else:
            from .chat_demo import write_chat_dataset as write
        train_path, validation_path = write(workdir / f"{config.dataset}-data", config.seed)
        return str(train_path), config.validation or str(validation_path)
    return config.dataset, config.validation


def examples_from_rows(
    config: Config, tokenizer: Any, head: list[dict[str, Any]], source: str, template: str | None
) -> tuple[list[Example], Layout]:
    """Validation examples from the first rows of a dataset (a validation file, the head of a stream, a trainer's
    eval_dataset), encoded in memory exactly as training encodes rows, and the layout that encoded them."""
    if not head:
        raise DataError(f"{source}: the dataset is empty")
    columns = list(head[0])
    layout = _layout(config, tokenizer, columns, None, source, template, head[0])
    batch = {name: [row.get(name) for row in head] for name in columns}
    held = _examples(tokenizer, Encoder(tokenizer, layout, source, arrow=False)(batch, list(range(len(head)))))
    if not held:
        raise DataError(f"{source}: no example fits in max_length={config.max_length} tokens")
    return held, layout


def _layout(
    config: Config,
    tokenizer: Any,
    columns: list[str],
    rows: Any,
    source: str,
    template: str | None,
    sample: dict[str, Any] | None = None,
) -> Layout:
    """The format and what encoding it needs; `rows` (a Dataset) or `sample` (a streamed row) tells text from lists."""
    kind, fields = detect_format(list(columns), config, source)
    conversational = kind == "messages" or (kind == "prompt_completion" and _is_list(rows, sample, fields[0]))
    if kind in ("prompt_answer", "text") or (kind == "prompt_completion" and not conversational):
        check_text_columns(rows, fields, source)
    if conversational and template is None:
        template = resolve_template(config.chat_template, tokenizer, config.model, needed=True)
    if kind in ("text", "tokenized"):
        # The rows are the model's input as they are; the tokenizer's own template still says where an answer
        # starts in a row trained whole.
        own = template or own_template(tokenizer)
        return Layout(kind, fields, config.max_length, None, probe_wrapper(tokenizer, own) if own else None)
    wrapper = probe_wrapper(tokenizer, template) if template is not None else None
    return Layout(kind, fields, config.max_length, template, wrapper)


def _is_list(rows: Any, sample: dict[str, Any] | None, name: str) -> bool:
    if sample is not None:
        return isinstance(sample.get(name), list)
    from datasets import Value

    feature = (getattr(rows, "features", None) or {}).get(name)
    return feature is not None and not isinstance(feature, Value)


def _cache_key(tokenizer: Any, layout: Layout, data: str) -> str:
    """The fingerprint of the tokenized data: the rows, the tokenizer, the template, max_length, format, this code."""
    parts = {
        "version": VERSION,
        "data": data,
        "tokenizer": tokenizer_digest(tokenizer),
        "template": layout.template,
        "max_length": layout.max_length,
        "format": layout.format,
        "fields": layout.fields,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _tokenize(rows: Any, encoder: Encoder, key: str, progress: Progress | None) -> tuple[Any, bool]:
    """The tokenized rows from the cache when there, else computed in a batched map and cached under `key`."""
    folder = Path(rows.cache_files[0]["filename"]).parent if rows.cache_files else None
    fresh = folder is None or not glob.glob(str(folder / f"cache-{key}*.arrow"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = min(cores, MAX_PROCESSES) if len(rows) >= PARALLEL_ROWS and cores > 1 else None
    try:
        with reporting(progress, "tokenizing"):
            tokenized = rows.map(
                encoder,
                batched=True,
                with_indices=True,
                batch_size=BATCH_ROWS,
                remove_columns=rows.column_names,
                features=arrow_features(),
                new_fingerprint=key,
                num_proc=processes,
                desc=f"tokenizing {len(rows):,} rows",
            )
    except DataError:
        raise
    except UnicodeDecodeError as err:  # datasets decodes text columns lazily
        raise DataError(f"{encoder.source}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except Exception as err:  # noqa: BLE001 - pyarrow and the template engine raise many kinds
        raise DataError(f"{encoder.source}: cannot tokenize the rows: {first_line(err)}") from err
    if progress is not None:
        progress("tokenizing", len(rows), len(rows))
    return tokenized, fresh


def _warn_cuts(source: str, total: int, tokenized: Any, max_length: int) -> None:
    import pyarrow.compute as pc

    if len(tokenized) == 0:
        raise DataError(f"{source}: no example fits in max_length={max_length} tokens")
    dropped = total - len(tokenized)
    cut = dropped + (pc.sum(tokenized.data.column("cut")).as_py() or 0)
    if cut:
        log.warning(
            "%s: %d of %d examples are longer than max_length=%d and were cut (%d dropped entirely)",
            source,
            cut,
            total,
            max_length,
            dropped,
        )


def _split(tokenized: Any, config: Config, source: str, tokenizer: Any) -> tuple[Any, list[Example]]:
    """Hold out a seeded random `validation_split` of the examples; only the first `eval_samples` are decoded."""
    import numpy as np

    total = len(tokenized)
    held = max(1, round(total * config.validation_split))
    if held >= total:
        raise DataError(f"{source}: {total} rows are too few to hold out a validation split")
    order = np.random.default_rng(config.seed).permutation(total)
    # Only the indices are kept in memory (8 bytes a row); the rows stay memory-mapped.
    train = tokenized.select(
        np.sort(order[held:]), keep_in_memory=True, new_fingerprint=f"{tokenized._fingerprint[:40]}-train-{config.seed}"
    )
    shown = tokenized.select(order[: min(held, config.eval_samples)], keep_in_memory=True)
    return train, _examples(tokenizer, shown[:])


def _examples(tokenizer: Any, columns: dict[str, list[Any]]) -> list[Example]:
    """Examples from tokenized columns (each a list over the rows)."""
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    examples = []
    for ids, labels, length, start, end in zip(*(columns[name] for name in COLUMNS[:5])):
        prompt, golden = list(ids[:length]), list(ids[length:])
        examples.append(Example(prompt, golden, (start, end), decode(prompt), decode(golden[start:end]), list(labels)))
    return examples


def _streamed(
    config: Config, tokenizer: Any, source: str, validation: str | None, template: str | None, progress: Progress | None
) -> Splits:
    """An IterableDataset, tokenized as the Trainer reads it; the validation examples from the head of a stream."""
    stream = open_rows(source, streaming=True, cache_dir=config.cache_dir)
    held_source = validation or source
    held_stream = open_rows(validation, streaming=True, cache_dir=config.cache_dir) if validation else stream
    if progress is not None:
        progress("loading", 0, config.eval_samples)
    head = list(held_stream.take(config.eval_samples))
    held, layout = examples_from_rows(config, tokenizer, head, held_source, template)
    if progress is not None:
        progress("loading", len(head), config.eval_samples)
    if validation is None and len(head) < config.eval_samples:
        raise DataError(
            f"{source}: {len(head)} rows: a stream needs more than eval_samples={config.eval_samples}"
            " rows, as its head is the validation set"
        )
    columns = list(head[0])
    encoder = Encoder(
        tokenizer, _layout(config, tokenizer, columns, None, source, template, head[0]), source, arrow=False
    )
    train = stream.map(encoder, batched=True, with_indices=True, batch_size=BATCH_ROWS, remove_columns=columns)
    if validation is None:
        train = train.skip(config.eval_samples)
    return _splits(train, held, config, layout, tokenizer, tokenized=False, streaming=True)


def _splits(
    train: Any,
    held: list[Example],
    config: Config,
    layout: Layout,
    tokenizer: Any,
    *,
    tokenized: bool,
    streaming: bool = False,
) -> Splits:
    return Splits(
        train.select_columns(["input_ids", "labels"]),
        held,
        config.dataset,
        layout.format,
        layout.trains_prompt,
        RowReader(tokenizer, layout.wrapper),
        tokenized,
        streaming,
        layout.template,
    )


@dataclass(frozen=True)
class Pair:
    """One prompt and its golden answer, as text."""

    prompt: str
    answer: str


def load_pairs(source: str, prompt_field: str, answer_field: str) -> list[Pair]:
    """Every row of a small file or hub dataset as prompt/answer text, checked; for tests and scripts, not for training."""
    rows = open_rows(source)
    for name, key in ((prompt_field, "prompt_field"), (answer_field, "answer_field")):
        if name not in rows.column_names:
            raise DataError(f"{source}: no '{name}' field (set '{key}'); the rows have: {', '.join(rows.column_names)}")
    check_text_columns(rows, (prompt_field, answer_field), source)
    pairs: list[Pair] = []
    try:
        for start in range(0, len(rows), BATCH_ROWS):
            batch = rows[start : start + BATCH_ROWS]
            numbers = list(range(start + 1, start + 1 + len(batch[prompt_field])))
            prompts = check_texts(batch[prompt_field], prompt_field, numbers, source, required=False)
            answers = check_texts(batch[answer_field], answer_field, numbers, source, required=True)
            pairs += [Pair(prompt, answer) for prompt, answer in zip(prompts, answers)]
    except UnicodeDecodeError as err:
        raise DataError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    return pairs


def encode_pairs(tokenizer: Any, pairs: list[Pair], config: Config, source: str) -> list[Example]:
    """Tokenize prompt/answer pairs in memory as training does (the prompt masked, over-long goldens cut)."""
    template = resolve_template(config.chat_template, tokenizer, config.model, needed=False)
    wrapper = probe_wrapper(tokenizer, template) if template is not None else None
    layout = Layout("prompt_answer", ("prompt", "answer"), config.max_length, template, wrapper)
    batch = {"prompt": [pair.prompt for pair in pairs], "answer": [pair.answer for pair in pairs]}
    columns = Encoder(tokenizer, layout, source, arrow=False)(batch, list(range(len(pairs))))
    examples = _examples(tokenizer, columns)
    if not examples:
        raise DataError(f"{source}: no example fits in max_length={config.max_length} tokens")
    cut = len(pairs) - len(examples) + sum(columns["cut"])
    if cut:
        log.warning(
            "%s: %d of %d examples are longer than max_length=%d and were cut (%d dropped entirely)",
            source,
            cut,
            len(pairs),
            config.max_length,
            len(pairs) - len(examples),
        )
    return examples


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
