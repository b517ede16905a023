"""The engine speaks chat data: `messages` rows under the model's template, a LoRA adapter from config.json."""

from __future__ import annotations

import json

import pytest

from support import headless
from twotier.engine.config import load_config
from twotier.engine.errors import ConfigError
from twotier.store import LedgerReader
from twotier.tui.cli import build_parser, config_from_args

pytest.importorskip("peft")
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def test_the_engine_trains_messages_with_lora_from_config_json(tmp_path):
    config = {"model": "demo-chat", "dataset": "demo-chat", "peft": LORA, "eval_samples": 8, "probe_size": 4}
    result = headless(tmp_path, "--max-steps", "4", "--log-steps", "2", "--eval-steps", "4", config=config)
    assert result.returncode == 0, result.stderr
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run("latest")
        events = list(reader.iter_events(run.id))
        probes = reader.probes(events[-1].id)  # type: ignore[arg-type]
    assert run.config["peft"] == LORA
    assert [e.step for e in events] == [2, 4]
    for event in events:
        assert event.golden.isalpha() and event.prompt.endswith(f"Spell backwards: {event.golden[::-1]}\nassistant\n")
    assert len(probes) == 4 and all(p.golden.isalpha() for p in probes)
    (checkpoint,) = (tmp_path / "out" / run.id).glob("checkpoint-*")
    assert json.loads((checkpoint / "adapter_config.json").read_text())["r"] == 4  # PEFT saved the adapter


def test_an_unknown_peft_key_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"'peft' has an unknown key 'lora_alpha'; did you mean 'alpha'\?"):
        load_config(None, {"peft": {"lora_alpha": 8}})
    with pytest.raises(ConfigError, match=r"'peft': 'dropout' must be a number from 0 up to 1"):
        load_config(None, {"peft": {"dropout": 1.5}})


def test_the_chat_template_flag_takes_the_tokenizers_own_or_a_file(tmp_path):
    parser = build_parser()
    assert config_from_args(parser.parse_args(["--chat-template"])).chat_template is True
    given = config_from_args(parser.parse_args(["--chat-template", "chatml.jinja"]))
    assert given.chat_template == "chatml.jinja"
    assert config_from_args(parser.parse_args([])).chat_template is False
