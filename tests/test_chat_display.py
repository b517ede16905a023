"""Chat runs as every face shows them: a long templated prompt keeps its last user turn, and what the trainer
logged beside the loss is shown, exported and queryable."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from support import fast, fixed_events, full, write_run
from twotier.tui.console.ledger import main
from twotier.tui.render import TEXT_LIMIT, event_block, probe_line

SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant. " * 8
PROMPT = f"system\n{SYSTEM}\nuser\nSpell backwards: horse\nassistant\n"
METRICS = {"entropy": 5.7423, "mean_token_accuracy": 0.25, "num_tokens": 1977.0, "loss": 5.79}


@pytest.fixture
def chat_ledger(tmp_path: Path) -> Path:
    events = [replace(e, prompt=PROMPT, metrics={**METRICS, "num_tokens": 100.0 * e.step}) for e in fixed_events()]
    return write_run(tmp_path / "ledger.db", events)


def ledger(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> str:
    assert main(["ledger", *args, "--ledger", str(path)]) == 0
    return capsys.readouterr().out


def test_a_long_templated_prompt_is_shown_by_its_last_user_turn_never_cut_to_the_system_prompt():
    block = event_block(replace(fast(5), prompt=PROMPT)).plain
    shown = block.split("📝 PROMPT:\n")[1].split("\n\n✅")[0]
    assert len(PROMPT) > TEXT_LIMIT and shown.startswith("...")
    assert shown.endswith("user\nSpell backwards: horse\nassistant\n")


def test_a_probe_row_shows_the_end_of_its_prompt():
    probe = replace(full(20, "esroh", True).probes[0], prompt=PROMPT)
    line = probe_line(probe).plain
    assert "Spell backwards: horse⏎assistant⏎" in line and "You are Qwen" not in line


def test_ledger_show_cuts_probe_prompts_from_the_left(capsys, tmp_path):
    events = [
        replace(e, probes=tuple(replace(p, prompt=PROMPT) for p in e.probes)) if e.is_full else e
        for e in fixed_events()
    ]
    out = ledger(capsys, write_run(tmp_path / "ledger.db", events), "show", "latest")
    assert "Spell backwards: horse⏎assistant⏎" in out and "system⏎You are Qwen" not in out


def test_the_block_shows_what_else_the_trainer_logged():
    block = event_block(replace(fast(5), metrics=METRICS)).plain
    assert "🧾 logged: entropy 5.742 | mean_token_accuracy 0.25 | num_tokens 1,977" in block


def test_ledger_show_lists_each_logged_key_at_its_first_and_last_step(capsys, chat_ledger):
    out = ledger(capsys, chat_ledger, "show", "latest")
    assert "also logged by the trainer" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("num_tokens"))
    assert line.split() == ["num_tokens", "500", "(step", "5)", "6,000", "(step", "60)"]


def test_logged_keys_are_exported_and_queryable_with_json_extract(capsys, chat_ledger):
    records = [json.loads(line) for line in ledger(capsys, chat_ledger, "export", "--run", "latest").splitlines()]
    assert records[0]["metrics"] == {**METRICS, "num_tokens": 500.0}
    sql = "SELECT step, json_extract(metrics, '$.entropy') FROM event WHERE step <= 10 ORDER BY step"
    out = ledger(capsys, chat_ledger, "sql", sql, "--format", "csv")
    assert out.splitlines()[1:] == ["5,5.7423", "10,5.7423"]
