"""A dropped SSH connection (SIGHUP) stops a run that trains in the app as cleanly as `q` would."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import TUI, Tmux, wait_for, write_config
from twotier.store import LedgerReader, RunStatus


def run_status(ledger: Path) -> RunStatus:
    with LedgerReader(ledger) as reader:
        return reader.run("latest").status


def test_hangup_stops_the_run_with_a_checkpoint(tmp_path: Path, tmux: Tmux):
    config = write_config(tmp_path, log_steps=1, eval_steps=0, max_steps=100_000, batch_size=8)
    tmux.start([str(TUI), "--config", str(config)], cwd=tmp_path)
    tmux.wait_for_text("FAST LOG")
    tmux.kill()  # the terminal goes away: the app gets SIGHUP
    ledger = tmp_path / "ledger.db"
    wait_for(lambda: run_status(ledger) is not RunStatus.RUNNING, "the run to end")
    assert run_status(ledger) is RunStatus.STOPPED
    with LedgerReader(ledger) as reader:
        run_id = reader.run("latest").id
    assert list((tmp_path / "out" / run_id).glob("checkpoint-*"))


def test_hangup_ends_the_process(tmp_path: Path, tmux: Tmux):
    config = write_config(tmp_path, log_steps=1, eval_steps=0, max_steps=100_000, batch_size=8)
    tmux.start([str(TUI), "--config", str(config)], cwd=tmp_path)
    tmux.wait_for_text("FAST LOG")
    tmux.kill()
    wait_for(lambda: not app_processes(config), "the app's process to exit")


def app_processes(config: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"--config {config}"], capture_output=True, text=True)
    return found.stdout.split()
