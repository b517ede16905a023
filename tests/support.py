"""Helpers the tests share: real short trainings, `twotier-tui` processes, fixed ledgers, tmux, faults.

conftest.py holds the fixtures built on these. Run as a script (`python support.py write LEDGER RUN_ID`)
this module is a writer process that logs events until it is killed: the kill -9 tests need a process
that starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twotier.engine.config import Config, load_config
from twotier.store import (
    Kind,
    Ledger,
    LedgerError,
    LedgerReader,
    LedgerWriter,
    ProbeResult,
    RunInfo,
    RunStatus,
    StepEvent,
    create_run,
    open_ledger,
)

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TUI = Path(sys.executable).with_name("twotier-tui")
WAIT_S = 300
# A small, quick demo run: the settings every test that trains starts from.
SMALL = {"eval_samples": 32, "probe_size": 8, "max_length": 64, "max_new_tokens": 8, "learning_rate": 3e-3}
TINY = {
    "log_steps": 1,
    "eval_steps": 0,
    "max_steps": 8,
    "batch_size": 8,
    "learning_rate": 3e-3,
    "eval_samples": 8,
    "probe_size": 4,
    "max_length": 64,
    "max_new_tokens": 4,
}
# A run that goes on until it is stopped: a fast log at every step, no full eval.
ENDLESS = {"max_steps": 100_000, "log_steps": 1, "eval_steps": 0, "batch_size": 8, "max_length": 64}
REFERENCE = ["--max-steps", "40", "--log-steps", "5", "--eval-steps", "20", "--batch-size", "16"]
# Text that would act on a terminal or on Textual's markup if shown as it is.
HOSTILE = {
    "markup": "[bold]loud[/bold] [/x] [link=https://evil.example]click[/link] [@click=app.quit]quit[/]",
    "csi": "clear\x1b[2Jscreen\x1b[6n",
    "osc title": "\x1b]0;owned\x07title",
    "osc 8 link": "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",
    "osc 52 clipboard": "\x1b]52;c;cm0gLXJmIH4=\x07",
    "c1 csi": "c1\x9b2Jc1\x9d0;t\x9c",
    "cr nul": "over\rwrite\x00nul",
    "bidi": "abc\u202etxt.exe",
    "emoji": "👩‍👩‍👧 🇫🇷 ok",
    "one megabyte": "é" * 524_288,
}
ESCAPE_BYTES = re.compile("[\x1b\x80-\x9f\x07\x00\r\u202e]")


# ---- real trainings in this process -------------------------------------------------------------


@dataclass(frozen=True)
class FinishedRun:
    """A run trained to its end: where its ledger is, its id, and the events it published."""

    config: Config
    ledger: Path
    run_id: str
    status: RunStatus
    events: list[StepEvent]
    error: str | None


def train(tmp: Path, run_options: dict[str, Any] | None = None, **overrides: Any) -> FinishedRun:
    """Train the demo (or what `overrides` name) in a background thread and wait for the end.
    `run_options` go to `TrainingRun` (e.g. extra callbacks)."""
    from twotier.engine.runner import RunEnded, TrainingRun

    settings: dict[str, Any] = {
        **SMALL,
        "log_steps": 5,
        "eval_steps": 20,
        "max_steps": 40,
        "batch_size": 16,
        "ledger": str(tmp / "ledger.db"),
        "output_dir": str(tmp / "out"),
    }
    settings.update(overrides)
    config = load_config(None, settings)
    run = TrainingRun(config, **(run_options or {}))
    run.start()
    events: list[StepEvent] = []
    while not isinstance(message := run.events.get(timeout=WAIT_S), RunEnded):
        events.append(message)
    run.join(60)
    return FinishedRun(config, Path(config.ledger), run.run_id, message.status, events, message.error)


def train_tiny(tmp: Path, run_options: dict[str, Any] | None = None, **overrides: Any) -> FinishedRun:
    """A few steps of the demo, a fast log at each, no full eval."""
    return train(tmp, run_options, **{**TINY, **overrides})


# ---- twotier-tui as a user runs it --------------------------------------------------------------


def write_config(folder: Path, **settings: object) -> Path:
    """config.json in `folder`, with the ledger and checkpoints inside it too."""
    config = folder / "config.json"
    config.write_text(
        json.dumps({**SMALL, "ledger": str(folder / "ledger.db"), "output_dir": str(folder / "out"), **settings})
    )
    return config


def headless_command(config: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "twotier.tui.cli", "--headless", "--config", str(config), *args]


def headless(
    tmp_path: Path, *args: str, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`twotier-tui --headless` run to its end from `tmp_path`, with a config of SMALL plus `config`."""
    command = headless_command(write_config(tmp_path, **(config or {})), *args)
    return subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, **(env or {})}
    )


