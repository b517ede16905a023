"""A user's own Trainer script joined by `TwoTier(trainer)` obeys `twotier stop/pause RUN` like the command line's runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from support import plain_trainer, wait_for, wait_for_status
from twotier.engine import TwoTier
from twotier.store import LedgerReader, RunStatus
from twotier.store.control import request_control
from twotier.store.records import Action

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
WAIT_S = 60


class AskAt(TrainerCallback):
    """Writes a control request into the ledger as step `step + 1` begins, as `twotier pause/stop RUN` does from
    another terminal, then waits until the run has taken it: so the step it acts at is known."""

    def __init__(self, step: int, action: Action) -> None:
        self.step, self.action = step, action
        self.joined: TwoTier | None = None
        self.request_id: int | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step or self.joined is None:
            return
        steering = self.joined.steering
        _, request = request_control(self.joined.ledger, self.joined.run_id, self.action)
        self.request_id = request.id
        taken = (lambda: steering.stop_requested) if self.action is Action.STOP else (lambda: steering.paused)
        wait_for(taken, f"the run to take the {self.action.value} request", WAIT_S)


def one_call(chat_model_dir: Path, tmp_path: Path, ask: AskAt) -> tuple[Any, TwoTier]:
    trainer = plain_trainer(chat_model_dir, tmp_path, [ask])  # save_strategy "no": the stop's checkpoint alone
    callback = TwoTier(trainer, ledger=tmp_path / "ledger.db", log_steps=1, eval_steps=0)
    trainer.add_callback(callback)
    ask.joined = callback
    return trainer, callback


def request_done(ledger: Path, request_id: int | None) -> bool:
    assert request_id is not None
    with LedgerReader(ledger) as reader:
        return reader.request_done(request_id)


@pytest.mark.parametrize("asked_at", [0, 2], ids=["before-the-first-step", "mid-training"])
def test_a_stop_request_ends_training_at_the_step_end_with_a_checkpoint_and_the_request_done(
    chat_model_dir, tmp_path, asked_at
):
    ask = AskAt(asked_at, Action.STOP)
    trainer, callback = one_call(chat_model_dir, tmp_path, ask)
    trainer.train()
    assert trainer.state.global_step == asked_at + 1  # of 4: the step under way when the request came
    assert (tmp_path / "out" / f"checkpoint-{asked_at + 1}" / "model.safetensors").exists()
    with LedgerReader(tmp_path / "ledger.db") as reader:
        run = reader.run(callback.run_id)
        assert run.status is RunStatus.STOPPED and run.last_step == asked_at + 1 and run.error is None
        assert reader.request_done(ask.request_id or 0)


def test_a_pause_request_holds_training_until_an_unpause_request_and_the_run_then_finishes(chat_model_dir, tmp_path):
    ask = AskAt(1, Action.PAUSE)
    trainer, callback = one_call(chat_model_dir, tmp_path, ask)
    ledger = tmp_path / "ledger.db"
    seen: dict[str, Any] = {}

    def unpause_once_paused() -> None:
        try:
            wait_for(lambda: ask.request_id is not None, "the pause request", WAIT_S)
            wait_for_status(ledger, callback.run_id, "paused", timeout=WAIT_S)
            seen["paused at"] = trainer.state.global_step
            seen["pause done"] = request_done(ledger, ask.request_id)
            seen["unpause"] = request_control(ledger, callback.run_id, Action.UNPAUSE)[1].id
        except BaseException as err:  # noqa: BLE001 - reported by the test, after training is let go
            seen["error"] = err
            callback.steering.unpause()

    helper = threading.Thread(target=unpause_once_paused)
    helper.start()
    trainer.train()
    helper.join(WAIT_S)
    assert "error" not in seen, seen.get("error")
    assert seen["paused at"] == 2 and seen["pause done"]
    assert trainer.state.global_step == 4
    with LedgerReader(ledger) as reader:
        assert reader.run(callback.run_id).status is RunStatus.FINISHED
        assert reader.request_done(seen["unpause"])
