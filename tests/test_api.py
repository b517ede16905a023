"""The notebook API: a ledger opened read-only, its runs, events, full evals and probes as plain records."""

from __future__ import annotations

import subprocess
import sys

import pytest
from peewee import OperationalError

from support import rows
from twotier.store.api import open_ledger_readonly
from twotier.store.export import EVENT_COLUMNS


@pytest.fixture
def ledger(short_run):
    with open_ledger_readonly(short_run.ledger) as opened:
        yield opened


def test_runs_are_records_with_the_final_figures(ledger, short_run):
    (record,) = ledger.runs()
    val_loss, accuracy = rows(
        short_run.ledger, "SELECT val_loss, probe_accuracy FROM event WHERE kind = 'full' ORDER BY id DESC LIMIT 1"
    )[0]
    assert (record["run_id"], record["status"], record["steps"]) == (short_run.run_id, "finished", 40)
    assert (record["final_val_loss"], record["final_probe_accuracy"]) == (val_loss, accuracy)
    assert record["config"]["eval_steps"] == 20


def test_events_are_one_plain_dict_per_event_in_ledger_order(ledger, short_run):
    events = ledger.events("latest")
    assert all(type(event) is dict and tuple(event) == EVENT_COLUMNS for event in events)
    assert [(e["step"], e["kind"], e["loss"]) for e in events] == rows(
        short_run.ledger, "SELECT step, kind, loss FROM event ORDER BY id"
    )


def test_full_evals_are_only_the_full_evals(ledger):
    assert [(e["step"], e["kind"]) for e in ledger.full_evals()] == [(20, "full"), (40, "full")]


def test_probes_are_one_record_per_probe_answer(ledger, short_run):
    assert [(p["step"], p["probe_id"], p["model_output"]) for p in ledger.probes(short_run.run_id)] == rows(
        short_run.ledger,
        "SELECT p.step, p.probe_id, t.body FROM probe p JOIN text t ON t.id = p.output_id "
        "ORDER BY p.event_id, p.probe_id",
    )


def test_to_pandas_gives_one_column_per_field(ledger):
    frame = ledger.full_evals().to_pandas()
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert frame["step"].tolist() == [20, 40]


def test_to_pandas_keeps_the_columns_of_an_empty_selection(ledger):
    assert list(ledger.runs(status="failed").to_pandas().columns)[:3] == ["run_id", "name", "status"]


def test_to_dataset_holds_the_records_with_the_config_as_json_text(ledger, short_run):
    dataset = ledger.runs().to_dataset()
    assert dataset.num_rows == 1 and dataset[0]["run_id"] == short_run.run_id
    assert '"eval_steps": 20' in dataset[0]["config"]


def test_the_api_cannot_write_to_the_ledger(ledger):
    with pytest.raises(OperationalError, match="readonly"):
        ledger.reader.ledger.db.execute_sql("DELETE FROM event")


def test_opening_the_api_imports_neither_datasets_nor_torch(short_run):
    code = (
        "import sys\n"
        "from twotier.store.api import open_ledger_readonly\n"
        f"ledger = open_ledger_readonly({str(short_run.ledger)!r})\n"
        "ledger.events(); ledger.probes(); ledger.runs().to_pandas()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
