"""The read-only aggregations behind `twotier ledger`, checked against the ledger read with plain sqlite3."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from support import ESCAPE_OUTPUT, copy_ledger, digest, rows
from twotier.store import LedgerError, LedgerReader, RunStatus, create_run, open_ledger, query, reopen_run


def test_run_summary_takes_the_last_batch_loss_and_the_last_full_eval(short_run):
    (batch_loss,) = rows(
        short_run.ledger, "SELECT batch_loss FROM event WHERE run_id = ? ORDER BY id DESC LIMIT 1", short_run.run_id
    )[0]
    val_loss, accuracy = rows(
        short_run.ledger,
        "SELECT val_loss, probe_accuracy FROM event WHERE run_id = ? AND kind = 'full' ORDER BY step DESC LIMIT 1",
        short_run.run_id,
    )[0]
    with LedgerReader(short_run.ledger) as reader:
        summary = query.summarize(reader, reader.run(short_run.run_id))
    assert (summary.final_train_loss, summary.final_val_loss, summary.final_probe_accuracy) == (
        batch_loss,
        val_loss,
        accuracy,
    )


def test_run_summary_of_a_resumed_run_ignores_its_superseded_events(short_run, tmp_path):
    ledger_path = copy_ledger(short_run.ledger, tmp_path / "ledger.db")
    ledger = open_ledger(ledger_path)
    reopen_run(ledger, short_run.run_id, from_step=20)  # as a resume from the step-20 checkpoint does
    ledger.close()
    batch_loss, val_loss = rows(ledger_path, "SELECT batch_loss, val_loss FROM event WHERE step = 20")[0]
    with LedgerReader(ledger_path) as reader:
        summary = query.summarize(reader, reader.run(short_run.run_id))
    assert (summary.final_train_loss, summary.final_val_loss) == (batch_loss, val_loss)


def test_run_summaries_filter_on_the_shown_status_so_a_silent_live_run_is_stale(short_run, tmp_path):
    ledger_path = copy_ledger(short_run.ledger, tmp_path / "ledger.db")
    with LedgerReader(ledger_path) as reader:
        base = reader.run(short_run.run_id)
    an_hour_ago = time.time() - 3600
    ledger = open_ledger(ledger_path)
    create_run(
        ledger,
        replace(
            base,
            id="dead0000000",
            name="crashed",
            status=RunStatus.RUNNING,
            started_at=an_hour_ago,
            heartbeat_at=an_hour_ago,
        ),
    )
    ledger.close()
    with LedgerReader(ledger_path) as reader:
        assert [s.run.id for s in query.run_summaries(reader, "stale")] == ["dead0000000"]
        assert [s.run.id for s in query.run_summaries(reader, "finished")] == [short_run.run_id]
        assert query.run_summaries(reader, "running") == []


def test_curves_hold_the_batch_loss_of_every_logged_step_and_each_full_eval(short_run):
    logged = rows(short_run.ledger, "SELECT step, batch_loss FROM event WHERE run_id = ? ORDER BY id", short_run.run_id)
    evals = rows(
        short_run.ledger,
        "SELECT step, val_loss, probe_accuracy FROM event WHERE run_id = ? AND kind = 'full' ORDER BY id",
        short_run.run_id,
    )
    with LedgerReader(short_run.ledger) as reader:
        curves = query.curves(reader, reader.run(short_run.run_id))
    assert list(zip(curves.steps, curves.train_loss)) == logged
    assert list(zip(curves.eval_steps, curves.val_loss, curves.probe_accuracy)) == evals


def test_probe_history_finds_each_flip_to_match_and_each_regression_at_its_step(flips):
    with LedgerReader(flips) as reader:
        history = query.probe_history(reader, "f11p5000000")
    assert [(c.probe_id, c.step) for c in history.flipped_to_match] == [(0, 40), (3, 40)]
    assert [(c.probe_id, c.step) for c in history.regressed] == [(1, 40), (3, 60)]


def test_probe_that_never_matched_is_listed_with_its_output_at_the_last_full_eval(flips):
    with LedgerReader(flips) as reader:
        history = query.probe_history(reader, "f11p5000000")
    assert [(c.probe_id, c.step, c.model_output) for c in history.never_matched] == [(2, 60, ESCAPE_OUTPUT)]


def test_no_probe_of_the_reference_run_matched_and_all_are_listed(short_run):
    never = rows(
        short_run.ledger,
        "SELECT probe_id FROM probe WHERE run_id = ? GROUP BY probe_id HAVING max(match) = 0 ORDER BY probe_id",
        short_run.run_id,
    )
    with LedgerReader(short_run.ledger) as reader:
        history = query.probe_history(reader, short_run.run_id)
    assert [(c.probe_id,) for c in history.never_matched] == never


def test_compare_lists_exactly_the_config_keys_whose_values_differ(two_runs):
    configs = [
        json.loads(text)
        for (text,) in rows(
            two_runs.ledger,
            "SELECT config_json FROM run WHERE id IN (?, ?) ORDER BY id = ? DESC",
            two_runs.fast.run_id,
            two_runs.slow.run_id,
            two_runs.fast.run_id,
        )
    ]
    differing = {key for key in configs[0] | configs[1] if configs[0].get(key) != configs[1].get(key)}
    with LedgerReader(two_runs.ledger) as reader:
        comparison = query.compare(reader, [two_runs.fast.run_id, "slow"])
    assert set(comparison.config_diff) == differing
    assert comparison.config_diff["learning_rate"] == [0.003, 0.001]


def test_compare_lines_up_the_full_evals_of_each_run_by_step(two_runs):
    with LedgerReader(two_runs.ledger) as reader:
        comparison = query.compare(reader, [two_runs.fast.run_id, two_runs.slow.run_id])
    assert comparison.steps == [20, 40]
    for run in (two_runs.fast, two_runs.slow):
        expected = rows(
            two_runs.ledger, "SELECT step, val_loss FROM event WHERE run_id = ? AND kind = 'full'", run.run_id
        )
        assert [(step, e.val_loss) for step, e in comparison.evals[run.run_id].items()] == expected


def test_sql_returns_column_names_and_rows(short_run):
    sql = "SELECT step, val_loss FROM event WHERE kind = 'full' ORDER BY id"
    with LedgerReader(short_run.ledger) as reader:
        result = query.run_sql(reader, sql)
    assert result.columns == ["step", "val_loss"]
    assert result.rows == rows(short_run.ledger, sql)


def test_sql_keeps_both_columns_of_a_repeated_name(short_run):
    with LedgerReader(short_run.ledger) as reader:
        result = query.run_sql(reader, "SELECT e.id, t.id FROM event e JOIN text t ON t.id = e.prompt_id LIMIT 1")
    assert result.columns == ["id", "id_2"]
    assert list(result.records()[0]) == ["id", "id_2"]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM event",
        "UPDATE run SET status = 'failed'",
        "DROP TABLE probe",
        "PRAGMA user_version = 7",
        "PRAGMA query_only = 0",
        "ATTACH DATABASE 'other.db' AS other",
        "VACUUM",
    ],
)
def test_sql_refuses_a_statement_that_would_write_and_leaves_the_ledger_unchanged(short_run, tmp_path, statement):
    ledger = copy_ledger(short_run.ledger, tmp_path / "ledger.db")
    before = digest(ledger), rows(ledger, "SELECT count(*) FROM event")
    with LedgerReader(ledger) as reader, pytest.raises(LedgerError, match="refused: .* only reads"):
        query.run_sql(reader, statement)
    assert (digest(ledger), rows(ledger, "SELECT count(*) FROM event")) == before
    assert not (tmp_path / "other.db").exists()


def test_sql_error_names_the_problem_on_one_line(short_run):
    with LedgerReader(short_run.ledger) as reader, pytest.raises(LedgerError) as caught:
        query.run_sql(reader, "SELECT step FROM nowhere")
    assert str(caught.value).endswith("sql: no such table: nowhere")