def start_headless(tmp_path: Path, *args: str, config: dict[str, Any] | None = None) -> subprocess.Popen[str]:
    """A headless training started as a user starts it; returns once its first fast log is printed."""
    settings = {**ENDLESS, "eval_samples": 16, "probe_size": 4, "max_new_tokens": 4, **(config or {})}
    child = subprocess.Popen(
        headless_command(write_config(tmp_path, **settings), *args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb"},
    )
    assert child.stdout is not None
    for line in child.stdout:
        if "FAST LOG - Step" in line:
            return child
    pytest.fail(f"the run printed no event: {child.communicate()[1]}")


def twotier(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`twotier ARGS` (the query, queue and steering commands) run as a user runs it, from `folder`."""
    return subprocess.run(
        [str(TUI.with_name("twotier")), *args],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )


def start_daemon(folder: Path, *args: str) -> subprocess.Popen[str]:
    """`twotier daemon` on `folder`/runs/ledger.db, its log lines on a pipe; returns once it serves."""
    daemon = subprocess.Popen(
        [str(TUI.with_name("twotier")), "daemon", "--ledger", str(folder / "runs" / "ledger.db"), *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert daemon.stdout is not None
    first = daemon.stdout.readline()
    assert "serving" in first, first + daemon.stdout.read()
    return daemon


def run_status(ledger: Path, run_id: str) -> str:
    """The run's status as viewers show it (`stale` included); `missing` before it is recorded."""
    try:
        with LedgerReader(ledger) as reader:
            return reader.run_status(reader.run(run_id))
    except LedgerError:
        return "missing"


def wait_for_status(ledger: Path, run_id: str, *statuses: str, timeout: float = WAIT_S) -> str:
    return str(
        wait_for(
            lambda: (status := run_status(ledger, run_id)) in statuses and status,
            f"run {run_id} to be {' or '.join(statuses)}",
            timeout,
        )
    )


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> object:
    """The condition's first truthy value, polled every half second; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


def has_run(ledger: Path) -> bool:
    try:
        with LedgerReader(ledger) as reader:
            return bool(reader.runs())
    except LedgerError:
        return False


class Tmux:
    """A private tmux server (its own socket), so the test never touches the user's sessions."""

    def __init__(self, name: str) -> None:
        self.socket = f"twotier-test-{os.getpid()}-{name}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def start(self, command: list[str], cwd: Path, size: tuple[int, int] = (100, 30)) -> None:
        self(
            "new-session", "-d", "-s", "app", "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd), " ".join(command)
        )

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


# ---- ledgers written directly -------------------------------------------------------------------

START = 1_700_000_000.0
FIXED_RUN_ID = "5nap5hot0001"
PROBE_WORDS = ("alpha", "delta", "kilo", "tango")


def event(
    run_id: str,
    step: int,
    *,
    prompt: str | None = None,
    golden: str = "cba",
    kind: Kind = Kind.FAST,
    loss: float | None = 1.5,
    model_output: str | None = None,
) -> StepEvent:
    """A fast log (or full eval) as the engine would publish it, without training anything."""
    return StepEvent(
        run_id=run_id,
        step=step,
        kind=kind,
        wall_time=time.time(),
        elapsed_s=float(step),
        prompt=prompt or f"reverse abc{step}=",
        golden=golden,
        loss=loss,
        prompt_tokens=9,
        golden_tokens=4,
        batch_loss=loss,
        learning_rate=1e-3,
        grad_norm=0.5,
        tokens_per_s=1000.0,
        epoch=0.1,
        model_output=model_output,
    )


def new_run(path: Path, run_id: str = "run-1", **open_kwargs: object) -> Ledger:
    """Open (create) a ledger for writing and record a running run in it."""
    ledger = open_ledger(path, **open_kwargs)  # type: ignore[arg-type]
    now = time.time()
    create_run(
        ledger,
        RunInfo(
            id=run_id,
            name=run_id,
            status=RunStatus.RUNNING,
            model="demo",
            dataset="demo",
            config={},
            started_at=now,
            heartbeat_at=now,
            max_steps=None,
        ),
    )
    return ledger


def write_run(
    path: Path,
    events: Sequence[StepEvent],
    *,
    run_id: str = FIXED_RUN_ID,
    name: str = "demo-fixed",
    status: RunStatus = RunStatus.RUNNING,
    max_steps: int = 100,
) -> Path:
    """Record a run with fixed times and its events through the real writer; RUNNING leaves it live."""
    ledger = open_ledger(path)
    create_run(
        ledger,
        RunInfo(
            id=run_id,
            name=name,
            status=RunStatus.RUNNING,
            model="demo",
            dataset="demo",
            config={"log_steps": 5, "eval_steps": 20},
            started_at=START,
            heartbeat_at=START,
            max_steps=max_steps,
        ),
    )
    writer = LedgerWriter(ledger, run_id, flush_interval=0.01)
    for each in events:
        writer.submit(each)
    writer.close(status)
    ledger.close()
    return path


def fast(step: int, prompt: str | None = None, golden: str | None = None, run_id: str = FIXED_RUN_ID) -> StepEvent:
    """A fast log of fixed figures at `step`."""
    word = f"word{step:03d}"
    return StepEvent(
        run_id=run_id,
        step=step,
        kind=Kind.FAST,
        wall_time=START + 2 * step,
        elapsed_s=2.0 * step,
        prompt=prompt if prompt is not None else f"reverse {word}",
        golden=golden if golden is not None else word[::-1],
        loss=2.0 / math.sqrt(step),
        prompt_tokens=16,
        golden_tokens=8,
        batch_loss=3.0 / math.sqrt(step),
        learning_rate=3e-3,
        grad_norm=1.5,
        tokens_per_s=1234.0,
        epoch=step / 100,
    )


def full(
    step: int,
    output: str,
    match: bool,
    prompt: str | None = None,
    golden: str | None = None,
    run_id: str = FIXED_RUN_ID,
) -> StepEvent:
    """A full eval of fixed figures at `step`, with four probes whose MATCH alternates from eval to eval."""
    base = fast(step, prompt, golden, run_id)
    probes = tuple(
        ProbeResult(
            probe_id=i,
            prompt=f"reverse {w}",
            golden=w[::-1],
            model_output=w[::-1] if (i + step // 20) % 2 else w,
            match=bool((i + step // 20) % 2),
            loss=0.5,
        )
        for i, w in enumerate(PROBE_WORDS)
    )
    return StepEvent(
        **{
            **base.__dict__,
            "kind": Kind.FULL,
            "probes": probes,
            "model_output": output,
            "output_tokens": len(output) + 1,
            "match": match,
            "train_loss_mean": 3.3 / math.sqrt(step),
            "val_loss": 3.6 / math.sqrt(step),
            "gap": 0.3 / math.sqrt(step),
            "gap_ok": step > 20,
            "probe_accuracy": sum(p.match for p in probes) / len(probes),
            "probe_token_accuracy": 0.75,
            "eval_seconds": 1.25,
        },
    )


def fixed_events() -> list[StepEvent]:
    """Fast logs every 5 steps to 60, full evals at 20, 40 and 60 (MATCH from 40 on)."""
    events = []
    for step in range(5, 65, 5):
        if step % 20:
            events.append(fast(step))
        else:
            word = f"word{step:03d}"
            events.append(full(step, word[::-1] if step >= 40 else word[::-1][:-2] + "xx", step >= 40))
    return events


# Probe id -> MATCH at the full evals of steps 20, 40 and 60 of the `flips` fixture's run.
FLIP_PATTERN = {0: (False, True, True), 1: (True, False, False), 2: (False, False, False), 3: (False, True, False)}
ESCAPE_OUTPUT = "\x1b[2Jwiped"


@dataclass(frozen=True)
class TwoRuns:
    """The `two_runs` fixture: the reference run (`fast`) and a slower one started after it, in one ledger."""

    ledger: Path
    fast: FinishedRun
    slow: FinishedRun


def copy_ledger(source: Path, target: Path) -> Path:
    """A consistent copy (the run's last commits may still sit in the -wal file)."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def rows(ledger: Path, sql: str, *params: object) -> list[tuple]:
    """Rows of a query run on the ledger with plain sqlite3, read-only: what a user's own tools would see."""
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        return db.execute(sql, params).fetchall()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


# ---- faults -------------------------------------------------------------------------------------


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the ledger's write lock for `seconds`; returns once it holds it."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "c.execute('COMMIT')\n"
    )
    child = subprocess.Popen([PYTHON, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def start_writer_process(path: Path, run_id: str) -> subprocess.Popen[str]:
    """A child that writes events to `run_id` as fast as its writer commits, until killed."""
    child = subprocess.Popen(
        [PYTHON, __file__, "write", str(path), run_id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    return child


def _write_forever(path: Path, run_id: str) -> None:
    ledger = open_ledger(path)
    writer = LedgerWriter(ledger, run_id, flush_interval=0.02)
    print("writing", flush=True)
    step = 0
    while True:
        step += 1
        writer.submit(event(run_id, step, prompt=f"reverse {step}=" * (1 + step % 7)))
        if step % 50 == 0:
            time.sleep(0.01)


@contextmanager
def mounted_tmpfs(point: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `point` for the test's length; skips where mounting needs root."""
    point.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def poisoned_model(folder: Path) -> Path:
    """The demo model saved with NaN in its final norm: every logit, hence every loss, is NaN on any CPU."""
    import torch

    from twotier.engine.demo import write_demo_model
    from twotier.engine.model import load_model

    write_demo_model(folder, seed=0)
    model, _ = load_model(str(folder))
    with torch.no_grad():
        model.get_decoder().norm.weight[0] = math.nan
    model.save_pretrained(folder)
    return folder


if __name__ == "__main__" and sys.argv[1:2] == ["write"]:
    _write_forever(Path(sys.argv[2]), sys.argv[3])


# ---- TRL scripts on the chat demo model (byte-level BPE, ChatML, random Qwen2) ------------------------------


@dataclass(frozen=True)
class Scored:
    """One document of a training forward: its loss as the step's own output gave it, and scored alone."""

    step: int
    row: int
    document: int
    source: str
    captured: float
    alone: float
    tokens: int
    alone_tokens: int


def score_alone() -> Any:
    """A Trainer callback (test-only) that captures each training forward and scores every document alone.

    Its re-scoring forward runs inside the hook, so the weights are those the step's own forward used."""
    import torch
    from transformers import TrainerCallback

    from twotier.engine.capture import Captured, Unavailable, capture, document_loss, split_row, token_losses

    class ScoreAlone(TrainerCallback):
        def __init__(self) -> None:
            self.checked: list[Scored] = []
            self.documents_per_batch: list[int] = []
            self.captures: list[Captured] = []
            self.unavailable: list[str] = []
            self.step = 0
            self._hook: Any = None
            self._busy = False

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step = state.global_step + 1

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._hook.remove()

        def _on_forward(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
            if self._busy or not module.training:
                return
            captured = capture(kwargs, args, output)
            if captured is None:
                return
            if isinstance(captured, Unavailable) or isinstance(captured.tokens, Unavailable):
                reason = captured.reason if isinstance(captured, Unavailable) else captured.tokens.reason  # type: ignore[union-attr]
                self.unavailable.append(reason)
                return
            self.captures.append(captured)
            self._busy = True  # the re-scoring forward below must not be captured itself
            try:
                self._score(module, captured)
            finally:
                self._busy = False

        def _score(self, module: Any, captured: Captured) -> None:
            documents = captured.documents.cpu()
            count = 0
            for row in range(captured.input_ids.shape[0]):
                ids, labels = captured.input_ids[row].tolist(), captured.labels[row].tolist()
                for doc in split_row(ids, labels, documents[row].tolist()):
                    if not doc.targets:
                        continue
                    count += 1
                    total, tokens = document_loss(captured.tokens, captured.documents, row, doc.index)  # type: ignore[arg-type]
                    module.eval()
                    try:
                        with torch.no_grad():
                            alone_ids = torch.tensor([doc.input_ids])
                            logits = module(input_ids=alone_ids, attention_mask=torch.ones_like(alone_ids)).logits
                    finally:
                        module.train()
                    losses, mask = token_losses(logits, torch.tensor([doc.labels]))
                    source = captured.tokens.source  # type: ignore[union-attr]
                    alone = (losses.sum() / mask.sum()).item()
                    own = (total / tokens).item()
                    self.checked.append(
                        Scored(self.step, row, doc.index, source, own, alone, int(tokens), int(mask.sum()))
                    )
            self.documents_per_batch.append(count)

    return ScoreAlone()


def chat_data(count: int, seed: int = 3, *, kind: str = "messages") -> Any:
    """The chat demo's conversations as a `datasets` Dataset of `messages`, or of conversational prompt/completion."""
    from datasets import Dataset

    from twotier.engine.chat_demo import chat_rows

    rows = chat_rows(count, seed)
    if kind == "prompt_completion":
        return Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])
    return Dataset.from_list(rows)


def lora(r: int = 8) -> Any:
    import peft

    return peft.LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )


def sft_trainer(model_dir: Path, out: Path, rows: Any, *, callbacks: Sequence[Any] = (), **settings: Any) -> Any:
    """An SFTTrainer for a few CPU steps, not yet trained; gradient checkpointing off unless asked (TRL turns it on).
    `eval_dataset` and `peft_config` go to the trainer, every other setting to SFTConfig."""
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {key: settings.pop(key) for key in ("eval_dataset", "peft_config", "trainer_class") if key in settings}
    config = {
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-3,
        "max_length": 128,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        **settings,
    }
    args = trl.SFTConfig(
        output_dir=str(out),
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **config,
    )
    trainer_class = extra.pop("trainer_class", trl.SFTTrainer)
    return trainer_class(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=list(callbacks),
        **extra,
    )


def tokenized_rows(tokenizer: Any, rows: Any) -> list[dict[str, list[int]]]:
    """What a plain Trainer script feeds: the templated prompt masked, the answer and its end of turn trained."""
    out = []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        prompt_ids, full_ids = tokenizer(prompt)["input_ids"], tokenizer(full)["input_ids"]
        out.append({"input_ids": full_ids, "labels": [-100] * len(prompt_ids) + full_ids[len(prompt_ids) :]})
    return out


def plain_trainer(chat_model_dir: Path, tmp_path: Path, callbacks: list[Any], model: Any = None) -> Any:
    """A plain transformers Trainer for 4 CPU steps on tokenized chat rows, with a tokenized eval_dataset."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from twotier.engine.data import collate

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    return Trainer(
        model=model or AutoModelForCausalLM.from_pretrained(chat_model_dir),
        args=args,
        train_dataset=tokenized_rows(tokenizer, chat_data(64)),
        eval_dataset=tokenized_rows(tokenizer, chat_data(8, seed=9)),
        data_collator=lambda batch: collate(batch, tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
