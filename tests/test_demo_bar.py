"""The built-in demo, as `make run` trains it, visibly learns: the product's first promise."""

from __future__ import annotations

from support import train
from twotier.engine.config import load_config
from twotier.store import RunStatus


def test_default_demo_cuts_the_loss_below_30_percent_and_generalises(tmp_path):
    shipped = load_config("config.json").to_dict()
    shipped.update(ledger=str(tmp_path / "ledger.db"), output_dir=str(tmp_path / "out"))
    run = train(tmp_path, **shipped)
    assert run.status is RunStatus.FINISHED, run.error
    first, last = run.events[0], run.events[-1]
    assert last.is_full and last.step == shipped["max_steps"]
    assert last.batch_loss < 0.3 * first.batch_loss
    assert last.probe_accuracy >= 0.8
