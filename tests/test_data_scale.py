"""The Arrow data pipeline on generated datasets of a few thousand rows: cached, streamed, checked, every format."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from twotier.engine import data
from twotier.engine.config import load_config
from twotier.engine.data import IGNORE_INDEX, STATS, load_splits
from twotier.engine.errors import DataError

ROWS = 3000


def words(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(rng.randint(low, high))).strip() or "x"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def pairs(count: int = ROWS, seed: int = 0, keys: tuple[str, str] = ("prompt", "answer")) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{keys[0]: words(rng, 10, 30), keys[1]: words(rng, 5, 15)} for _ in range(count)]


def settings(tmp_path: Path, dataset: str, **overrides: object) -> object:
    values = {
        "dataset": dataset,
        "max_length": 64,
        "cache_dir": str(tmp_path / "cache"),
        "eval_samples": 16,
        "probe_size": 4,
        "output_dir": str(tmp_path / "out"),
    }
    return load_config(None, {**values, **overrides})


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory):
    """The chat demo's tokenizer: byte-level BPE, ChatML tokens and Qwen2-Instruct's template."""
    from twotier.engine.chat_demo import write_chat_model
    from twotier.engine.model import load_model

    folder = write_chat_model(tmp_path_factory.mktemp("chat-model"), 0, hidden=32, layers=1)
    return load_model(str(folder))[1]


def test_a_second_start_reads_the_tokenized_cache_instead_of_tokenizing(tiny, tmp_path):
    config = settings(tmp_path, write_jsonl(tmp_path / "train.jsonl", pairs()))
    before = STATS["rows"]
    first = load_splits(config, tiny.tokenizer, tmp_path)
    tokenized = STATS["rows"] - before
    second = load_splits(config, tiny.tokenizer, tmp_path)
    assert (first.tokenized, tokenized) == (True, ROWS)
    assert (second.tokenized, STATS["rows"] - before) == (False, ROWS)
    assert second.train[:50] == first.train[:50] and second.validation == first.validation


def test_another_max_length_tokenizes_again(tiny, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", pairs())
    load_splits(settings(tmp_path, path), tiny.tokenizer, tmp_path)
    assert load_splits(settings(tmp_path, path, max_length=48), tiny.tokenizer, tmp_path).tokenized


def test_the_training_set_is_arrow_with_the_prompt_masked(tiny, tmp_path):
    import datasets

    splits = load_splits(settings(tmp_path, write_jsonl(tmp_path / "train.jsonl", pairs())), tiny.tokenizer, tmp_path)
    assert isinstance(splits.train, datasets.Dataset) and splits.train.column_names == ["input_ids", "labels"]
    assert len(splits.train) == ROWS - round(ROWS * 0.1) and len(splits.validation) == 16
    row = splits.train[0]
    shown = splits.reader.show(row["input_ids"], row["labels"])
    assert row["labels"][: shown.prompt_tokens] == [IGNORE_INDEX] * shown.prompt_tokens
    assert row["labels"][-1] == tiny.tokenizer.eos_token_id and not splits.loss_covers_prompt


def test_a_bad_row_deep_in_the_batched_map_names_its_row(tiny, tmp_path):
    rows = pairs()
    rows[2344]["answer"] = "   "
    config = settings(tmp_path, write_jsonl(tmp_path / "train.jsonl", rows))
    with pytest.raises(DataError, match=r"train.jsonl: row 2345: 'answer' is empty; there is nothing to learn$"):
        load_splits(config, tiny.tokenizer, tmp_path)


def test_a_bad_row_is_named_when_several_processes_tokenize(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PARALLEL_ROWS", 1000)
    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    rows = pairs()
    rows[2950]["answer"] = None
    config = settings(tmp_path, write_jsonl(tmp_path / "train.jsonl", rows))
    with pytest.raises(DataError, match=r"train.jsonl: row 2951 has no 'answer'$"):
        load_splits(config, tiny.tokenizer, tmp_path)


def test_a_stream_yields_training_examples_after_its_head_which_is_the_validation_set(tiny, tmp_path):
    import datasets

    rows = pairs()
    splits = load_splits(
        settings(tmp_path, write_jsonl(tmp_path / "train.jsonl", rows), streaming=True), tiny.tokenizer, tmp_path
    )
    assert isinstance(splits.train, datasets.IterableDataset) and splits.streaming
    assert [e.prompt_text for e in splits.validation] == [row["prompt"] for row in rows[:16]]
    assert [e.golden_text for e in splits.validation] == [row["answer"] for row in rows[:16]]
    first = next(iter(splits.train))
    assert splits.reader.show(first["input_ids"], first["labels"]).golden == rows[16]["answer"]


def test_a_streamed_run_trains_and_evaluates(trainer_in, tmp_path):
    from twotier.store import RunStatus

    rng = random.Random(0)
    reversals = [
        {"prompt": f"reverse {word}=", "answer": word[::-1]} for word in (words(rng, 3, 6) for _ in range(300))
    ]
    path = write_jsonl(tmp_path / "train.jsonl", reversals)
    run = trainer_in(dataset=path, streaming=True, max_steps=6, log_steps=2, eval_steps=6, eval_samples=8, probe_size=4)
    assert run.status is RunStatus.FINISHED, run.error
    assert run.events[-1].val_loss is not None and len(run.events[-1].probes) == 4


def test_messages_give_the_exact_templated_prompt_and_the_content_as_golden(chat_model, tmp_path):
    messages = [
        {"role": "system", "content": "Reply tersely."},
        {"role": "user", "content": "Spell backwards: cat"},
        {"role": "assistant", "content": "tac"},
        {"role": "user", "content": "Spell backwards: horse"},
        {"role": "assistant", "content": "esroh"},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": messages}] * 40)
    splits = load_splits(settings(tmp_path, path, max_length=128), chat_model, tmp_path)
    example = splits.validation[0]
    prompt = chat_model.apply_chat_template(messages[:-1], add_generation_prompt=True)["input_ids"]
    full = chat_model.apply_chat_template(messages)["input_ids"]
    assert splits.format == "messages" and example.prompt_ids == prompt
    assert full[: len(prompt)] == prompt and example.golden_ids == full[len(prompt) :]
    assert example.golden_text == "esroh" and chat_model.decode(example.content_ids) == "esroh"
    assert example.content_ids == chat_model("esroh", add_special_tokens=False)["input_ids"]
    row = splits.train[0]
    assert splits.reader.show(row["input_ids"], row["labels"]).golden == "esroh"


def test_a_template_from_a_jinja_file_is_split_around_its_own_markers(chat_model, tmp_path):
    template = tmp_path / "turns.jinja"
    template.write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|endoftext|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}"
    )
    path = write_jsonl(tmp_path / "data.jsonl", pairs(40))
    splits = load_splits(settings(tmp_path, path, chat_template=str(template)), chat_model, tmp_path)
    example = splits.validation[0]
    assert chat_model.decode(example.prompt_ids).endswith("<|im_start|>assistant: ")
    assert chat_model.decode(example.golden_ids).endswith("<|endoftext|>")
    assert example.golden_text in {row["answer"] for row in pairs(40)}


def test_prompt_completion_rows_are_told_from_their_columns(tiny, tmp_path):
    rows = [{"prompt": row["prompt"], "completion": row["answer"]} for row in pairs(200)]
    splits = load_splits(settings(tmp_path, write_jsonl(tmp_path / "pc.jsonl", rows)), tiny.tokenizer, tmp_path)
    assert splits.format == "prompt_completion" and not splits.loss_covers_prompt
    assert {e.golden_text for e in splits.validation} <= {row["completion"] for row in rows}


def test_conversational_prompt_completion_rows_use_the_tokenizers_template(chat_model, tmp_path):
    rows = [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["answer"]}],
        }
        for row in pairs(100)
    ]
    splits = load_splits(settings(tmp_path, write_jsonl(tmp_path / "pc.jsonl", rows)), chat_model, tmp_path)
    example = splits.validation[0]
    assert chat_model.decode(example.prompt_ids).endswith("<|im_start|>assistant\n")
    assert example.golden_text in {row["completion"][0]["content"] for row in rows}


def test_text_rows_train_every_token_and_say_so(tiny, tmp_path):
    rows = [{"text": row["prompt"]} for row in pairs(200)]
    splits = load_splits(settings(tmp_path, write_jsonl(tmp_path / "lm.jsonl", rows)), tiny.tokenizer, tmp_path)
    row = splits.train[0]
    assert splits.format == "text" and splits.loss_covers_prompt
    assert row["labels"][1:] == row["input_ids"][1:] and row["input_ids"][-1] == tiny.tokenizer.eos_token_id


def test_token_id_rows_keep_their_completion_mask(tiny, tmp_path):
    rows = [{"input_ids": [1, 10, 11, 12, 13, 2], "completion_mask": [0, 0, 0, 1, 1, 1]}] * 50
    splits = load_splits(settings(tmp_path, write_jsonl(tmp_path / "ids.jsonl", rows)), tiny.tokenizer, tmp_path)
    assert splits.format == "tokenized" and not splits.loss_covers_prompt
    assert splits.train[0]["labels"] == [IGNORE_INDEX] * 3 + [12, 13, 2]
    assert splits.validation[0].content_ids == [12, 13]


def test_token_id_rows_without_labels_train_the_whole_row(tiny, tmp_path):
    rows = [{"input_ids": [1, 10, 11, 12, 2]}] * 50
    splits = load_splits(settings(tmp_path, write_jsonl(tmp_path / "ids.jsonl", rows)), tiny.tokenizer, tmp_path)
    assert splits.loss_covers_prompt and splits.train[0]["labels"] == [1, 10, 11, 12, 2]


def test_an_old_prompt_answer_config_runs_unchanged(tiny, tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", pairs(200, keys=("q", "a")))
    config = load_config(
        None,
        {
            "dataset": path,
            "prompt_field": "q",
            "answer_field": "a",
            "chat_template": False,
            "max_length": 64,
            "output_dir": str(tmp_path / "out"),
        },
    )
    splits = load_splits(config, tiny.tokenizer, tmp_path)
    assert splits.format == "prompt_answer" and len(splits.train) == 180 and len(splits.validation) == 20
    assert {e.golden_text for e in splits.validation} <= {row["a"] for row in pairs(200, keys=("q", "a"))}


def test_loading_and_tokenizing_report_their_progress(tiny, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "PBAR_REFRESH_TIME_INTERVAL", 0.0)  # every batch reports, however fast
    heard: list[tuple[str, int, int | None]] = []
    config = settings(tmp_path, write_jsonl(tmp_path / "train.jsonl", pairs()))
    load_splits(
        config, tiny.tokenizer, tmp_path, progress=lambda phase, done, total: heard.append((phase, done, total))
    )
    assert ("tokenizing", ROWS, ROWS) in heard and any(phase == "loading" for phase, _, _ in heard)
    done = [count for phase, count, _ in heard if phase == "tokenizing"]
    assert done == sorted(done) and {1000, 2000} <= set(done)


def test_an_unknown_data_format_is_refused_before_any_work():
    from twotier.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="'data_format' must be one of prompt_answer, prompt_completion, messages"):
        load_config(None, {"data_format": "chat"})
