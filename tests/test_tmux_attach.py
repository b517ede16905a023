"""End to end, as a new user: a headless run writes a ledger, `twotier-tui --attach` in tmux shows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from twotier.store import LedgerError, LedgerReader

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

TUI = Path(sys.executable).with_name("twotier-tui")
WAIT_S = 300
TINY = {"eval_samples": 32, "probe_size": 8, "max_length": 64, "max_new_tokens": 8, "learning_rate": 3e-3}


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


class Tmux:
    """A private tmux server (its own socket), so the test never touches the user's sessions."""

    def __init__(self, name: str) -> None:
        self.socket = f"twotier-test-{os.getpid()}-{name}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def start(self, command: list[str], cwd: Path, size: tuple[int, int] = (100, 30)) -> None:
        self("new-session", "-d", "-s", "app", "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd),
             " ".join(command))  # fmt: skip

    def screen(self) -> str:
        try:
            return self("capture-pane", "-p", "-t", "app")
        except subprocess.CalledProcessError:
            return ""  # the session ended

    def wait_for_text(self, text: str) -> str:
        """The screen, once `text` is on it."""

        def showing() -> str:
            screen = self.screen()
            return screen if text in screen else ""

        return str(wait_for(showing, f"{text!r} on the screen"))

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(request: pytest.FixtureRequest) -> Iterator[Tmux]:
    server = Tmux(request.node.name[:20])
    yield server
    server.kill()


def write_config(folder: Path, **settings: object) -> Path:
    config = folder / "config.json"
    config.write_text(json.dumps({**TINY, "ledger": str(folder / "ledger.db"), "output_dir": str(folder / "out"),
                                  **settings}))  # fmt: skip
    return config


def has_run(ledger: Path) -> bool:
    try:
        with LedgerReader(ledger) as reader:
            return bool(reader.runs())
    except LedgerError:
        return False


def test_attach_in_tmux_shows_a_headless_run_up_to_its_full_eval(tmp_path: Path, tmux: Tmux):
    config = write_config(tmp_path)
    ledger = tmp_path / "ledger.db"
    headless = subprocess.Popen(
        [str(TUI), "--headless", "--config", str(config), "--max-steps", "40", "--log-steps", "5",
         "--eval-steps", "20", "--batch-size", "16"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: ledger.exists() and has_run(ledger), "the headless run to record itself")
        tmux.start([str(TUI), "--attach", str(ledger)], cwd=tmp_path)
        screen = tmux.wait_for_text("FULL EVAL")
        assert "twotier" in screen and "model demo" in screen and "/40" in screen
        assert "full evals" in screen and "q Quit" in screen
    finally:
        headless.wait(WAIT_S)
    assert headless.returncode == 0, headless.stderr.read() if headless.stderr else ""
