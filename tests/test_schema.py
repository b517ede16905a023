"""The records are the schema: a field added to `StepEvent` is stored, read back and exported with no other edit."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

from support import REPO, event, new_run, rows
from twotier.store import StepEvent
from twotier.store.export import EVENT_COLUMNS

ADDED = "    mfu: float | None = None  # a field a later change adds\n"
ROUND_TRIP = """
import json, sys, time
from twotier.store import LedgerReader, LedgerWriter, StepEvent, Kind, RunStatus, open_ledger
from twotier.store.export import event_record
ledger = open_ledger(sys.argv[1])  # a ledger the unchanged code wrote: the new column is added on open
writer = LedgerWriter(ledger, "run-1", flush_interval=0.01)
writer.submit(StepEvent(run_id="run-1", step=7, kind=Kind.FAST, wall_time=time.time(), elapsed_s=1.0, prompt="p",
                        golden="g", loss=0.5, prompt_tokens=1, golden_tokens=1, mfu=0.42))
writer.close(RunStatus.FINISHED)
with LedgerReader(sys.argv[1]) as reader:
    events = list(reader.iter_events("run-1"))
print(json.dumps({"read": [e.mfu for e in events], "exported": [event_record(e)["mfu"] for e in events]}))
"""


def test_a_field_added_to_the_event_is_stored_read_and_exported_with_no_other_edit(tmp_path):
    ledger = new_run(tmp_path / "ledger.db")  # written by the code as it is
    ledger.close()
    package = tmp_path / "changed" / "twotier"
    shutil.copytree(REPO / "store", package / "store", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")
    records = package / "store" / "records.py"
    source = records.read_text(encoding="utf-8")
    anchor = "    epoch: float | None = None\n"
    assert source.count(anchor) == 1
    records.write_text(source.replace(anchor, anchor + ADDED), encoding="utf-8")  # the one edit
    result = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(tmp_path / "ledger.db")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(package.parent)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"read": [0.42], "exported": [0.42]}
    assert rows(tmp_path / "ledger.db", "SELECT mfu FROM event") == [(0.42,)]


def test_export_fields_are_the_event_fields_in_their_order():
    assert tuple(f.name for f in dataclasses.fields(StepEvent) if f.name != "probes") == EVENT_COLUMNS


def test_every_event_field_round_trips_through_the_ledger(tmp_path):
    from twotier.store import LedgerReader, LedgerWriter, RunStatus

    ledger = new_run(tmp_path / "ledger.db")
    written = dataclasses.replace(
        event("run-1", 3, model_output="out"),
        gap=0.1,
        gap_ok=False,
        match=True,
        output_tokens=3,
        eval_error="e",
        probe_accuracy=0.5,
        val_loss=1.0,
    )
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.01)
    writer.submit(written)
    writer.close(RunStatus.FINISHED)
    with LedgerReader(tmp_path / "ledger.db") as reader:
        (read,) = reader.iter_events("run-1")
    assert dataclasses.replace(read, id=None) == written


def test_a_probe_without_a_golden_is_stored_without_verdict_or_score(tmp_path):
    from twotier.store import Kind, LedgerReader, LedgerWriter, ProbeResult, RunStatus

    ledger = new_run(tmp_path / "ledger.db")
    answered = ProbeResult(probe_id=0, prompt="Write a haiku", golden=None, model_output="leaves fall", match=None,
                           loss=None)  # fmt: skip
    judged = ProbeResult(probe_id=1, prompt="2+2=", golden="4", model_output="4", match=True, loss=0.1, score=1.0)
    writer = LedgerWriter(ledger, "run-1", flush_interval=0.01)
    writer.submit(dataclasses.replace(event("run-1", 10, kind=Kind.FULL, model_output="x"), probes=(answered, judged)))
    writer.close(RunStatus.FINISHED)
    with LedgerReader(tmp_path / "ledger.db") as reader:
        (full,) = reader.full_evals("run-1")
        assert reader.probes(full.id or 0) == (answered, judged)
