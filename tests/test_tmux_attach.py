"""End to end, as a new user: a headless run writes a ledger, `twotier-tui --attach` in tmux shows it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import TUI, WAIT_S, Tmux, has_run, wait_for, write_config


def test_attach_in_tmux_shows_a_headless_run_up_to_its_full_eval(tmp_path: Path, tmux: Tmux):
    config = write_config(tmp_path)
    ledger = tmp_path / "ledger.db"
    headless = subprocess.Popen(
        [
            str(TUI),
            "--headless",
            "--config",
            str(config),
            "--max-steps",
            "40",
            "--log-steps",
            "5",
            "--eval-steps",
            "20",
            "--batch-size",
            "16",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: ledger.exists() and has_run(ledger), "the headless run to record itself")
        tmux.start([str(TUI), "--attach", str(ledger)], cwd=tmp_path)
        screen = tmux.wait_for_text("FULL EVAL")
        assert "twotier" in screen and "model demo" in screen and "/40" in screen
        assert "full evals" in screen and "q Quit" in screen
    finally:
        headless.wait(WAIT_S)
    assert headless.returncode == 0, headless.stderr.read() if headless.stderr else ""
