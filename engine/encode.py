"""One batch of rows in any supported format, checked and tokenized: the function `datasets.map` runs.

Every row is refused with its file and 1-based row number when it cannot be learned from, from inside
the batched map, so the check costs no second pass over the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .chat import Message, RowReader, Wrapper, split_turns, token_span
from .errors import DataError

IGNORE_INDEX = -100
# What `datasets` stores per example; `cut` marks an example whose golden lost tokens to max_length.
COLUMNS = ("input_ids", "labels", "prompt_length", "content_start", "content_end", "cut")
# Batches encoded in this process: tests read it to see that a cached start did not tokenize.
STATS = {"batches": 0, "rows": 0}


@dataclass(frozen=True)
class Layout:
    """What an encoder needs besides the rows: the format, the columns it reads, the template and max_length."""

    format: str
    fields: tuple[str, ...]
    max_length: int
    template: str | None = None
    wrapper: Wrapper | None = None

    @property
    def trains_prompt(self) -> bool:
        """Whether the training loss covers the prompt too: plain text, or token ids with neither labels nor a mask."""
        return self.format == "text" or (self.format == "tokenized" and len(self.fields) == 1)


def arrow_features() -> Any:
    from datasets import Features, List, Value

    ids = List(Value("int32"))
    return Features(
        {
            "input_ids": ids,
            "labels": ids,
            "prompt_length": Value("int32"),
            "content_start": Value("int32"),
            "content_end": Value("int32"),
            "cut": Value("bool"),
        }
    )


@dataclass
class Encoder:
    """Checks and tokenizes one batch; `source` names the file in errors. Picklable, for `num_proc`."""

    tokenizer: Any
    layout: Layout
    source: str
    arrow: bool = True  # False: Python lists, as an IterableDataset's map wants them
    _eos: list[int] = field(init=False)

    def __post_init__(self) -> None:
        eos = self.tokenizer.eos_token_id
        self._eos = [eos] if eos is not None else []

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, Any]:
        STATS["batches"] += 1
        STATS["rows"] += len(indices)
        rows = [index + 1 for index in indices]
        kind, fields = self.layout.format, self.layout.fields
        if kind == "tokenized":
            return self._out(self._tokenized(batch, rows))
        if kind == "text":
            texts = self._texts(batch, fields[0], rows, required=True)
            ids = [row if row[-1:] == self._eos else row + self._eos for row in self._ids(texts, special=True)]
            return self._out(self._trained(ids, ids))
        if kind == "messages":
            prompts, answers = self._conversations(batch[fields[0]], fields[0], rows)
            return self._out(self._chat(prompts, answers, rows))
        first = batch[fields[0]]
        if kind == "prompt_completion" and any(isinstance(value, list) for value in first):
            pairs = [
                (p if isinstance(p, list) else None, c if isinstance(c, list) else None)
                for p, c in zip(first, batch[fields[1]])
            ]
            joined = [None if p is None or c is None else p + c for p, c in pairs]
            prompts, answers = self._conversations(joined, f"{fields[0]}' and '{fields[1]}", rows)
            return self._out(self._chat(prompts, answers, rows))
        texts = self._texts(batch, fields[0], rows, required=False)
        answers = self._texts(batch, fields[1], rows, required=True)
        if self.layout.template is not None:
            return self._out(self._chat([[{"role": "user", "content": text}] for text in texts], answers, rows))
        answer_ids = self._ids(answers, special=False)
        return self._out(
            assemble(
                self._ids(texts, special=True),
                [ids + self._eos for ids in answer_ids],
                [(0, len(ids)) for ids in answer_ids],
                self.layout.max_length,
            )
        )

    def _out(self, columns: dict[str, list[Any]]) -> dict[str, Any]:
        if not self.arrow:
            return columns
        ids = pa.list_(pa.int32())
        types = {"input_ids": ids, "labels": ids, "cut": pa.bool_()}
        return pa.table({name: pa.array(values, types.get(name, pa.int32())) for name, values in columns.items()})

    def _texts(self, batch: dict[str, list[Any]], name: str, rows: list[int], *, required: bool) -> list[str]:
        return check_texts(batch[name], name, rows, self.source, required=required)

    def _conversations(self, values: list[Any], name: str, rows: list[int]) -> tuple[list[list[Message]], list[str]]:
        """Everything before the last assistant turn (system prompt included) and that turn's content."""
        prompts, answers = [], []
        for messages, row in zip(values, rows):
            if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
                raise DataError(f"{self.source}: row {row}: '{name}' must be a list of {{role, content}} messages")
            last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
            if last is None:
                raise DataError(f"{self.source}: row {row}: no assistant turn in '{name}'; there is nothing to learn")
            content = messages[last].get("content")
            if not isinstance(content, str) or not content.strip():
                raise DataError(
                    f"{self.source}: row {row}: the last assistant turn is empty or not text; there is nothing to learn"
                )
            prompts.append(messages[:last])
            answers.append(content)
        return prompts, answers

    def _chat(self, prompts: list[list[Message]], answers: list[str], rows: list[int]) -> dict[str, Any]:
        assert self.layout.template is not None
        turns = split_turns(
            self.tokenizer, self.layout.template, self.layout.wrapper or Wrapper(), prompts, answers, rows, self.source
        )
        prompt_ids = self._ids(turns.prompts, special=False)
        encodings = self._encodings(turns.goldens, False) if getattr(self.tokenizer, "is_fast", False) else None
        if encodings is not None:
            golden_ids = [encoding.ids for encoding in encodings]
            spans = [token_span(e.offsets, *span) for e, span in zip(encodings, turns.spans)]
        elif getattr(self.tokenizer, "is_fast", False):
            encoded = self.tokenizer(turns.goldens, add_special_tokens=False, return_offsets_mapping=True)
            golden_ids = encoded["input_ids"]
            spans = [token_span(offsets, *span) for offsets, span in zip(encoded["offset_mapping"], turns.spans)]
        else:  # no offsets: the content and the text around it tokenized apart
            golden_ids, spans = [], []
            for golden, (start, end) in zip(turns.goldens, turns.spans):
                head, body, tail = (
                    self._ids([part], special=False)[0] if part else []
                    for part in (golden[:start], golden[start:end], golden[end:])
                )
                golden_ids.append(head + body + tail)
                spans.append((len(head), len(head) + len(body)))
        golden_ids = [ids if keeps else ids + self._eos for ids, keeps in zip(golden_ids, turns.continues)]
        return assemble(prompt_ids, golden_ids, spans, self.layout.max_length)

    def _tokenized(self, batch: dict[str, list[Any]], rows: list[int]) -> dict[str, Any]:
        name, *extra = self.layout.fields
        rows_ids, labels = [], []
        for index, (ids, row) in enumerate(zip(batch[name], rows)):
            if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
                raise DataError(f"{self.source}: row {row}: '{name}' must be a non-empty list of token ids")
            given = list(ids)
            if extra:
                other = batch[extra[0]][index]
                if not isinstance(other, list) or len(other) != len(ids):
                    raise DataError(f"{self.source}: row {row}: '{extra[0]}' must be a list as long as '{name}'")
                given = other if extra[0] == "labels" else [t if m else IGNORE_INDEX for t, m in zip(ids, other)]
            if all(label == IGNORE_INDEX for label in given):
                raise DataError(f"{self.source}: row {row}: every label is masked; there is nothing to learn")
            rows_ids.append(list(ids))
            labels.append(given)
        return self._trained(rows_ids, labels)

    def _trained(self, rows_ids: list[list[int]], labels: list[list[int]]) -> dict[str, list[Any]]:
        """Rows that bring their own labels: the prompt and golden as a `RowReader` splits them (a row trained
        whole is split after the template's generation opener, else halfway), the labels kept as given."""
        reader = RowReader(self.tokenizer, self.layout.wrapper)
        special = set(getattr(self.tokenizer, "all_special_ids", []))
        prompts, goldens, spans = [], [], []
        for ids, given in zip(rows_ids, labels):
            start, end = reader.boundary(ids, given)
            if start >= self.layout.max_length:  # a prompt longer than max_length: keep room for a golden
                start = self.layout.max_length // 2
            content = reader.content(ids[start:end])
            stop = content[1]
            while stop > content[0] and ids[start + stop - 1] in special:
                stop -= 1
            prompts.append(ids[:start])
            goldens.append(ids[start:])
            spans.append((content[0], stop))
        return assemble(prompts, goldens, spans, self.layout.max_length, labels)

    def _ids(self, texts: list[str], *, special: bool) -> list[list[int]]:
        encodings = self._encodings(texts, special)
        if encodings is None:
            return self.tokenizer(texts, add_special_tokens=special)["input_ids"] if texts else []
        return [encoding.ids for encoding in encodings]

    def _encodings(self, texts: list[str], special: bool) -> list[Any] | None:
        """The fast tokenizer's own encodings, skipping the Python wrapping `tokenizer(...)` adds (a third of the
        time); None where that wrapping would change the result (truncation, padding or special-token splitting)."""
        backend = (
            getattr(self.tokenizer, "backend_tokenizer", None) if getattr(self.tokenizer, "is_fast", False) else None
        )
        if backend is None or backend.truncation or backend.padding:
            return None
        if backend.encode_special_tokens != bool(getattr(self.tokenizer, "split_special_tokens", False)):
            return None
        return backend.encode_batch(texts, add_special_tokens=special)


