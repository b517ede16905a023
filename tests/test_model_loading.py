"""Models load by path through the Auto classes, as a real checkpoint would."""

from __future__ import annotations

import pytest

from twotier.engine.errors import DataError
from twotier.engine.model import load_model


def test_saved_tiny_model_loads_back_by_path(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer.decode(tokenizer("reverse abc=")["input_ids"], skip_special_tokens=True) == "reverse abc="


def test_unknown_model_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="model: cannot load"):
        load_model(str(tmp_path / "no-such-model"))


def test_remote_code_is_not_trusted_unless_asked(tiny_model_dir, monkeypatch):
    import transformers

    seen = []
    original = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM,
        "from_pretrained",
        lambda *a, **k: seen.append(k["trust_remote_code"]) or original(*a, **k),
    )
    load_model(str(tiny_model_dir))
    assert seen == [False]
