"""Fixtures that build real ledgers from real short runs of the tiny demo model."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twotier.engine.config import Config, load_config
from twotier.store import RunStatus, StepEvent

# Nothing in the tests may reach a model or dataset hub; fail fast instead of waiting on a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@dataclass(frozen=True)
class FinishedRun:
    """A run trained to its end: where its ledger is, its id, and the events it published."""

    config: Config
    ledger: Path
    run_id: str
    status: RunStatus
    events: list[StepEvent]
    error: str | None


def train(tmp: Path, **overrides: Any) -> FinishedRun:
    """Train the demo (or what `overrides` name) in a background thread and wait for the end."""
    from twotier.engine.runner import RunEnded, TrainingRun

    settings: dict[str, Any] = {
        "log_steps": 5, "eval_steps": 20, "max_steps": 40, "batch_size": 16, "learning_rate": 3e-3,
        "eval_samples": 32, "probe_size": 8, "max_length": 64, "max_new_tokens": 8,
        "ledger": str(tmp / "ledger.db"), "output_dir": str(tmp / "out"),
    }  # fmt: skip
    settings.update(overrides)
    config = load_config(None, settings)
    run = TrainingRun(config)
    run.start()
    events: list[StepEvent] = []
    while True:
        message = run.events.get(timeout=300)
        if isinstance(message, RunEnded):
            break
        events.append(message)
    run.join(60)
    return FinishedRun(config, Path(config.ledger), run.run_id, message.status, events, message.error)


@pytest.fixture(scope="session")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The issue's reference run: fast logs every 5 steps, full evals every 20, 40 steps."""
    result = train(tmp_path_factory.mktemp("short-run"))
    assert result.status is RunStatus.FINISHED, result.error
    return result


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
def demo_examples(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tokenized demo train and validation splits."""
    from twotier.engine.data import load_splits
    from twotier.engine.model import load_model

    _, tokenizer = load_model(str(tiny_model_dir))
    config = load_config(None, {"max_length": 64})
    return load_splits(config, tokenizer, tmp_path_factory.mktemp("demo-data"))
