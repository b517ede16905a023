"""Datasets from files: every supported format, the prompt masked out of the labels, clear refusals."""

from __future__ import annotations

import json

import pytest

from twotier.engine.config import load_config
from twotier.engine.data import IGNORE_INDEX, encode_pairs, load_pairs, load_splits
from twotier.engine.errors import DataError

ROWS = [{"q": "reverse abc=", "a": "cba"}, {"q": "reverse dog=", "a": "god"}, {"q": "reverse xyz=", "a": "zyx"}]


def jsonl(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_each_file_format_loads_prompt_and_answer_fields(tmp_path, suffix):
    import datasets

    path = tmp_path / f"data.{suffix}"
    table = datasets.Dataset.from_list(ROWS)
    {"jsonl": table.to_json, "csv": table.to_csv, "parquet": table.to_parquet}[suffix](str(path))
    pairs = load_pairs(str(path), "q", "a")
    assert [(p.prompt, p.answer) for p in pairs] == [(r["q"], r["a"]) for r in ROWS]


def test_prompt_tokens_are_masked_out_of_the_labels(tiny, tmp_path):
    config = load_config(None, {"max_length": 64})
    (encoded,) = encode_pairs(tiny.tokenizer, load_pairs(jsonl(tmp_path, ROWS[:1]), "q", "a"), config, "x")
    prompt_length = len(encoded.prompt_ids)
    assert encoded.labels[:prompt_length] == [IGNORE_INDEX] * prompt_length
    assert encoded.labels[prompt_length:] == encoded.answer_ids
    assert tiny.tokenizer.decode(encoded.answer_ids, skip_special_tokens=True) == "cba"
    assert encoded.answer_ids[-1] == tiny.tokenizer.eos_token_id


def test_chat_template_wraps_the_prompt_and_still_masks_it(tiny, tmp_path):
    tiny.tokenizer.chat_template = (
        "{% for m in messages %}<s>user:{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    )
    config = load_config(None, {"chat_template": True})
    (encoded,) = encode_pairs(tiny.tokenizer, load_pairs(jsonl(tmp_path, ROWS[:1]), "q", "a"), config, "x")
    assert tiny.tokenizer.decode(encoded.prompt_ids, skip_special_tokens=True) == "user:reverse abc=>"
    assert encoded.labels.count(IGNORE_INDEX) == len(encoded.prompt_ids)


def test_chat_template_without_one_in_the_tokenizer_is_refused(tiny, tmp_path):
    config = load_config(None, {"chat_template": True})
    with pytest.raises(DataError, match="'chat_template' is on but the tokenizer"):
        encode_pairs(tiny.tokenizer, load_pairs(jsonl(tmp_path, ROWS[:1]), "q", "a"), config, "x")


def test_missing_field_names_the_file_and_the_fields_present(tmp_path):
    path = jsonl(tmp_path, ROWS)
    with pytest.raises(DataError, match=r"data.jsonl: no 'prompt' field \(set 'prompt_field'\); the rows have: q, a"):
        load_pairs(path, "prompt", "a")


def test_row_without_the_answer_names_the_row(tmp_path):
    path = jsonl(tmp_path, [ROWS[0], {"q": "reverse cat="}, ROWS[1]])
    with pytest.raises(DataError, match=r"data.jsonl: row 2 has no 'a'"):
        load_pairs(path, "q", "a")


def test_empty_dataset_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("q,a\n")
    with pytest.raises(DataError, match="empty.csv: the dataset is empty"):
        load_pairs(str(path), "q", "a")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.jsonl: dataset file not found"):
        load_pairs(str(tmp_path / "nowhere.jsonl"), "q", "a")


def test_without_a_validation_file_a_seeded_fraction_is_held_out(tiny, tmp_path):
    rows = [{"prompt": f"reverse w{i}=", "answer": f"{i}w"} for i in range(50)]
    config = load_config(None, {"dataset": jsonl(tmp_path, rows), "validation_split": 0.2})
    first = load_splits(config, tiny.tokenizer, tmp_path)
    again = load_splits(config, tiny.tokenizer, tmp_path)
    assert (len(first.train), len(first.validation)) == (40, 10)
    assert first.validation == again.validation


def test_demo_validation_words_never_appear_in_training(demo_examples):
    train = {tuple(demo_examples.reader.split(row["input_ids"], row["labels"])[0]) for row in demo_examples.train}
    assert not any(tuple(e.prompt_ids) in train for e in demo_examples.validation)


def test_unreachable_hub_dataset_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"^someone/no-such-dataset: cannot load the dataset: "):
        load_pairs("someone/no-such-dataset", "prompt", "answer")
