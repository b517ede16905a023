"""The README is a contract: every fenced block runs as written, in README order, in one sandbox folder,
and what it shows is what the program shows (docs/readme.py says how each kind of block is checked).

Run the whole module: later blocks read what earlier ones wrote (one ledger, like a user's).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from docs.readme import KINDS, MARKERS, README, REPO, backticked, cells, config_table, parse
from docs.sandbox import Sandbox
from twotier.store import open_ledger
from twotier.store.export import EVENT_COLUMNS, PROBE_COLUMNS

TEXT = README.read_text(encoding="utf-8")
DOC = parse(TEXT)
NEEDS_TMUX = ("app", "screen")
NOT_RUN = {
    "bench": "the output of `make bench` (minutes of measuring); `make docs` copies it from runs/bench/table.txt",
}


def block_id(index: int) -> str:
    block = DOC.blocks[index]
    return f"{index:02d}-line{block.line_number}-{block.kind}"


def git_status() -> str | None:
    """Changed and untracked files of the checkout (ignored ones, such as runs/, left out)."""
    done = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.fixture(scope="module")
def checkout_before() -> str | None:
    """`git status` of the checkout before the README's commands ran."""
    return git_status()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, checkout_before: str | None) -> Iterator[Sandbox]:
    box = Sandbox(REPO, tmp_path_factory.mktemp("readme"))
    yield box
    box.close()


def test_every_block_has_an_annotation_saying_how_it_is_checked():
    missing = [f"line {b.line_number}: {b.name}" for b in DOC.blocks if b.kind not in KINDS]
    assert not missing, "blocks without a `<!-- readme: KIND -->` line before them:\n" + "\n".join(missing)


def test_every_other_annotation_is_known_and_a_skip_says_why():
    assert all(marker.kind in MARKERS for marker in DOC.markers), [m.kind for m in DOC.markers]
    assert all(block.argument.strip() for block in DOC.blocks if block.kind == "skip")


def test_commands_are_on_the_path_before_the_first_bare_one():
    """A newcomer's shell has no `twotier` until .venv is activated: the README says so before using it."""
    first_bare = next(b for b in DOC.blocks if b.kind != "skip" and any(line.startswith("twotier") for line in b.lines))
    activated = [b for b in DOC.blocks if "source .venv/bin/activate" in "\n".join(b.lines)]
    assert activated and activated[0].first <= first_bare.first


def test_the_configuration_table_is_made_from_the_config_fields():
    (marker,) = DOC.marked("config-table")
    start, end = DOC.table_after(marker)
    assert DOC.lines[start:end] == config_table(), "run `make docs` to remake it from engine/config.py"


def test_the_schema_table_lists_every_column_of_every_table(tmp_path: Path):
    ledger = open_ledger(tmp_path / "ledger.db")
    ledger.close()
    (marker,) = DOC.marked("schema")
    start, end = DOC.table_after(marker)
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        for row in DOC.lines[start + 2 : end]:
            table, _, columns = cells(row)
            (name,) = backticked(table)
            actual = [column[1] for column in db.execute(f"PRAGMA table_info({name})")]
            assert sorted(backticked(columns)) == sorted(actual), f"table {name}"


def test_the_export_table_lists_the_export_fields_in_order():
    (marker,) = DOC.marked("export-fields")
    start, end = DOC.table_after(marker)
    listed = {tuple(backticked(cells(row)[0])): backticked(cells(row)[1]) for row in DOC.lines[start + 2 : end]}
    assert listed == {("events", "evals"): list(EVENT_COLUMNS), ("probes",): list(PROBE_COLUMNS)}


@pytest.mark.parametrize("index", range(len(DOC.blocks)), ids=block_id)
def test_block_runs_as_written_and_shows_what_the_readme_shows(index: int, sandbox: Sandbox):
    block = DOC.blocks[index]
    if block.kind == "skip":
        pytest.skip(block.argument)
    if block.kind in NOT_RUN:
        pytest.skip(NOT_RUN[block.kind])
    if block.kind in NEEDS_TMUX and shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (CI installs it: see .ci/run)")
    assert block.kind in KINDS, f"line {block.line_number}: not annotated"
    problems = sandbox.execute(block).problems
    assert not problems, f"README line {block.line_number} ({block.name}):\n" + "\n\n".join(problems)


def test_each_image_is_one_a_command_above_wrote(sandbox: Sandbox):
    for marker in DOC.marked("image"):
        assert (sandbox.root / marker.argument).stat().st_size > 0, marker.argument


def test_the_readme_commands_leave_the_checkout_as_it_was(sandbox: Sandbox, checkout_before: str | None):
    """No file a README command names (an export, a plot, docs/loss.png...) was written in the checkout;
    other changes (someone editing while the suite runs) are not the README's doing."""
    if checkout_before is None:
        pytest.skip("not a git checkout")
    named = {
        Path(word).name for block in DOC.blocks for line in block.lines for word in re.findall(r"[\w./-]+\.\w+", line)
    }
    changed = set(git_status().splitlines()) - set(checkout_before.splitlines())
    assert not [line for line in changed if Path(line[3:]).name in named]
