"""`twotier-tui --headless` as a user runs it: blocks on stdout, one line and exit 2 on bad input."""

from __future__ import annotations

import hashlib
import sqlite3

from support import REFERENCE, headless
from twotier.store import LedgerReader


def test_headless_run_prints_each_event_and_a_closing_summary(tmp_path):
    result = headless(tmp_path, *REFERENCE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("📍 FAST LOG - Step") == 6
    assert result.stdout.count("🔍 FULL EVAL - Step") == 2
    assert "🤖 MODEL: [Skipped - fast log only]" in result.stdout
    assert "📊 Loss Comparison: Train=" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("✔ run ")


def test_unknown_key_exits_2_with_one_line_and_writes_nothing(tmp_path):
    result = headless(tmp_path, *REFERENCE, config={"log_step": 5})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"twotier: error: {tmp_path / 'config.json'}: unknown key 'log_step'; did you mean 'log_steps'?"
    ]
    assert not (tmp_path / "ledger.db").exists()


def test_missing_dataset_file_exits_2_naming_it(tmp_path):
    result = headless(tmp_path, *REFERENCE, "--dataset", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("missing.jsonl: dataset file not found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_failed_start_leaves_an_existing_ledger_byte_for_byte(short_run, tmp_path):
    ledger = tmp_path / "ledger.db"
    with sqlite3.connect(short_run.ledger) as source, sqlite3.connect(ledger) as copy:
        source.backup(copy)  # the run's last commits may still sit in the -wal file
    before = hashlib.sha256(ledger.read_bytes()).hexdigest()
    result = headless(tmp_path, *REFERENCE, "--log-steps", "-3")
    assert result.returncode == 2 and "'log_steps' must be 0 or more" in result.stderr
    assert hashlib.sha256(ledger.read_bytes()).hexdigest() == before
    with LedgerReader(ledger) as reader:
        assert [run.id for run in reader.runs()] == [short_run.run_id]


def test_misaligned_tiers_warn_on_stderr(tmp_path):
    result = headless(tmp_path, "--max-steps", "3", "--log-steps", "2", "--eval-steps", "3")
    assert result.returncode == 0, result.stderr
    assert "eval_steps=3 is not a multiple of log_steps=2" in result.stderr
