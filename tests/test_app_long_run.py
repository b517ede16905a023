"""A long run opens at once: its recent events, its last full evals and its whole curve, not a full read."""

from __future__ import annotations

import pytest

from support import fast, full, write_run
from twotier.store.tail import CHUNK, HISTORY_POINTS, Tail
from twotier.tui.app import make_app
from twotier.tui.app.widgets.eval_table import EvalTable
from twotier.tui.app.widgets.loss_chart import LossChart

pytestmark = pytest.mark.anyio
STEPS = 3 * CHUNK  # more events than one catch-up read: the run opens from its end


def long_ledger(tmp_path):
    events = [full(step, "x", False) if step % 100 == 0 else fast(step) for step in range(1, STEPS + 1)]
    return write_run(tmp_path / "ledger.db", events, max_steps=STEPS)


def test_first_poll_of_a_long_run_brings_its_end_and_its_history(tmp_path):
    tail = Tail(long_ledger(tmp_path), "latest", probes_for_last=50)
    poll = tail.poll()
    tail.close()
    assert [e.step for e in poll.events] == list(range(STEPS - 49, STEPS + 1))
    assert not poll.more and poll.opening is not None
    assert [e.step for e in poll.opening.evals] == list(range(100, STEPS - 49, 100))
    assert 0 < len(poll.opening.history.train.points) <= HISTORY_POINTS
    assert poll.opening.history.train.per_point > 1


def test_next_poll_continues_past_the_end(tmp_path):
    tail = Tail(long_ledger(tmp_path), "latest", probes_for_last=50)
    tail.poll()
    assert tail.poll().events == []
    tail.close()


async def test_app_opens_a_long_run_with_every_full_eval_and_the_whole_curve(tmp_path):
    app = make_app(attach=long_ledger(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.caught_up:
            await pilot.pause(0.05)
        assert app.query_one(EvalTable).row_count == STEPS // 100
        chart = app.query_one(LossChart)
        assert chart.latest_train is not None and chart.latest_train.step == STEPS
        assert chart.train.values()[0] > chart.train.values()[-1]  # the start of the run is in view