def check_texts(values: list[Any], name: str, rows: list[int], source: str, *, required: bool) -> list[str]:
    """The values, when each is text (and, if `required`, not blank); else the first bad row's DataError."""
    for value, row in zip(values, rows):
        if value is None:
            raise DataError(f"{source}: row {row} has no '{name}'")
        if not isinstance(value, str):
            raise DataError(f"{source}: row {row}: '{name}' must be text, got {type(value).__name__}")
        if required and not value.strip():
            raise DataError(f"{source}: row {row}: '{name}' is empty; there is nothing to learn")
    return values


def assemble(
    prompts: list[list[int]],
    goldens: list[list[int]],
    spans: list[tuple[int, int]],
    max_length: int,
    labels: list[list[int]] | None = None,
) -> dict[str, list[Any]]:
    """The columns of the examples that fit: the golden is cut to max_length, an example with no room dropped.

    `labels` overrides the default (prompt masked, golden trained) for data that brings its own."""
    out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for index, (prompt, golden, (start, end)) in enumerate(zip(prompts, goldens, spans)):
        room = max_length - len(prompt)
        if room <= 0:
            continue
        cut = len(golden) > room
        golden = golden[:room]
        out["input_ids"].append(prompt + golden)
        given = labels[index][: len(prompt) + len(golden)] if labels is not None else None
        out["labels"].append(given if given is not None else [IGNORE_INDEX] * len(prompt) + golden)
        out["prompt_length"].append(len(prompt))
        out["content_start"].append(min(start, len(golden)))
        out["content_end"].append(min(end, len(golden)))
        out["cut"].append(cut)
    return out
