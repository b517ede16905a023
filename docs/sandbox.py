"""Where the README's blocks run: one temporary folder set up like a fresh checkout after `make`, never
the checkout itself, and a private tmux server for the app's screens."""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .readme import TORCH_THREADS, Block, explain, matches, normalise_all, regenerate, session

BLOCK_TIMEOUT_S = 600
SCREEN_TIMEOUT_S = 120


@dataclass
class Outcome:
    """What running a block found: its problems (none: it passed) and, for blocks that show output, what
    it shows now, in the README's shape (None where that could not be kept: see `problems`)."""

    problems: list[str] = field(default_factory=list)
    lines: list[str] | None = None
    warnings: list[str] = field(default_factory=list)  # with --update: output whose `…` could not be kept


class Sandbox:
    """A temporary folder with a copy of config.json and a link to the environment's .venv."""

    def __init__(self, repo: Path, root: Path) -> None:
        self.repo = repo
        self.root = root
        self.scripts = root / ".readme"
        self.scripts.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / "config.json", root / "config.json")
        venv = Path(sys.executable).parent.parent
        (root / ".venv").symlink_to(venv)
        self.env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "OMP_NUM_THREADS": str(TORCH_THREADS),
            "PYTHONUNBUFFERED": "1",  # stdout and stderr in the order they were written
            "PYTHONIOENCODING": "utf-8",
            "COLUMNS": "100",
            "TERM": "dumb",
            "NO_COLOR": "1",
        }
        self.env.pop("PYTHONPATH", None)
        self.tmux = Tmux(self.env, f"twotier-readme-{os.getpid()}")
        self.ran: set[str] = set()  # commands of output blocks run so far, spaces collapsed

    def close(self) -> None:
        self.tmux.kill()
        self._stop_daemons()

    def _stop_daemons(self) -> None:
        """Stop a `twotier daemon` that a block left serving (one that failed before its last block stopped
        it): it holds the lock `<ledger>.daemon`, which names its pid, until it exits; SIGTERM stops it cleanly."""
        for lock in self.root.glob("**/*.daemon"):
            with lock.open("r") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    continue  # no daemon holds it
                except BlockingIOError:
                    pid = int(handle.read().strip() or 0)
            if pid:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + BLOCK_TIMEOUT_S
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.2)

    def execute(self, block: Block, *, update: bool = False) -> Outcome:
        run: dict[str, Callable[[Block, bool], Outcome]] = {
            "run": self._run,
            "output": self._output,
            "sql": self._sql,
            "python": self._python,
            "app": self._app,
            "screen": self._screen,
            "ci": self._ci,
        }
        return run[block.kind or ""](block, update)

    def _script(self, name: str, text: str) -> Path:
        path = self.scripts / name
        path.write_text(text, encoding="utf-8")
        return path

    def _bash(self, script: Path, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", *options, str(script)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )

    def _failed(self, what: str, done: subprocess.CompletedProcess[str]) -> list[str]:
        if done.returncode == 0:
            return []
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        return [f"{what} exited with status {done.returncode}:\n{tail}"]

    def _run(self, block: Block, update: bool) -> Outcome:
        done = self._bash(self._script(f"block-{block.first}.sh", "\n".join(block.lines) + "\n"), "-eo", "pipefail")
        return Outcome(self._failed("the script", done))

    def _output(self, block: Block, update: bool) -> Outcome:
        commands = session(block)
        # The mark between commands keeps $? for the next command (an `echo $?` in the README).
        script = [
            "exec 2>&1",
            "__mark() { local status=$?; printf '\\n@@readme-command %d@@\\n' \"$1\"; return $status; }",
        ]
        for index, command in enumerate(commands):
            script += [f"__mark {index}", command.text]
            self.ran.add(_spaced(command.text))
        done = self._bash(self._script(f"block-{block.first}.sh", "\n".join(script) + "\n"))
        pieces = re.split(r"\n@@readme-command \d+@@\n", "\n" + done.stdout)[1:]
        outcome = Outcome(lines=[])
        if len(pieces) != len(commands):
            outcome.problems.append(f"the session stopped early (status {done.returncode}):\n{done.stdout[-3000:]}")
            outcome.lines = None
            return outcome
        for command, piece in zip(commands, pieces):
            actual = piece.split("\n")
            shaped = regenerate(command.shown, actual)
            if shaped is None:
                found = f"$ {command.text}\nshows something else:\n{explain(command.shown, actual)}"
                (outcome.warnings if update else outcome.problems).append(found)
                shaped = [line.rstrip() for line in piece.rstrip("\n").split("\n")] if piece.strip() else []
            assert outcome.lines is not None
            outcome.lines += [f"$ {command.text}", *shaped]
        return outcome

    def _sql(self, block: Block, update: bool) -> Outcome:
        statements, current = [], []
        for line in block.lines:
            current.append(line)
            if line.rstrip().endswith(";"):
                statements.append("\n".join(current))
                current = []
        outcome = Outcome()
        with closing(sqlite3.connect(f"file:{self.root / 'runs' / 'ledger.db'}?mode=ro", uri=True)) as db:
            for statement in statements:
                try:
                    rows = db.execute(statement).fetchall()
                except sqlite3.Error as err:
                    outcome.problems.append(f"{statement}\nfails: {err}")
                    continue
                if not rows:
                    outcome.problems.append(f"{statement}\nreturns no rows")
        return outcome

    def _python(self, block: Block, update: bool) -> Outcome:
        script = self._script(f"block-{block.first}.py", "\n".join(block.lines) + "\n")
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        return Outcome(self._failed("the script", done))

    def _app(self, block: Block, update: bool) -> Outcome:
        outcome = Outcome()
        for line in block.lines:
            command = line.split(" #", 1)[0].strip()
            if not command or command.startswith("#"):
                continue
            status = self.tmux.start(command, self.root, (100, 30))
            # A resumed run shows as running once the engine has reopened it in the ledger.
            screen = self.tmux.wait_for(partial(_ready, trains="--attach" not in command))
            if screen is None:
                outcome.problems.append(f"{command}: showed no event within {SCREEN_TIMEOUT_S} s:\n{self.tmux.text()}")
                self.tmux.kill()
                continue
            outcome.problems += self._quit(command, status)
        return outcome

    def _quit(self, command: str, status: Path) -> list[str]:
        self.tmux.keys("q")
        asked = self.tmux.wait_for(lambda text: "Stop it" in text or not text, timeout=10)
        if asked and "Stop it" in asked:
            self.tmux.keys("y")
        deadline = time.monotonic() + SCREEN_TIMEOUT_S
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.tmux.kill()
        code = status.read_text().strip() if status.exists() else "none (still running)"
        return [] if code == "0" else [f"{command}: quit with status {code}"]

    def _screen(self, block: Block, update: bool) -> Outcome:
        size, command = block.argument.split(" ", 1)
        width, height = (int(part) for part in size.split("x"))
        status = self.tmux.start(command, self.root, (width, height))
        if update:
            screen = self.tmux.wait_until_still()
            lines = screen.split("\n") if screen else None
        else:
            shown = self.tmux.wait_for(lambda text: matches(block.lines, text.split("\n")))
            lines = None if shown is None else block.lines
        outcome = Outcome(lines=lines)
        if lines is None:
            last = self.tmux.text().split("\n")
            outcome.problems.append(
                f"{command} at {size} never showed the README's screen:\n{explain(block.lines, last)}"
            )
            self.tmux.kill()
            return outcome
        outcome.problems += self._quit(command, status)
        return outcome

    def _ci(self, block: Block, update: bool) -> Outcome:
        import yaml

        workflow = yaml.safe_load("\n".join(block.lines))
        outcome = Outcome()
        for job in workflow["jobs"].values():
            for index, step in enumerate(job["steps"]):
                script = step.get("run")
                if script is None:
                    continue
                if "pip install" in script:
                    if not re.search(r"pip install torch --index-url https://download\.pytorch\.org/whl/cpu\n", script):
                        outcome.problems.append(
                            f"step {step.get('name')!r} does not install the CPU build of torch first"
                        )
                    continue  # it needs the network; the sandbox has the checkout's environment instead
                # A command an output block above already ran here (the same training) is not run twice.
                commands = [command for command in _commands(script) if _spaced(command) not in self.ran]
                path = self._script(f"block-{block.first}-{index}.sh", "\n".join(commands) + "\n")
                done = self._bash(path, "--noprofile", "--norc", "-eo", "pipefail")
                outcome.problems += self._failed(f"step {step.get('name')!r}", done)
        return outcome


def _ready(screen: str, trains: bool) -> bool:
    """An app is ready to quit once an event is on its screen and, where it trains, its run is running."""
    return ("FAST LOG" in screen or "FULL EVAL" in screen) and (not trains or "● running" in screen)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _spaced(command: str) -> str:
    """A shell command on one line, its spaces collapsed: two spellings of one command compare equal."""
    return " ".join(command.replace("\\\n", " ").split())


def _commands(script: str) -> list[str]:
    """The commands of a script, one a line, a line ending in a backslash joined with the next."""
    commands: list[str] = []
    pending = ""
    for line in script.splitlines():
        pending += line + "\n"
        if not line.rstrip().endswith("\\"):
            commands.append(pending.rstrip("\n"))
            pending = ""
    return [command for command in commands if command.strip()]


class Tmux:
    """A private tmux server (its own socket), started with the sandbox's environment."""

    def __init__(self, env: dict[str, str], socket: str) -> None:
        self.env = env
        self.socket = socket
        self._runs = 0

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env)

    def start(self, command: str, cwd: Path, size: tuple[int, int]) -> Path:
        """Run `command` in a new session of `size`; returns the file its exit status will be written to."""
        self._runs += 1
        status = cwd / ".readme" / f"app-{self._runs}.status"
        # The terminal's own size, not COLUMNS or LINES from the environment (Textual reads those first).
        shell = f"unset COLUMNS LINES; {command}; echo $? > {shlex.quote(str(status))}"
        self("new-session", "-d", "-s", "app", "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd), shell)
        return status

    def text(self) -> str:
        """The screen, its lines without trailing spaces and without the empty lines below them."""
        done = self("capture-pane", "-p", "-t", "app")
        if done.returncode:
            return ""  # the session has ended
        return "\n".join(line.rstrip() for line in done.stdout.rstrip("\n").split("\n")).rstrip("\n")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "app", *keys)

    def wait_for(self, condition: Callable[[str], bool], timeout: float = SCREEN_TIMEOUT_S) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if condition(screen):
                return screen or " "
            time.sleep(0.5)
        return None

    def wait_until_still(self, still_s: float = 3.0, timeout: float = SCREEN_TIMEOUT_S) -> str | None:
        """The screen once it has not changed for `still_s` seconds (the app has caught up); a clock that
        ticks (a live run's elapsed time) is no change, as the README's comparison counts none."""
        deadline = time.monotonic() + timeout
        last: list[str] = []
        since = time.monotonic()
        while time.monotonic() < deadline:
            screen = self.text()
            seen = normalise_all(screen.split("\n"))
            if seen != last:
                last, since = seen, time.monotonic()
            elif screen and time.monotonic() - since >= still_s:
                return screen
            time.sleep(0.25)
        return None

    def kill(self) -> None:
        self("kill-server")
