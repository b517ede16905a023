"""Fixtures: real ledgers from real short runs of the tiny demo model, the model itself, a private tmux.

The helpers they are built from live in support.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from support import ESCAPE_OUTPUT, FLIP_PATTERN, FinishedRun, Tmux, TwoRuns, copy_ledger, train
from twotier.engine.config import load_config
from twotier.store import LedgerReader, LedgerWriter, RunStatus, create_run, open_ledger

# Nothing in the tests may reach a model or dataset hub; fail fast instead of waiting on a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Under `make test` the suite runs in as many processes as there are cores (pytest-xdist): one torch thread
# each, in the workers and in the programs they start, or they would fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The reference run: fast logs every 5 steps, full evals every 20, 40 steps."""
    result = train(tmp_path_factory.mktemp("short-run"))
    assert result.status is RunStatus.FINISHED, result.error
    return result


@pytest.fixture(scope="session")
def two_runs(short_run: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """The reference run and a second one at a lower learning rate (started last), in one ledger of their own."""
    tmp = tmp_path_factory.mktemp("two-runs")
    copy_ledger(short_run.ledger, tmp / "ledger.db")
    slow = train(tmp, learning_rate=1e-3, run_name="slow")
    assert slow.status is RunStatus.FINISHED, slow.error
    return TwoRuns(tmp / "ledger.db", replace(short_run, ledger=tmp / "ledger.db"), slow)


@pytest.fixture(scope="session")
def flips(short_run: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger whose run `flips` has three full evals of the real probe set, MATCH as in FLIP_PATTERN.

    Forty steps teach the tiny model nothing, so the matches are set here and written by the real writer.
    """
    ledger_path = copy_ledger(short_run.ledger, tmp_path_factory.mktemp("flips") / "ledger.db")
    template = next(event for event in short_run.events if event.is_full)
    with LedgerReader(ledger_path) as reader:
        info = replace(reader.run(short_run.run_id), id="f11p5000000", name="flips", status=RunStatus.RUNNING)
    ledger = open_ledger(ledger_path)
    create_run(ledger, info)
    writer = LedgerWriter(ledger, info.id)
    for index, step in enumerate((20, 40, 60)):
        probes = tuple(
            replace(probe, match=pattern[index], model_output=probe.golden if pattern[index] else ESCAPE_OUTPUT)
            for probe, pattern in ((template.probes[pid], FLIP_PATTERN[pid]) for pid in FLIP_PATTERN)
        )
        accuracy = sum(p.match for p in probes) / len(probes)
        writer.submit(replace(template, run_id=info.id, step=step, probes=probes, probe_accuracy=accuracy, id=None))
    writer.close(RunStatus.FINISHED)
    ledger.close()
    return ledger_path


@pytest.fixture
def trainer_in(tmp_path: Path) -> Callable[..., FinishedRun]:
    """Train a fresh run into this test's own temporary folder."""
    return lambda **overrides: train(tmp_path, **overrides)


@dataclass(frozen=True)
class TinyModel:
    """The demo model and tokenizer, saved to a folder and loaded back by path like a real model."""

    path: Path
    model: Any
    tokenizer: Any


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from twotier.engine.demo import write_demo_model

    return write_demo_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def tiny(tiny_model_dir: Path) -> TinyModel:
    """A fresh copy of the tiny model for each test (tests train it)."""
    from twotier.engine.model import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    return TinyModel(tiny_model_dir, model, tokenizer)


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat demo model (byte-level BPE, ChatML tokens, Qwen2-Instruct's template, random Qwen2), by path."""
    from twotier.engine.chat_demo import write_chat_model

    return write_chat_model(tmp_path_factory.mktemp("chat-model"), seed=0)


@pytest.fixture(scope="session")
def demo_examples(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tokenized demo train and validation splits."""
    from twotier.engine.data import load_splits
    from twotier.engine.model import load_model

    _, tokenizer = load_model(str(tiny_model_dir))
    config = load_config(None, {"max_length": 64})
    return load_splits(config, tokenizer, tmp_path_factory.mktemp("demo-data"))


@pytest.fixture
def tmux(request: pytest.FixtureRequest) -> Iterator[Tmux]:
    """A private tmux server for the test; the test is skipped where tmux is not installed."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (CI installs it: see .ci/run)")
    server = Tmux(request.node.name[:20])
    yield server
    server.kill()
