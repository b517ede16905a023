"""Hostile text from datasets and models: stored whole, shown inert on a terminal."""

from __future__ import annotations

import pytest

from support import ESCAPE_BYTES, HOSTILE, event, new_run
from twotier.store import Kind, LedgerReader, LedgerWriter, RunStatus
from twotier.store.texts import storable
from twotier.tui.render import event_block


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_text_is_stored_whole_and_read_back_exactly(tmp_path, name):
    text = HOSTILE[name]
    ledger = new_run(tmp_path / "ledger.db")
    writer = LedgerWriter(ledger, "run-1")
    writer.submit(event("run-1", 1, prompt=text, golden=text[::-1], kind=Kind.FULL, model_output=text + "!"))
    writer.close(RunStatus.FINISHED)
    with LedgerReader(tmp_path / "ledger.db") as reader:
        (stored,) = reader.events_after("run-1")
    assert (stored.prompt, stored.golden, stored.model_output) == (text, text[::-1], text + "!")


def test_lone_surrogates_become_visible_escapes_and_the_rest_survives(tmp_path):
    text = "before\ud800middle\udfffafter 😀"
    ledger = new_run(tmp_path / "ledger.db")
    writer = LedgerWriter(ledger, "run-1")
    writer.submit(event("run-1", 1, prompt=text))
    writer.close(RunStatus.FINISHED)
    with LedgerReader(tmp_path / "ledger.db") as reader:
        (stored,) = reader.events_after("run-1")
    assert stored.prompt == storable(text) == "before\\ud800middle\\udfffafter 😀"


@pytest.mark.parametrize("name", HOSTILE)
def test_the_printed_block_carries_no_escape_from_the_data(name):
    text = HOSTILE[name]
    block = event_block(event("run-1", 20, prompt=text, golden=text, kind=Kind.FULL, model_output=text)).plain
    assert not ESCAPE_BYTES.search(block)
    assert block.encode("utf-8")  # printable even with no surrogate handling


def test_markup_in_data_is_printed_as_the_characters_it_is():
    block = event_block(event("run-1", 5, prompt=HOSTILE["markup"])).plain
    assert HOSTILE["markup"] in block
