"""Broken dataset files are one DataError naming the file and row; nothing loads code or pickles it did not ask for."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from twotier.engine.config import load_config
from twotier.engine.data import encode_pairs, load_pairs
from twotier.engine.demo import write_demo_model
from twotier.engine.errors import DataError
from twotier.engine.model import load_model

REPO = Path(__file__).resolve().parents[1]
BROKEN = {
    "missing field": [{"prompt": "a"}, {"prompt": "b"}],
    "null answer": [{"prompt": "a", "answer": "x"}, {"prompt": "b", "answer": None}],
    "empty answer": [{"prompt": "a", "answer": "x"}, {"prompt": "b", "answer": "  "}],
    "number for text": [{"prompt": 1, "answer": 2}, {"prompt": 3, "answer": 4}],
    "mixed types": [{"prompt": "a", "answer": "x"}, {"prompt": ["b"], "answer": "y"}],
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_row_is_one_data_error_naming_the_file(tmp_path, name):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in BROKEN[name]))
    with pytest.raises(DataError) as caught:
        load_pairs(str(path), "prompt", "answer")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_bytes_that_are_not_utf8_are_one_data_error(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"prompt": "a", "answer": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"data.jsonl: (not UTF-8 text|cannot load the dataset)"):
        load_pairs(str(path), "prompt", "answer")


def test_rows_longer_than_max_length_are_cut_with_one_warning_and_a_count(tmp_path, caplog):
    from twotier.engine.data import Pair

    _, tokenizer = load_model(str(write_demo_model(tmp_path / "model", 0, hidden=32, layers=1)))
    config = load_config(None, {"max_length": 20})
    pairs = [Pair("reverse abc=", "cba"), Pair("reverse abcdef=", "fedcba"), Pair("y" * 30, "z")]
    with caplog.at_level(logging.WARNING, logger="twotier.engine"):
        encoded = encode_pairs(tokenizer, pairs, config, "data.jsonl")
    assert all(len(e.input_ids) <= 20 for e in encoded) and len(encoded) == 2
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "2 of 3 examples are longer than max_length=20" in warning and "1 dropped entirely" in warning


def python_sources() -> list[Path]:
    return [p for folder in ("engine", "store", "tui") for p in (REPO / folder).rglob("*.py")]


def test_no_torch_load_without_weights_only_anywhere_in_the_code():
    calls = [
        (p.name, line)
        for p in python_sources()
        for line in p.read_text().splitlines()
        if re.search(r"torch\.load\(", line) and "weights_only=True" not in line
    ]
    assert python_sources() and calls == []


def test_remote_code_runs_only_when_the_config_asks():
    literal = [
        (p.name, line)
        for p in python_sources()
        for line in p.read_text().splitlines()
        if re.search(r"trust_remote_code\s*=\s*True", line)
    ]
    assert literal == []
    assert load_config(None, {}).trust_remote_code is False
