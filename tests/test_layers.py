"""The layers import one way, and each face loads only what it needs. Checked in fresh interpreters.

engine/ never loads Textual; store/ loads neither torch nor Textual; the plain command line (headless,
`twotier ledger`) loads no Textual; the app, `--attach` and the ledger commands load no torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {"torch", "transformers", "datasets"}
REPO = Path(__file__).resolve().parents[1]


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    "module",
    [
        "twotier.store",
        "twotier.store.reader",
        "twotier.store.export",
        "twotier.store.tail",
        "twotier.store.query",
        "twotier.store.api",
    ],
)
def test_store_imports_neither_torch_nor_textual_nor_the_other_layers(module):
    loaded = modules_after_import(module)
    assert not (HEAVY | {"textual", "twotier.engine", "twotier.tui"}) & loaded


@pytest.mark.parametrize("module", ["twotier.engine.tiers", "twotier.engine.runner", "twotier.engine.trainer"])
def test_engine_never_imports_textual_nor_the_faces(module):
    loaded = modules_after_import(module)
    assert not {"textual", "twotier.tui"} & loaded


def test_the_training_thread_class_loads_no_torch_until_its_thread_runs():
    assert not HEAVY & modules_after_import("twotier.engine.runner")


@pytest.mark.parametrize(
    "module", ["twotier.tui.cli", "twotier.tui.console.headless", "twotier.tui.console.ledger", "twotier.tui.render"]
)
def test_the_plain_command_line_loads_no_textual(module):
    assert "textual" not in modules_after_import(module)


@pytest.mark.parametrize("module", ["twotier.tui.cli", "twotier.tui.app", "twotier.tui.console.ledger"])
def test_the_app_and_the_query_commands_open_without_torch(module):
    assert not HEAVY & modules_after_import(module)


def test_engine_and_store_source_never_name_the_faces():
    """The arrows point one way: nothing under engine/ or store/ imports from tui/."""
    offenders = [
        path
        for layer in ("engine", "store")
        for path in (REPO / layer).rglob("*.py")
        if "tui"
        in {
            part
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.lstrip().startswith(("from ", "import "))
            for part in line.replace(".", " ").split()
        }
    ]
    assert offenders == []
